/**
 * `SnapshotStore`: crash-safe snapshots of replicated state, so recovery does not replay a log from
 * slot 0. A snapshot is streamed to a temp file (never held in memory whole), its checksum and slot
 * are written into its header, then: sync the file, rename it into place, sync the directory. A
 * half-written or damaged snapshot is reported and skipped; the previous valid one is used.
 *
 * File `snapshot-<slot, 16 digits>.snap`, a 64-byte header then the data. Header (little-endian):
 * 0 CRC-32 of bytes 4..64 · 4 magic `HLSN` · 8 version · 16 slot (float64) · 24 size in bytes
 * (float64) · 32 CRC-32 of the data · 40 created at, ms since the epoch (float64).
 *
 * @module
 */
import { crc32 } from "node:zlib";
import { join, resolve } from "node:path";
import { checksum } from "./checksum.ts";
import { FORMAT_VERSION } from "./constants.ts";
import type { ConsensusEntry, ConsensusLog } from "./consensus_log.ts";
import type { Device, DeviceFile, DirectoryLock } from "./device.ts";
import { ClosedError, CorruptionError, InvalidArgumentError } from "./errors.ts";
import { fsDevice } from "./fs_device.ts";
import { checkIndex, checkSizeOption } from "./validate.ts";

const MAGIC = 0x4e53_4c48; // "HLSN"
const HEADER_BYTES = 64;
const NAME_PATTERN = /^snapshot-(\d{16})\.snap$/;
const TEMP_SUFFIX = ".tmp";
/** Bytes read per chunk when streaming a snapshot back. */
const READ_CHUNK_BYTES = 1024 * 1024;

/** Data a snapshot can be made from. */
export type SnapshotData = Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** A stored snapshot. */
export interface SnapshotInfo {
  /** The slot the snapshot covers (state after applying every entry up to and including it). */
  readonly slot: number;
  /** Size of the data in bytes. */
  readonly sizeBytes: number;
  /** When it was created (ms since the epoch). */
  readonly createdAtMs: number;
  /** The file. */
  readonly path: string;
}

/** A snapshot that failed validation. */
export interface SnapshotProblem {
  /** The snapshot file. */
  readonly path: string;
  /** What failed, e.g. `data checksum mismatch`. */
  readonly reason: string;
}

function fileName(slot: number): string {
  return `snapshot-${String(slot).padStart(16, "0")}.snap`;
}

function encodeHeader(slot: number, sizeBytes: number, dataChecksum: number, createdAtMs: number) {
  const header = new Uint8Array(HEADER_BYTES);
  const view = new DataView(header.buffer);
  view.setUint32(4, MAGIC, true);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setFloat64(16, slot, true);
  view.setFloat64(24, sizeBytes, true);
  view.setUint32(32, dataChecksum, true);
  view.setFloat64(40, createdAtMs, true);
  view.setUint32(0, checksum(header.subarray(4), 0), true);
  return header;
}

async function* chunksOf(data: SnapshotData): AsyncGenerator<Uint8Array> {
  if (data instanceof Uint8Array) {
    yield data;
    return;
  }
  if (typeof (data as ReadableStream<Uint8Array>)?.getReader === "function") {
    const reader = (data as ReadableStream<Uint8Array>).getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      reader.releaseLock();
    }
  }
  yield* data as AsyncIterable<Uint8Array>;
}

/**
 * Crash-safe snapshots of replicated state, one file per slot: streamed to a temp file, synced,
 * renamed into place, directory synced. `latest()` skips a damaged or half-written snapshot for
 * the previous valid one.
 *
 * @example
 * ```ts
 * import { SnapshotStore } from "@hybridlog/hybridlog";
 *
 * const snapshots = await SnapshotStore.open({ dir: "./data/snapshots" });
 * await snapshots.create(100, new TextEncoder().encode("state at slot 100"));
 * console.log((await snapshots.latest())?.slot); // 100
 * await snapshots.close();
 * ```
 */
export class SnapshotStore {
  /** The absolute path of the snapshot directory. */
  readonly dir: string;
  #device: Device;
  #lock: DirectoryLock;
  #verified = new Map<string, SnapshotInfo>();
  #problems: SnapshotProblem[] = [];
  #closed = false;

  private constructor(dir: string, device: Device, lock: DirectoryLock) {
    this.dir = dir;
    this.#device = device;
    this.#lock = lock;
  }

  /**
   * Opens (creating) the snapshot directory, locks it, and removes temp files left by a crash.
   *
   * @param options `dir`: the directory; `device`: the storage device (default: the file system).
   * @returns The open store.
   * @throws {LockedError} Another store holds the directory.
   * @throws {InvalidArgumentError} `dir` is empty.
   */
  static open(options: { dir: string; device?: Device }): Promise<SnapshotStore> {
    return Promise.resolve().then(() => {
      if (typeof options?.dir !== "string" || options.dir === "") {
        throw new InvalidArgumentError(
          "Cannot open snapshot store: dir must be a non-empty string",
        );
      }
      const dir = resolve(options.dir);
      const device = options.device ?? fsDevice;
      const created = device.makeDirectory(dir);
      for (const path of created) device.syncDirectoryNow(join(path, ".."));
      const lock = device.lock(dir);
      for (const name of device.list(dir)) {
        if (name.endsWith(TEMP_SUFFIX)) device.remove(join(dir, name));
      }
      return new SnapshotStore(dir, device, lock);
    });
  }

  #assertOpen(what: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${what}: the snapshot store is closed`);
  }

  /** Snapshots that failed validation since open (each reported once). */
  get problems(): readonly SnapshotProblem[] {
    return this.#problems;
  }

  /**
   * Stores a snapshot of the state at `slot`, streaming `data` to disk. Durable (file and
   * directory synced) when it resolves; a crash before that leaves the previous snapshots as they
   * were. A snapshot for the same slot is replaced atomically.
   *
   * @param slot The last slot the state includes.
   * @param data The state: bytes, a `ReadableStream` or an `AsyncIterable` of byte chunks.
   * @returns The stored snapshot.
   *
   * @example
   * ```ts
   * import { SnapshotStore } from "@hybridlog/hybridlog";
   *
   * await using snapshots = await SnapshotStore.open({ dir: "./data/snapshots" });
   * async function* rows() { // streamed: never held whole in memory
   *   for (let i = 0; i < 1000; i++) yield new TextEncoder().encode(`row ${i}\n`);
   * }
   * const info = await snapshots.create(5000, rows());
   * console.log(info.slot, info.sizeBytes); // 5000 7890
   * ```
   */
  async create(slot: number, data: SnapshotData): Promise<SnapshotInfo> {
    checkIndex("create snapshot", "slot", slot);
    const ok = data instanceof Uint8Array ||
      typeof (data as ReadableStream)?.getReader === "function" ||
      typeof (data as AsyncIterable<Uint8Array>)?.[Symbol.asyncIterator] === "function";
    if (!ok) {
      throw new InvalidArgumentError(
        "Cannot create snapshot: data must be a Uint8Array, a ReadableStream or an AsyncIterable of Uint8Array",
      );
    }
    this.#assertOpen("create snapshot");
    const path = join(this.dir, fileName(slot));
    const temp = path + TEMP_SUFFIX;
    this.#device.remove(temp);
    const file = this.#device.open(temp, { create: true, exclusive: true });
    let sizeBytes = 0;
    let sum = 0;
    const createdAtMs = Date.now();
    try {
      file.write(new Uint8Array(HEADER_BYTES), 0);
      for await (const chunk of chunksOf(data)) {
        if (!(chunk instanceof Uint8Array)) {
          throw new InvalidArgumentError("Cannot create snapshot: a chunk is not a Uint8Array");
        }
        file.write(chunk, HEADER_BYTES + sizeBytes);
        sum = crc32(chunk, sum) >>> 0;
        sizeBytes += chunk.length;
      }
      file.write(encodeHeader(slot, sizeBytes, sum, createdAtMs), 0);
      await file.sync("full");
    } catch (error) {
      file.close();
      this.#device.remove(temp);
      throw error;
    }
    file.close();
    this.#device.rename(temp, path);
    await this.#device.syncDirectory(this.dir);
    const info = { slot, sizeBytes, createdAtMs, path };
    this.#verified.set(path, info);
    return info;
  }

  /** Slots of the snapshot files present (valid or not), newest first. */
  #slots(): number[] {
    const slots: number[] = [];
    for (const name of this.#device.list(this.dir)) {
      const match = NAME_PATTERN.exec(name);
      if (match) slots.push(Number(match[1]));
    }
    return slots.sort((a, b) => b - a);
  }

  /** Reads and checks the header; the data's checksum is checked by {@linkcode verify}. */
  #readHeader(
    file: DeviceFile,
    slot: number,
  ): { sizeBytes: number; sum: number; createdAtMs: number } {
    const header = new Uint8Array(HEADER_BYTES);
    if (file.read(header, 0) < HEADER_BYTES) throw new Error("header truncated");
    const view = new DataView(header.buffer);
    if (view.getUint32(4, true) !== MAGIC) throw new Error("bad magic");
    if (view.getUint32(0, true) !== checksum(header.subarray(4), 0)) {
      throw new Error("header checksum mismatch");
    }
    if (view.getUint32(8, true) !== FORMAT_VERSION) throw new Error("unsupported version");
    if (view.getFloat64(16, true) !== slot) {
      throw new Error("header slot differs from the file name");
    }
    const sizeBytes = view.getFloat64(24, true);
    if (file.sizeBytes() !== HEADER_BYTES + sizeBytes) {
      throw new Error(
        `file holds ${file.sizeBytes() - HEADER_BYTES} data bytes, header says ${sizeBytes}`,
      );
    }
    return { sizeBytes, sum: view.getUint32(32, true), createdAtMs: view.getFloat64(40, true) };
  }

  /**
   * Checks the snapshot of `slot` completely (header and every data byte); returns its info, or
   * `undefined` (recording a problem) if it is damaged or missing.
   */
  async verify(slot: number): Promise<SnapshotInfo | undefined> {
    checkIndex("verify snapshot", "slot", slot);
    this.#assertOpen("verify snapshot");
    const path = join(this.dir, fileName(slot));
    const known = this.#verified.get(path);
    if (known) return known;
    if (!this.#device.exists(path)) return undefined;
    const file = this.#device.open(path, { readOnly: true });
    try {
      const header = this.#readHeader(file, slot);
      const chunk = new Uint8Array(Math.min(READ_CHUNK_BYTES, Math.max(header.sizeBytes, 1)));
      let sum = 0;
      for (let at = 0; at < header.sizeBytes; at += chunk.length) {
        const part = chunk.subarray(0, Math.min(chunk.length, header.sizeBytes - at));
        file.read(part, HEADER_BYTES + at);
        sum = crc32(part, sum) >>> 0;
        if (at % (64 * READ_CHUNK_BYTES) === 0) await Promise.resolve(); // let others run
      }
      if (sum !== header.sum) throw new Error("data checksum mismatch");
      const info = { slot, sizeBytes: header.sizeBytes, createdAtMs: header.createdAtMs, path };
      this.#verified.set(path, info);
      return info;
    } catch (error) {
      if (!(error instanceof Error) || error instanceof ClosedError) throw error;
      if ((error as { code?: string }).code === "ERR_IO") throw error;
      if (!this.#problems.some((p) => p.path === path)) {
        this.#problems.push({ path, reason: error.message });
      }
      return undefined;
    } finally {
      file.close();
    }
  }

  /** Every valid snapshot, newest first (damaged ones are reported in `problems`). */
  async list(): Promise<SnapshotInfo[]> {
    this.#assertOpen("list snapshots");
    const infos: SnapshotInfo[] = [];
    for (const slot of this.#slots()) {
      const info = await this.verify(slot);
      if (info) infos.push(info);
    }
    return infos;
  }

  /** The newest valid snapshot; a damaged newer one is reported and skipped. */
  async latest(): Promise<SnapshotInfo | undefined> {
    this.#assertOpen("find latest snapshot");
    for (const slot of this.#slots()) {
      const info = await this.verify(slot);
      if (info) return info;
    }
    return undefined;
  }

  /** The valid snapshot of `slot`, or `undefined`. */
  get(slot: number): Promise<SnapshotInfo | undefined> {
    return this.verify(slot);
  }

  /**
   * Streams the data of the snapshot of `slot`, chunk by chunk (never whole in memory). The stream
   * errors with `CorruptionError` if the bytes read do not match the stored checksum.
   *
   * @example
   * ```ts
   * import { SnapshotStore } from "@hybridlog/hybridlog";
   *
   * await using snapshots = await SnapshotStore.open({ dir: "./data/snapshots" });
   * await snapshots.create(100, new TextEncoder().encode("state at slot 100"));
   * const latest = await snapshots.latest();
   * if (latest) console.log(await new Response(snapshots.open(latest.slot)).text());
   * ```
   */
  open(slot: number): ReadableStream<Uint8Array> {
    checkIndex("read snapshot", "slot", slot);
    this.#assertOpen("read snapshot");
    const path = join(this.dir, fileName(slot));
    const file = this.#device.open(path, { readOnly: true });
    let header: { sizeBytes: number; sum: number };
    try {
      header = this.#readHeader(file, slot);
    } catch (error) {
      file.close();
      if ((error as { code?: string }).code) throw error;
      throw new CorruptionError(path, 0, (error as Error).message);
    }
    let at = 0;
    let sum = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        const remaining = header.sizeBytes - at;
        if (remaining <= 0) {
          file.close();
          if (sum !== header.sum) {
            controller.error(new CorruptionError(path, 0, "data checksum mismatch"));
          } else controller.close();
          return;
        }
        const chunk = new Uint8Array(Math.min(READ_CHUNK_BYTES, remaining));
        try {
          file.read(chunk, HEADER_BYTES + at);
        } catch (error) {
          file.close();
          controller.error(error);
          return;
        }
        at += chunk.length;
        sum = crc32(chunk, sum) >>> 0;
        controller.enqueue(chunk);
      },
      cancel() {
        file.close();
      },
    });
  }

  /**
   * Deletes all but the newest `keep` valid snapshots, and every damaged one.
   *
   * @returns How many files were deleted.
   */
  async prune(options: { keep: number }): Promise<number> {
    const keep = checkSizeOption(
      "prune snapshots",
      "keep",
      options?.keep,
      1,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    this.#assertOpen("prune snapshots");
    let kept = 0;
    let removed = 0;
    for (const slot of this.#slots()) {
      const info = await this.verify(slot);
      if (info && kept < keep) {
        kept++;
        continue;
      }
      const path = join(this.dir, fileName(slot));
      this.#device.remove(path);
      this.#verified.delete(path);
      removed++;
    }
    if (removed) await this.#device.syncDirectory(this.dir);
    return removed;
  }

  /** Releases the directory lock. */
  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#lock.release();
    }
    return Promise.resolve();
  }

  /** Same as {@linkcode SnapshotStore.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** Options of {@linkcode recover}. */
export interface RecoverOptions {
  /** The log whose committed entries are replayed after the snapshot. */
  log: ConsensusLog;
  /** Where the snapshots of that log's state are. */
  snapshots: SnapshotStore;
  /** Restores the state from the latest valid snapshot (called at most once). */
  onSnapshot?: (snapshot: SnapshotInfo, data: ReadableStream<Uint8Array>) => void | Promise<void>;
  /** Applies one committed entry after the snapshot, in slot order. */
  onEntry: (entry: ConsensusEntry) => void | Promise<void>;
}

/** What {@linkcode recover} restored. */
export interface RecoverResult {
  /** The slot of the snapshot restored, or `undefined` if none was valid. */
  readonly snapshotSlot: number | undefined;
  /** Committed entries replayed after it. */
  readonly entriesReplayed: number;
}

/**
 * Restores replicated state: the latest valid snapshot, then every committed entry after its slot
 * in slot order. Correct after a crash at any point of "snapshot, then `truncatePrefix`".
 *
 * @param options The log, the snapshots, and what to do with each.
 * @returns Which snapshot was restored and how many entries were replayed after it.
 *
 * @example
 * ```ts
 * import { ConsensusLog, recover, SnapshotStore } from "@hybridlog/hybridlog";
 *
 * await using log = await ConsensusLog.open({ dir: "./data/counter/log" });
 * await using snapshots = await SnapshotStore.open({ dir: "./data/counter/snapshots" });
 * const encode = (n: number) => new TextEncoder().encode(String(n));
 * for (let slot = 1; slot <= 3; slot++) log.accept(slot, { round: 1, node: 1 }, encode(slot));
 * await log.commitMany([1, 2, 3]);
 * await snapshots.create(2, encode(1 + 2)); // the state after slot 2: the sum so far
 * await log.truncatePrefix(3); // slots 1 and 2 are in the snapshot
 *
 * // After a restart: the snapshot, then the entries after it.
 * let sum = 0;
 * const result = await recover({
 *   log,
 *   snapshots,
 *   onSnapshot: async (_info, data) => {
 *     sum = Number(await new Response(data).text());
 *   },
 *   onEntry: (entry) => {
 *     sum += Number(new TextDecoder().decode(entry.value));
 *   },
 * });
 * console.log(sum, result); // 6 { snapshotSlot: 2, entriesReplayed: 1 }
 * ```
 */
export async function recover(options: RecoverOptions): Promise<RecoverResult> {
  const { log, snapshots, onSnapshot, onEntry } = options;
  const snapshot = await snapshots.latest();
  if (snapshot && onSnapshot) await onSnapshot(snapshot, snapshots.open(snapshot.slot));
  let entriesReplayed = 0;
  const from = snapshot ? snapshot.slot + 1 : 0;
  for (const entry of log.committed({ from })) {
    await onEntry(entry);
    entriesReplayed++;
  }
  return { snapshotSlot: snapshot?.slot, entriesReplayed };
}
