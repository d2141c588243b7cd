/**
 * Spare segment files (the `zeroFillSegments` option): one file of the segment size, all of whose
 * blocks are already written, made ready while the log fills the segment before it, then renamed
 * into place (with a new header) when the tail rolls over. A spare is either written with zeros
 * and synced off the JS thread, or the file of a segment a truncation just dropped (recycled).
 *
 * Why: a segment preallocated with `fallocate` holds unwritten extents, and on ext4 (and XFS) the
 * first write to each block makes the sync that follows also commit the journal that marks the
 * block written. Measured here with one write + `fdatasync` per commit, into a preallocated file
 * against a zero-filled one: 120 B, p50 49–55 against 55–65 µs but p99 166–202 against 99–117;
 * 12 KB, p50 120–147 against 55–77 µs; 30 KB, 130–156 against 63–86 µs. The price of a zero-filled
 * spare is a second write of every segment (64 MiB at ~1 GB/s here) and one segment file more on
 * disk; a recycled one costs a rename, so a log that truncates as it goes (a queue) writes each
 * segment once. A segment dropped while a spare is ready already becomes a second spare (so two
 * files more on disk at most): segments of 8 MiB or less are filled as soon as the one before is
 * installed, and would otherwise seldom be recycled.
 *
 * A recycled spare keeps its old records. They can never pass as records of the segment it
 * becomes: every record header holds its own address, which lies in the segment the record was
 * written to, and a file is only ever installed as a segment with a higher index than any it
 * served before (it was truncated, so its index lies below the log's tail). Past the tail such a
 * segment holds old bytes rather than zeros, seldom on a record boundary: a clean close zeroes
 * the record header at the tail, so that a clean open meets the end of the records there; after
 * a crash, recovery cuts the tail back and zeroes it, as after any crash.
 *
 * The zero-filled spare is written as {@linkcode SPARE_FILE_NAME}, then renamed to
 * {@linkcode SPARE_READY_FILE_NAME} once synced (a recycled one takes whichever of
 * {@linkcode SPARE_READY_FILE_NAMES} is free): never a segment file name, so a crash at any point
 * leaves nothing recovery could mistake for log data. Open removes a half-written spare, and keeps
 * ready ones for the next segments (the option on) or removes them (the option off): a log
 * reopened often does not write a segment of zeros each time. A ready spare is kept only if
 * its header is zeros (a zero-filled spare) or names a segment of this log below the next one the
 * log will create (a recycled one): a spare whose header names that segment or a later one was
 * being installed when the process died (the rename into place did not reach the disk), and may
 * hold records for the very addresses it would serve again.
 *
 * @module
 */
import { join } from "node:path";
import { SEGMENT_HEADER_BYTES } from "./constants.ts";
import type { Device } from "./device.ts";
import { segmentHeaderIndex } from "./segment_format.ts";

/** The spare's name while it is written (no segment file name: recovery never adopts it). */
export const SPARE_FILE_NAME = "spare-segment.tmp";
/** The spare's file name once it is all zeros and synced (or recycled). */
export const SPARE_READY_FILE_NAME = "spare-segment.ready";
/**
 * The names ready spares may have: a truncation that drops a segment while a zero-filled spare is
 * ready keeps the file as a second spare. Segments of 8 MiB or less are filled at once (the fill's
 * lead covers them), so without that second place a queue of small segments almost never found a
 * fill to give up, and wrote each of its segments twice.
 */
export const SPARE_READY_FILE_NAMES = [SPARE_READY_FILE_NAME, "spare-segment.ready-2"] as const;

/** Bytes of zeros per write: large enough that the writes cost little, small enough to share. */
const FILL_CHUNK_BYTES = 1024 * 1024;
/** Bytes written between syncs, so that no single sync holds the disk for long. */
const FILL_SYNC_BYTES = 8 * 1024 * 1024;
/**
 * How far the fill may run ahead of the log's own writes into its current segment. The spare is
 * needed only when that segment is full, so the fill keeps this lead and otherwise goes at the
 * log's pace: its writes and syncs then compete with commits as little as the log's own do.
 * Filled at full speed, a spare raised the p99 of lone commits made meanwhile from 130–240 µs
 * to 137–454 µs here; paced, to 161–259 µs (1.5 s runs, Bun and Deno).
 */
export const FILL_LEAD_BYTES = 8 * 1024 * 1024;
/**
 * How long a fill's write or sync may wait for the event loop before the log gives it a turn (see
 * {@linkcode SparePreparer.wantsTurn}): at most one extra macrotask per millisecond of commits.
 */
const TURN_AFTER_MS = 1;

let zeros: Uint8Array | undefined;

/**
 * Removes a half-written spare left in `dir` by an earlier process (its content is unknown, and it
 * is never log data), and with `keepReady` false a ready one too. Called at open, under the
 * directory lock, with `names`, the directory's listing (one listing instead of an existence
 * check per spare name).
 */
export function removeLeftoverSpare(
  device: Device,
  dir: string,
  keepReady: boolean,
  names: readonly string[],
): void {
  for (const name of keepReady ? [SPARE_FILE_NAME] : [SPARE_FILE_NAME, ...SPARE_READY_FILE_NAMES]) {
    if (names.includes(name)) device.remove(join(dir, name));
  }
}

/** Counters of a log's spares since it was opened. */
export interface SpareStats {
  /** Spares made ready: written and synced, recycled, or kept from the last open. */
  prepared: number;
  /** Of those, the files of truncated segments (no zeros written). */
  recycled: number;
  /** Spares installed as segments. */
  installed: number;
  /** Preparations that failed (the spare was removed; segments are then created as before). */
  failed: number;
}

/**
 * Prepares at most one spare at a time for one log directory (only when none is ready), keeps up
 * to two ready ones (the second only ever a recycled file), and hands them out.
 */
export class SparePreparer {
  readonly #dir: string;
  readonly #writingPath: string;
  readonly #device: Device;
  readonly #sizeBytes: number;
  /** Paths of the ready spares, the one to hand out first at the front. */
  #ready: string[] = [];
  /** A fill runs and has not been given up. */
  #preparing = false;
  #work: Promise<void> = Promise.resolve();
  #closed = false;
  /** How many bytes of the spare may be filled now (the log's pace); unbounded when absent. */
  readonly #pace: (() => number) | undefined;
  /** Wakes a fill waiting for the log to write more (see `progressed`). */
  #wake: (() => void) | undefined;
  #stats: SpareStats = { prepared: 0, recycled: 0, installed: 0, failed: 0 };
  /** Bumped when a recycled spare replaces the fill in progress, which then gives up. */
  #generation = 0;
  /** A preparation (possibly given up) has not ended yet. */
  #running = false;
  /** When the fill's pending write or sync was started or last given a turn (ms); -1: none. */
  #ioSince = -1;

  /**
   * Adopts a ready spare of `sizeBytes` left by an earlier open if it may become segment
   * `nextIndex` of log `logId` or a later one (see the module's notes); removes it otherwise.
   * `pace` says how many bytes of a spare may be filled now.
   */
  constructor(
    device: Device,
    dir: string,
    sizeBytes: number,
    adopt: { logId: number; nextIndex: number },
    pace?: () => number,
  ) {
    this.#device = device;
    this.#pace = pace;
    this.#dir = dir;
    this.#writingPath = join(dir, SPARE_FILE_NAME);
    this.#sizeBytes = sizeBytes;
    for (const name of SPARE_READY_FILE_NAMES) {
      const path = join(dir, name);
      if (!device.exists(path)) continue;
      if (this.#adoptable(path, adopt)) {
        this.#ready.push(path);
        this.#stats.prepared++;
      } else device.remove(path);
    }
  }

  #adoptable(path: string, adopt: { logId: number; nextIndex: number }): boolean {
    const file = this.#device.open(path, { readOnly: true });
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    let size: number;
    try {
      size = file.sizeBytes();
      if (file.read(header, 0) !== header.length) size = -1;
    } finally {
      file.close();
    }
    const index = header.every((byte) => byte === 0)
      ? -1
      : segmentHeaderIndex(header, adopt.logId, this.#sizeBytes);
    return size === this.#sizeBytes && index !== undefined && index < adopt.nextIndex;
  }

  /** A ready name no ready spare has. */
  #freePath(): string {
    for (const name of SPARE_READY_FILE_NAMES) {
      const path = join(this.#dir, name);
      if (!this.#ready.includes(path)) return path;
    }
    throw new Error("assertion failed: no ready spare name is free");
  }

  get stats(): SpareStats {
    return { ...this.#stats };
  }

  /** True when a spare is written, synced (or recycled) and not yet taken. */
  get ready(): boolean {
    return this.#ready.length > 0;
  }

  /** Settles once the running preparation (if any) has ended, never rejects. */
  get settled(): Promise<void> {
    return this.#work;
  }

  /** Starts preparing a spare unless one is ready or being prepared, or the log is closed. */
  start(): void {
    if (this.#ready.length > 0 || this.#preparing || this.#closed) return;
    this.#preparing = true;
    // After the one before has ended: a fill given up for a recycled spare may still be removing
    // its file, whose name the next fill creates exclusively.
    const generation = this.#generation;
    this.#work = this.#running
      ? this.#work.then(() => this.#prepare(generation))
      : this.#prepare(generation);
  }

  async #prepare(generation: number): Promise<void> {
    const current = () => !this.#closed && this.#generation === generation;
    this.#running = true;
    let file;
    try {
      if (!current()) throw new Error("given up");
      file = this.#device.open(this.#writingPath, { create: true, exclusive: true });
      // Reserves every block first: a full disk fails here, before any zero is written.
      file.allocate(0, this.#sizeBytes);
      const chunk = zeros ??= new Uint8Array(FILL_CHUNK_BYTES);
      for (let at = 0; at < this.#sizeBytes; at += chunk.length) {
        while (current() && this.#pace !== undefined && at >= this.#pace()) {
          await new Promise<void>((wake) => this.#wake = wake);
        }
        if (!current()) throw new Error("given up");
        const bytes = chunk.subarray(0, Math.min(chunk.length, this.#sizeBytes - at));
        await this.#io(file.writeAsync(bytes, at));
        const end = at + chunk.length;
        if (end % FILL_SYNC_BYTES === 0 || end >= this.#sizeBytes) {
          await this.#io(file.sync("data"));
        }
      }
      file.close();
      if (!current()) throw new Error("given up");
      // Only a whole, synced spare carries the ready name (the rename needs no directory sync:
      // if a crash undoes it, the next open removes the half-named file and writes another).
      const path = this.#freePath();
      this.#device.rename(this.#writingPath, path);
      this.#preparing = false;
      this.#ready.push(path);
      this.#stats.prepared++;
    } catch {
      // Only the spare is lost, never log data: the next segment is preallocated as before. A
      // failed sync is not retried; the file whose state it left unknown is removed. A fill
      // given up for a recycled spare removes its file and leaves the state to that spare.
      file?.close();
      if (this.#generation === generation) {
        this.#preparing = false;
        if (!this.#closed) this.#stats.failed++;
      }
      try {
        if (this.#device.exists(this.#writingPath)) this.#device.remove(this.#writingPath);
      } catch {
        // Removed at the next open.
      }
    } finally {
      this.#running = false;
    }
  }

  /** Awaits one of the fill's writes or syncs, marking it pending for `wantsTurn`. */
  async #io(work: Promise<unknown>): Promise<void> {
    this.#ioSince = performance.now();
    try {
      await work;
    } finally {
      this.#ioSince = -1;
    }
  }

  /**
   * True when the fill has waited at least {@linkcode TURN_AFTER_MS} for a write or sync to
   * complete (then the wait counts from now). Those completions run only when the event loop
   * turns, and a loop of commits synced on the JS thread (`inlineSync`) completes without one:
   * the log then resolves that commit on the next macrotask. Without it such a loop never saw a
   * spare made ready after open, and every later segment was preallocated: group commits into
   * them took 1.3–1.5× as long here (12 KB groups, Bun and Deno).
   */
  wantsTurn(): boolean {
    if (this.#ioSince < 0) return false;
    const now = performance.now();
    if (now - this.#ioSince < TURN_AFTER_MS) return false;
    this.#ioSince = now;
    return true;
  }

  /**
   * Takes the file of a segment a truncation has just released and closed as a ready spare,
   * instead of its removal: renames `path` to a free ready name, giving up a fill in progress.
   * Returns false (the caller removes the file) when two spares are ready already, the preparer
   * is closed, or the rename fails. The caller syncs the directory, as after a removal: until
   * then a crash may bring the segment file back, which recovery removes (it lies below the
   * begin).
   */
  recycle(path: string): boolean {
    if (this.#closed || this.#ready.length >= SPARE_READY_FILE_NAMES.length) return false;
    const ready = this.#freePath();
    try {
      this.#device.rename(path, ready);
    } catch {
      return false;
    }
    if (this.#preparing) {
      this.#preparing = false;
      this.#generation++;
      this.progressed(); // a fill waiting for the log's pace wakes up and gives up
    }
    this.#ready.push(ready);
    this.#stats.prepared++;
    this.#stats.recycled++;
    return true;
  }

  /** Called as the log writes: lets a fill that waits for the log's pace go on. */
  progressed(): void {
    const wake = this.#wake;
    if (wake === undefined) return;
    this.#wake = undefined;
    wake();
  }

  /**
   * Takes a ready spare and returns its path: the caller renames it into place (after writing and
   * syncing a header), then calls `installed`, or `discard` if that failed.
   */
  take(): string {
    const path = this.#ready.shift();
    if (path === undefined) throw new Error("assertion failed: no spare is ready");
    return path;
  }

  /** Counts a taken spare that became a segment. */
  installed(): void {
    this.#stats.installed++;
  }

  /** Removes the taken spare at `path`, which could not be installed. */
  discard(path: string): void {
    try {
      if (this.#device.exists(path)) this.#device.remove(path);
    } catch {
      // Removed at the next open.
    }
  }

  /**
   * Stops preparing: waits for a running write or sync to end and removes the half-written
   * spare. Ready spares stay for the next open.
   */
  async close(): Promise<void> {
    this.#closed = true;
    this.progressed();
    await this.#work;
  }
}
