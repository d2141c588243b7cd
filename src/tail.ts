/**
 * The durable tail: the storage core under every log. Records are placed at logical addresses,
 * staged in memory, written out with one `pwrite` per flush, and made durable by group commit:
 * one commit marker plus one sync per cycle, shared by every commit that was waiting. The sync
 * runs off the JS thread. A failed write or sync poisons the tail: fsync is never retried.
 *
 * @module
 */
import { type Checkpoint, writeCheckpoint } from "./checkpoint.ts";
import { native } from "../ffi/mod.ts";
import type { RangeChecksum } from "../ffi/types.ts";
import { RECORD_HEADER_BYTES } from "./constants.ts";
import type { Device, DeviceFile, DirectoryLock } from "./device.ts";
import { ClosedError, CorruptionError, PoisonedError } from "./errors.ts";
import { LogMetrics, type Metrics } from "./metrics.ts";
import {
  COMMIT_MARKER_FIXED_BYTES,
  headerKind,
  headerLength,
  RecordKind,
  recordSizeBytes,
  sealCopiedRecord,
  sealRecord,
  writeHeader,
} from "./record_format.ts";
import {
  encodeCommitMarker,
  headerIsZero,
  type RecoveredLog,
  recoverLog,
  tailSegmentIndex,
  writeCommitMarker,
} from "./recovery.ts";
import { EntryIterator } from "./entry_iterator.ts";
import {
  type HeaderScratch,
  headerScratch,
  payloadView,
  PREADS_BEFORE_MAPPING,
  readPayloadCopy,
  recordInSegment,
  type Segment,
  type SegmentSet,
} from "./segments.ts";
import { FILL_LEAD_BYTES, removeLeftoverSpare, SparePreparer } from "./spare_segment.ts";
import { nextTurn } from "./validate.ts";

/** How durable a commit is when it resolves. */
export type Durability = "none" | "data" | "full";

/** A durable commit point. */
export interface CommitPoint {
  /** Number of this commit; 1 for the first commit of a new log, increasing by one. */
  readonly commitNumber: number;
  /** Every record below this address is committed. */
  readonly committedUntilAddress: number;
  /** The cookie of the latest commit that carried one. */
  readonly cookie: Uint8Array | undefined;
}

/** Options of {@linkcode DurableTail.open}. */
export interface TailOptions {
  dir: string;
  device: Device;
  durability: Durability;
  segmentSizeBytes: number;
  bufferSizeBytes: number;
  checkpointIntervalBytes: number;
  /** Sync on the JS thread (`syncNow`) rather than on the runtime's worker pool. */
  inlineSync?: boolean;
  /** Make each new segment from a zero-filled spare prepared in the background. */
  zeroFillSegments?: boolean;
  /** The registry the log records into. */
  metrics: Metrics;
  /** The `log` label of its series (default: `dir`). */
  metricsLabel?: string;
}

/** Counters of a tail since it was opened. */
export interface TailStats {
  /** Commit cycles completed (each may serve many `commit()` calls). */
  commits: number;
  /** File and directory syncs issued. */
  syncs: number;
  /** Staging-buffer write-outs. */
  flushes: number;
  /** Bytes written to segment files. */
  bytesWritten: number;
  /** Checkpoints written. */
  checkpoints: number;
  /**
   * Spare segments made ready (`zeroFillSegments`): written with zeros and synced, recycled, or
   * kept from the last open.
   */
  zeroFillPrepared: number;
  /** Of those, the files of truncated segments, made ready with a rename (no zeros written). */
  zeroFillRecycled: number;
  /** Segments made from those spares. */
  zeroFillInstalled: number;
  /** Spare preparations that failed (each segment is then preallocated as without the option). */
  zeroFillFailed: number;
}

/**
 * One group commit. Every `commit()` that joins it gets the same promise: no per-caller closure
 * or object, and one settlement wakes them all.
 */
class Cycle {
  readonly promise: Promise<CommitPoint>;
  resolve!: (point: CommitPoint) => void;
  reject!: (error: unknown) => void;
  /** `commit()` calls that joined (the group size). */
  requests = 0;
  #settled: Promise<void> | undefined;

  constructor() {
    this.promise = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** The same settlement without the commit point (one derived promise per cycle, not per call). */
  get settled(): Promise<void> {
    return this.#settled ??= this.promise.then(ignore);
  }
}

function ignore(): void {}

/** What `#lastDone` holds after a cycle completed at once (it resolves with no failure). */
const SETTLED: Promise<unknown> = Promise.resolve(undefined);

/**
 * Cycles whose syncs may be in flight at once. A second cycle writes and starts its sync while
 * the first one's sync runs, so commits that arrive during a sync do not wait for it to end;
 * cycles still complete strictly in order.
 */
const CYCLES_IN_FLIGHT_MAX = 2;

/**
 * Callers one completion resumed from which their next cycle is split in two. Committers in
 * lockstep (each awaiting its commit, then committing again) all join one cycle, so the thread
 * sat idle during each sync and the disk during the callers' work. With at least this many
 * resumed and no cycle in flight, the next cycle starts as soon as half of them joined, and the
 * other half's work runs while its sync is in flight. 256 committers on the owner (workers bench,
 * medians of 6 alternating runs): Bun 701k against 570k commits/s, Deno 571k against 432k (Deno
 * gains only since overlapping syncs go through two descriptors, see fs_device.ts). Splitting
 * groups from 32 on cost the 64-committer row (Bun 260k against 289k): there the callers' work
 * is short next to a sync, and a second sync only adds to the disk's.
 */
const SPLIT_RESUMED_MIN = 128;

/** `reserve` could not place a record without I/O (only when I/O was not allowed). */
const WOULD_BLOCK = -2;

/**
 * The staging buffer as bytes, 32-bit words and doubles (one buffer): where a caller of
 * {@linkcode DurableTail.stage} writes its payload.
 */
export interface StagingViews {
  readonly bytes: Uint8Array;
  readonly words: Uint32Array;
  readonly doubles: Float64Array;
}

/** The durable tail of one log directory. */
export class DurableTail {
  readonly dir: string;
  readonly durability: Durability;
  /** Syncs run on the JS thread (`syncNow`), not on the worker pool. */
  readonly inlineSync: boolean;
  readonly segmentSizeBytes: number;
  readonly logId: number;
  /** The log's series in its metrics registry, released at close. */
  readonly metrics: LogMetrics;
  #device: Device;
  #lock: DirectoryLock;
  #segments: SegmentSet;
  #checkpointFile: DeviceFile;
  #checkpointNumber: number;
  #checkpointAddress: number;
  #checkpointIntervalBytes: number;
  /** The cookie in the newest checkpoint on disk (rewritten as is when marking it unclean). */
  #checkpointCookie: Uint8Array | undefined;

  // Staging: bytes [#stagingBase, #tailAddress) live in #staged, not yet written to a segment.
  #stagingSizeBytes: number;
  #staged: Uint8Array;
  #stagedWords: Uint32Array;
  #stagedView: DataView;
  /** A native checksum of ranges of the staging buffer, where the runtime has a fast one. */
  #stagedChecksum: RangeChecksum | undefined = undefined;
  /** The header buffer of `committedPayloadCopy`'s reads (made on the first). */
  #headerScratch: HeaderScratch | undefined = undefined;
  #staging: StagingViews;
  #stagingBase: number;
  /**
   * Records ending at or below this address fit both the staging buffer and the tail's segment,
   * so appending one needs no I/O and no placement decision. Set by each placement; it can only
   * lag the true bound (staging and segment ends only move forward), and a stale value merely
   * sends an append down the placing path, which sets it again.
   */
  #roomEnd = 0;

  #beginAddress: number;
  #durableBeginAddress: number;
  #committedUntilAddress: number;
  #tailAddress: number;
  #commitNumber: number;
  #cookie: Uint8Array | undefined;
  #pendingCookie: Uint8Array | undefined;

  /** The cycle new commits join; it has not started yet. */
  #next: Cycle | undefined;
  /** The newest started cycle until it completes. */
  #lastStarted: Cycle | undefined;
  /** Cycles started and not yet completed. */
  #inFlight = 0;
  #microtaskPending = false;
  #immediatePending = false;
  /** Callers the last completion resumed, until the next cycle starts. */
  #resumed = 0;
  /** What the newest started cycle covers: its end address, begin address and commit number. */
  #startedUntil: number;
  #startedBegin: number;
  #startedCommitNumber: number;
  /** Settles with the failure of the newest started cycle (or of one before it), if any. */
  #lastDone: Promise<unknown> = Promise.resolve(undefined);
  /** The first failure of a cycle: every later cycle fails with it (their bytes come after). */
  #failed: unknown = undefined;
  /** Called at each completed cycle, before its callers resume (see `onDurable`). */
  #durableListener: ((committedUntilAddress: number) => void) | undefined;
  #commitListeners: Array<() => void> = [];
  #poison: unknown = undefined;
  #closed = false;
  #recoveredTruncatedTail: boolean;
  /**
   * The newest checkpoint on disk is marked clean: nothing was written after it. Recovery skips
   * zeroing the tail only then, so the first segment write after it marks it unclean (durably).
   */
  #cleanOnDisk: boolean;
  #stats = { commits: 0, syncs: 0, flushes: 0, bytesWritten: 0, checkpoints: 0 };
  #spares: SparePreparer | undefined;
  /** Spares are filled at the log's pace (not while open waits for a new log's first one). */
  #pacing = false;

  private constructor(options: TailOptions, lock: DirectoryLock, recovered: RecoveredLog) {
    this.dir = options.dir;
    this.durability = options.durability;
    this.inlineSync = options.inlineSync ?? false;
    this.segmentSizeBytes = options.segmentSizeBytes;
    this.logId = recovered.checkpoint.logId;
    this.#device = options.device;
    this.#lock = lock;
    this.#segments = recovered.segments;
    this.#checkpointFile = recovered.checkpointFile;
    this.#checkpointNumber = recovered.checkpoint.checkpointNumber;
    this.#checkpointAddress = recovered.checkpoint.committedUntilAddress;
    this.#checkpointIntervalBytes = options.checkpointIntervalBytes;
    this.#checkpointCookie = recovered.checkpoint.cookie;
    // Allocated by the first append: a log opened to be read (or closed unwritten) never pays it.
    this.#stagingSizeBytes = options.bufferSizeBytes;
    this.#staged = new Uint8Array(0);
    this.#stagedWords = new Uint32Array(0);
    this.#stagedView = new DataView(this.#staged.buffer);
    this.#staging = {
      bytes: this.#staged,
      words: this.#stagedWords,
      doubles: new Float64Array(0),
    };
    this.#beginAddress = this.#durableBeginAddress = recovered.checkpoint.beginAddress;
    this.#committedUntilAddress = this.#tailAddress = this.#stagingBase = recovered.tailAddress;
    this.#commitNumber = this.#startedCommitNumber = recovered.commitNumber;
    this.#startedUntil = recovered.tailAddress;
    this.#startedBegin = recovered.checkpoint.beginAddress;
    this.#cookie = recovered.cookie;
    this.#recoveredTruncatedTail = recovered.truncatedTail;
    this.#cleanOnDisk = recovered.checkpoint.clean &&
      recovered.checkpoint.committedUntilAddress === recovered.tailAddress;
    this.metrics = new LogMetrics(options.metrics, options.metricsLabel ?? options.dir);
    if (options.zeroFillSegments) {
      const S = options.segmentSizeBytes;
      // A spare may be filled as far as the log has written into its current segment, plus a
      // lead (all of it while the log waits for a new log's first spare in open).
      const pace = () =>
        this.#pacing
          ? this.#tailAddress - tailSegmentIndex(this.#tailAddress, S) * S + FILL_LEAD_BYTES
          : Infinity;
      const adopt = { logId: this.logId, nextIndex: this.#segments.lastIndex! + 1 };
      this.#spares = new SparePreparer(options.device, options.dir, S, adopt, pace);
      this.#segments.spares = this.#spares;
      this.#spares.start();
    }
  }

  /** Locks `dir`, recovers (or creates) the log in it, and returns its tail. */
  static open(options: TailOptions): DurableTail {
    const { device, dir } = options;
    // New directories become durable when the log is created (recovery syncs every ancestor).
    device.makeDirectory(dir);
    const lock = device.lock(dir);
    try {
      // One listing serves the leftover spares and recovery (the spares are not segments).
      const names = device.list(dir);
      removeLeftoverSpare(device, dir, options.zeroFillSegments ?? false, names);
      const recovered = recoverLog(device, dir, {
        segmentSizeBytes: options.segmentSizeBytes,
        syncs: options.durability !== "none",
        names,
      });
      return new DurableTail(options, lock, recovered);
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /**
   * With `zeroFillSegments`, swaps a segment this open created and nothing was written to (a new
   * log's first) for the first zero-filled spare, so that the log's first commits gain as much as
   * later ones (a reopened empty log keeps its segment: it may be zero-filled already).
   * Waits for that spare (~60 ms for 64 MiB here). Called by `open`, before anything is appended;
   * on failure the tail is closed.
   */
  async zeroFillEmptyTail(): Promise<void> {
    const spares = this.#spares;
    const index = this.#segments.lastIndex;
    const empty = () =>
      !this.#closed && index !== undefined && this.#segments.lastIndex === index &&
      this.#segments.at(index)!.verifyBelow === 0 && // created by this process, not adopted
      this.#tailAddress === this.#segments.firstAddressOf(index) &&
      this.#committedUntilAddress === this.#tailAddress && this.#stagingBase === this.#tailAddress;
    if (spares === undefined || !empty()) {
      this.#pacing = true;
      return;
    }
    await spares.settled;
    this.#pacing = true;
    if (!empty()) return;
    try {
      this.#segments.replaceWithSpare(index!);
    } catch (error) {
      await this.close().catch(() => {});
      throw error;
    }
  }

  /** The device the tail writes through. */
  get device(): Device {
    return this.#device;
  }
  /** Lowest readable address. */
  get beginAddress(): number {
    return this.#beginAddress;
  }
  /** Every record below this address is durable (per the durability mode). */
  get committedUntilAddress(): number {
    return this.#committedUntilAddress;
  }
  /** Where the next record goes. */
  get tailAddress(): number {
    return this.#tailAddress;
  }
  /** Number of the latest commit. */
  get commitNumber(): number {
    return this.#commitNumber;
  }
  /** Cookie of the latest commit that carried one. */
  get cookie(): Uint8Array | undefined {
    return this.#cookie;
  }
  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }
  /** True when the last open cut off a torn or uncommitted tail. */
  get recoveredTruncatedTail(): boolean {
    return this.#recoveredTruncatedTail;
  }
  /** Bytes mapped by the segments. */
  get mappedBytes(): number {
    return this.#segments.mappedBytes;
  }
  /** The latest commit point. */
  get commitPoint(): CommitPoint {
    return {
      commitNumber: this.#commitNumber,
      committedUntilAddress: this.#committedUntilAddress,
      cookie: this.#cookie,
    };
  }
  /** Counters since open. */
  stats(): TailStats {
    const spares = this.#spares?.stats;
    return {
      ...this.#stats,
      zeroFillPrepared: spares?.prepared ?? 0,
      zeroFillRecycled: spares?.recycled ?? 0,
      zeroFillInstalled: spares?.installed ?? 0,
      zeroFillFailed: spares?.failed ?? 0,
    };
  }

  /** Why the tail stopped taking writes (a failed write or sync), or `undefined`. */
  get failure(): unknown {
    return this.#poison;
  }

  /** Throws if the tail cannot take writes (closed or poisoned). */
  assertWritable(what: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${what}: the log is closed`);
    if (this.#poison !== undefined) {
      throw new PoisonedError(
        `Cannot ${what}: an earlier write or sync failed, reopen the log to recover`,
        { cause: this.#poison },
      );
    }
  }

  /** Throws if the tail is closed. */
  assertOpen(what: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${what}: the log is closed`);
  }

  // ---- placement -------------------------------------------------------------------------

  /**
   * Makes sure a record of `payloadBytes` can be appended without a failure that leaves state
   * half-changed: creates the segment a roll-over will need first (the only step that may fail
   * cleanly, e.g. `ENOSPC`).
   */
  prepareOne(payloadBytes: number): void {
    const address = this.#tailAddress;
    // The common case: the record fits the room the last placement left, nothing to create.
    if (address + recordSizeBytes(payloadBytes) <= this.#roomEnd) return;
    const S = this.segmentSizeBytes;
    const index = tailSegmentIndex(address, S);
    if (address - index * S + recordSizeBytes(payloadBytes) <= S) return;
    this.prepare([payloadBytes]);
  }

  /**
   * Like {@linkcode DurableTail.prepareOne} for a run of records: the first `count` of
   * `payloadSizes` (default: all of them).
   */
  prepare(payloadSizes: ArrayLike<number>, count: number = payloadSizes.length): void {
    const S = this.segmentSizeBytes;
    let address = this.#tailAddress;
    let lastIndex = tailSegmentIndex(address, S);
    for (let i = 0; i < count; i++) {
      const size = recordSizeBytes(payloadSizes[i]);
      const index = tailSegmentIndex(address, S);
      if (address - index * S + size > S) {
        address = this.#segments.firstAddressOf(index + 1);
        lastIndex = index + 1;
      }
      address += size;
    }
    for (let index = this.#segments.lastIndex! + 1; index <= lastIndex; index++) {
      this.#segments.create(index);
    }
  }

  /**
   * Appends one record of `kind` whose payload is `head` (if any) followed by `body`, returning
   * its address. With `mayBlock` false, returns -1 instead of doing I/O. The caller validated
   * sizes and called {@linkcode DurableTail.prepare} when a roll-over may need a new segment.
   */
  append(
    kind: RecordKind,
    head: Uint8Array | undefined,
    body: Uint8Array,
    mayBlock = true,
  ): number {
    const payloadBytes = (head === undefined ? 0 : head.length) + body.length;
    const size = recordSizeBytes(payloadBytes);
    let address = this.#tailAddress;
    if (address + size <= this.#roomEnd) {
      // The common case: staged at once, no placement decision to make.
      this.#tailAddress = address + size;
    } else {
      address = this.#reserve(payloadBytes, mayBlock);
      if (address < 0) return -1;
      if (address < this.#stagingBase || address + size > this.#stagingEnd()) {
        this.#writeDirect(address, kind, head, body, payloadBytes);
        return address;
      }
    }
    const offset = address - this.#stagingBase;
    const staged = this.#staged;
    const words = this.#stagedWords;
    writeHeader(words, offset, payloadBytes, address, kind);
    let at = offset + RECORD_HEADER_BYTES;
    if (head !== undefined) {
      staged.set(head, at);
      at += head.length;
    }
    staged.set(body, at);
    sealCopiedRecord(staged, words, offset, head, body, this.logId, this.#stagedChecksum);
    return address;
  }

  /**
   * Appends one record of `kind` whose payload the caller writes in place, at once (before any
   * other call on the tail): `payloadBytes` bytes at {@linkcode DurableTail.stagedPayloadOffset}
   * of the address in {@linkcode DurableTail.staging}, then seals it with
   * {@linkcode DurableTail.sealStaged}. Saves `append` the copy of a header. Returns the record's
   * address, or -1 if a record that large is never staged (then use `append`). The caller called
   * `prepare` when a roll-over may need a new segment.
   */
  stage(kind: RecordKind, payloadBytes: number): number {
    if (this.#staged.length === 0) this.#allocateStaging();
    const size = recordSizeBytes(payloadBytes);
    if (size > this.#staged.length) return -1;
    const address = this.#reserve(payloadBytes, true);
    const offset = address - this.#stagingBase;
    // A record no larger than the buffer is always placed in it (after a flush if need be).
    if (offset < 0) throw new Error("assertion failed: a staged record starts before the staging");
    if (address + size > this.#stagingEnd()) {
      throw new Error("assertion failed: a staged record ends past the staging buffer");
    }
    writeHeader(this.#stagedWords, offset, payloadBytes, address, kind);
    return address;
  }

  /**
   * Seals the record {@linkcode DurableTail.stage} placed at `address`, once its payload is
   * written (records are sealed as they are staged; a write-out seals nothing).
   */
  sealStaged(address: number): void {
    sealRecord(
      this.#staged,
      this.#stagedWords,
      address - this.#stagingBase,
      this.logId,
      this.#stagedChecksum,
    );
  }

  /** The staging buffer's views (replaced once, when the first record allocates the buffer). */
  get staging(): StagingViews {
    return this.#staging;
  }

  /** Byte offset in {@linkcode DurableTail.staging} of the payload of the record staged at `address`. */
  stagedPayloadOffset(address: number): number {
    return address - this.#stagingBase + RECORD_HEADER_BYTES;
  }

  #stagingEnd(): number {
    return this.#stagingBase + this.#staged.length;
  }

  /** Reserves space for a record and returns its address, or a negative code. */
  #reserve(payloadBytes: number, mayBlock: boolean): number {
    if (this.#staged.length === 0) this.#allocateStaging();
    const S = this.segmentSizeBytes;
    const size = recordSizeBytes(payloadBytes);
    let address = this.#tailAddress;
    const index = tailSegmentIndex(address, S);
    if (address - index * S + size > S) {
      if (!mayBlock) return WOULD_BLOCK;
      this.#rollOver(index);
      address = this.#tailAddress;
    }
    if (address + size > this.#stagingEnd()) {
      if (!mayBlock) return WOULD_BLOCK;
      this.flush();
      if (size > this.#staged.length) {
        this.#tailAddress = this.#stagingBase = address + size;
        this.#roomEnd = 0; // the next append places its record again
        return address;
      }
    }
    this.#tailAddress = address + size;
    this.#roomEnd = Math.min(this.#stagingEnd(), (tailSegmentIndex(address + size, S) + 1) * S);
    return address;
  }

  /** Allocates the staging buffer (nothing is staged yet: it starts at the tail). */
  #allocateStaging(): void {
    const buffer = new ArrayBuffer(this.#stagingSizeBytes);
    this.#staged = new Uint8Array(buffer);
    this.#stagedWords = new Uint32Array(buffer);
    this.#stagedView = new DataView(buffer);
    this.#stagedChecksum = native.rangeChecksum(buffer);
    this.#staging = {
      bytes: this.#staged,
      words: this.#stagedWords,
      doubles: new Float64Array(buffer),
    };
  }

  /** Moves the tail to the next segment, padding the rest of the current one. */
  #rollOver(index: number): void {
    const S = this.segmentSizeBytes;
    if (this.#segments.at(index + 1) === undefined) this.#segments.create(index + 1);
    this.flush();
    const address = this.#tailAddress;
    const remaining = (index + 1) * S - address;
    if (remaining >= RECORD_HEADER_BYTES) {
      const header = new Uint8Array(RECORD_HEADER_BYTES);
      const words = new Uint32Array(header.buffer);
      writeHeader(words, 0, remaining - RECORD_HEADER_BYTES, address, RecordKind.padding);
      sealRecord(header, words, 0, this.logId);
      this.#writeToSegment(address, header);
    }
    this.#tailAddress = this.#stagingBase = this.#segments.firstAddressOf(index + 1);
  }

  #writeDirect(
    address: number,
    kind: RecordKind,
    head: Uint8Array | undefined,
    body: Uint8Array,
    length: number,
  ): void {
    const record = new Uint8Array(recordSizeBytes(length));
    const words = new Uint32Array(record.buffer);
    writeHeader(words, 0, length, address, kind);
    if (head !== undefined) record.set(head, RECORD_HEADER_BYTES);
    record.set(body, RECORD_HEADER_BYTES + length - body.length);
    sealRecord(record, words, 0, this.logId);
    this.#writeToSegment(address, record);
  }

  #writeToSegment(address: number, bytes: Uint8Array): void {
    const segment = this.#segments.ofAddress(address)!;
    try {
      if (this.#cleanOnDisk) this.#markUnclean();
      segment.file.write(bytes, address - segment.index * this.segmentSizeBytes);
    } catch (error) {
      // What reached the file is unknown now; only a reopen can tell.
      this.#poison = error;
      throw error;
    }
    segment.dirty = true;
    this.#stats.bytesWritten += bytes.length;
    this.metrics.writtenBytes.value += bytes.length;
  }

  /**
   * Rewrites the checkpoint as not clean, synced, before the first segment write after a clean
   * one: otherwise records written after it, partly lost at a power failure, could survive past a
   * recovery that trusted "clean" and skipped zeroing the tail. Once per clean open.
   */
  #markUnclean(): void {
    const point: Checkpoint = {
      logId: this.logId,
      checkpointNumber: this.#checkpointNumber + 1,
      commitNumber: this.#commitNumber,
      beginAddress: this.#durableBeginAddress,
      committedUntilAddress: this.#checkpointAddress,
      segmentSizeBytes: this.segmentSizeBytes,
      clean: false,
      cookie: this.#checkpointCookie,
    };
    writeCheckpoint(this.#checkpointFile, point);
    if (this.durability !== "none") this.#checkpointFile.syncNow("data");
    this.#checkpointNumber = point.checkpointNumber;
    this.#cleanOnDisk = false;
  }

  /**
   * Writes every staged record to its segment (page cache; no sync). Each was sealed as it was
   * staged, while its bytes were still in the cache.
   */
  flush(): void {
    const used = this.#tailAddress - this.#stagingBase;
    if (used === 0) return;
    this.#writeToSegment(this.#stagingBase, this.#staged.subarray(0, used));
    this.#stagingBase = this.#tailAddress;
    this.#stats.flushes++;
    this.#spares?.progressed();
  }

  // ---- commit ----------------------------------------------------------------------------

  /** True when a commit now would write nothing new and none is running. */
  get idle(): boolean {
    return this.#tailAddress === this.#committedUntilAddress && this.#pendingCookie === undefined &&
      this.#beginAddress === this.#durableBeginAddress && this.#inFlight === 0 &&
      this.#next === undefined;
  }

  /**
   * Registers the one listener called when a cycle completes, with the new committed address,
   * before any of that cycle's callers resume: state that must read as committed by then (the
   * consensus log's slot words) is updated there.
   */
  onDurable(listener: (committedUntilAddress: number) => void): void {
    this.#durableListener = listener;
  }

  /**
   * Commits everything appended so far. Resolves when it is durable; concurrent calls share one
   * cycle (one marker, one sync).
   */
  commit(cookie?: Uint8Array): Promise<CommitPoint> {
    return this.#join(cookie)?.promise ?? Promise.resolve(this.commitPoint);
  }

  /** Like {@linkcode DurableTail.commit}, resolving with nothing (no per-call promise). */
  commitVoid(): Promise<void> {
    return this.#join(undefined)?.settled ?? Promise.resolve();
  }

  /** The cycle that makes everything appended so far durable, or none when it already is. */
  #join(cookie: Uint8Array | undefined): Cycle | undefined {
    this.assertWritable("commit");
    this.metrics.commitsRequested.value++;
    if (cookie !== undefined) this.#pendingCookie = cookie.slice();
    else if (
      this.#next === undefined && this.#tailAddress === this.#startedUntil &&
      this.#pendingCookie === undefined && this.#beginAddress === this.#startedBegin
    ) {
      // Nothing new since the newest started cycle: it (if still running) covers this call.
      return this.#lastStarted;
    }
    const cycle = this.#next ??= new Cycle();
    cycle.requests++;
    if (
      this.#inFlight === 0 && this.#resumed >= SPLIT_RESUMED_MIN &&
      cycle.requests * 2 >= this.#resumed
    ) {
      this.#startNext(); // half the resumed callers joined: on this caller's turn, before the rest
    } else this.#scheduleStart();
    return cycle;
  }

  /**
   * Starts the waiting cycle soon. A lone committer's cycle starts in a microtask (no extra hop).
   * Otherwise (a cycle in flight, or the last completion resumed several callers, which commit
   * again as their continuations run) it starts after the pending microtasks, so they all join
   * one cycle instead of trickling into many (or two halves: see `SPLIT_RESUMED_MIN`). A second
   * cycle may write and start its sync while the first one's sync is in flight.
   */
  #scheduleStart(): void {
    if (this.#next === undefined || this.#inFlight >= CYCLES_IN_FLIGHT_MAX) return;
    if (this.#inFlight === 0 && this.#resumed <= 1) {
      if (this.#microtaskPending) return;
      this.#microtaskPending = true;
      queueMicrotask(this.#startFromMicrotask);
    } else if (!this.#immediatePending) {
      this.#immediatePending = true;
      setImmediate(this.#startFromImmediate);
    }
  }

  #startFromMicrotask = (): void => {
    this.#microtaskPending = false;
    this.#startNext();
  };

  #startFromImmediate = (): void => {
    this.#immediatePending = false;
    this.#startNext();
  };

  #startNext(): void {
    const cycle = this.#next;
    if (cycle === undefined || this.#inFlight >= CYCLES_IN_FLIGHT_MAX) return;
    this.#resumed = 0;
    this.#next = undefined;
    if (this.#closed || this.#poison !== undefined) {
      cycle.reject(
        this.#closed
          ? new ClosedError("Cannot commit: the log is closed")
          : new PoisonedError("Cannot commit: an earlier write or sync failed", {
            cause: this.#poison,
          }),
      );
      return;
    }
    this.#inFlight++;
    this.#lastStarted = cycle;
    const previous = this.#lastDone;
    let sync: Promise<void> | undefined;
    let failure: unknown;
    let until = 0;
    let commitNumber = 0;
    let cookie: Uint8Array | undefined;
    try {
      cookie = this.#pendingCookie;
      commitNumber = this.#startedCommitNumber + 1;
      this.#appendCommitMarker(commitNumber, cookie);
      this.#pendingCookie = undefined;
      until = this.#tailAddress;
      this.flush();
      this.#startedCommitNumber = commitNumber;
      this.#startedUntil = until;
      this.#startedBegin = this.#beginAddress;
      sync = this.#syncSegments();
    } catch (error) {
      failure = error;
      this.#poison ??= error;
    }
    if (
      sync === undefined && failure === undefined && this.#inFlight === 1 &&
      this.#failed === undefined
    ) {
      // Synced on this thread (inlineSync, or durability "none") with no other cycle in flight:
      // nothing to wait for, so complete here rather than a few microtasks later.
      this.#publish(cycle, until, commitNumber, cookie);
      this.#lastDone = this.#needsCheckpoint(until)
        ? this.#checkpointThenSettle(cycle)
        : this.#spares?.wantsTurn()
        ? this.#settleAfterTurn(cycle)
        : (this.#settle(cycle, undefined), SETTLED);
      return;
    }
    this.#lastDone = this.#complete(cycle, previous, sync, failure, until, commitNumber, cookie);
  }

  /**
   * Completes a started cycle once its syncs and every earlier cycle are done: publishes the
   * commit point and resolves its callers, or rejects them if it or an earlier cycle failed.
   * Resolves with the failure, never rejects.
   */
  async #complete(
    cycle: Cycle,
    previous: Promise<unknown>,
    sync: Promise<void> | undefined,
    failure: unknown,
    until: number,
    commitNumber: number,
    cookie: Uint8Array | undefined,
  ): Promise<unknown> {
    const startedMs = performance.now();
    if (failure === undefined && sync !== undefined) {
      try {
        await sync;
        if (this.durability !== "none") {
          this.metrics.syncSeconds.observe((performance.now() - startedMs) / 1000);
        }
      } catch (error) {
        failure = error;
        this.#poison ??= error; // never retried: a reopen finds what really reached the disk
      }
    }
    // An earlier cycle's failure fails this one too: its bytes come first in the log.
    const earlier = await previous;
    if (failure === undefined && earlier !== undefined) failure = earlier;
    if (failure !== undefined) return this.#settle(cycle, failure);
    this.#publish(cycle, until, commitNumber, cookie);
    return this.#needsCheckpoint(until)
      ? this.#checkpointThenSettle(cycle)
      : this.#settle(cycle, undefined);
  }

  /** Makes a durable cycle's commit point the log's. */
  #publish(cycle: Cycle, until: number, commitNumber: number, cookie: Uint8Array | undefined) {
    this.#commitNumber = commitNumber;
    this.#committedUntilAddress = until;
    if (cookie) this.#cookie = cookie;
    this.#stats.commits++;
    this.metrics.commitCycles.value++;
    this.metrics.groupSize.observe(cycle.requests);
  }

  /** A checkpoint is due: a truncation to make durable, or the interval's bytes committed. */
  #needsCheckpoint(until: number): boolean {
    return this.#startedBegin !== this.#durableBeginAddress ||
      until - this.#checkpointAddress >= this.#checkpointIntervalBytes;
  }

  async #checkpointThenSettle(cycle: Cycle): Promise<unknown> {
    let failure: unknown;
    try {
      await this.#checkpoint(false);
    } catch (error) {
      failure = error;
    }
    return this.#settle(cycle, failure);
  }

  /**
   * Settles a durable cycle on the next macrotask, so that the spare's fill can go on (see
   * {@linkcode SparePreparer.wantsTurn}).
   */
  async #settleAfterTurn(cycle: Cycle): Promise<unknown> {
    await nextTurn();
    return this.#settle(cycle, undefined);
  }

  /** Resolves (or rejects) a cycle's callers and lets the next cycle start; returns `failure`. */
  #settle(cycle: Cycle, failure: unknown): unknown {
    this.#inFlight--;
    this.#failed ??= failure;
    if (this.#lastStarted === cycle) this.#lastStarted = undefined;
    if (failure === undefined) {
      this.#durableListener?.(this.#committedUntilAddress);
      cycle.resolve(this.commitPoint);
    } else {
      cycle.reject(failure);
      // Nothing can commit after a failure: callers waiting for the next cycle learn it now.
      const next = this.#next;
      this.#next = undefined;
      next?.reject(failure);
    }
    this.#resumed = cycle.requests;
    this.#notifyCommit();
    this.#scheduleStart();
    return failure;
  }

  /** Appends the commit marker of the next cycle, encoded in place when it fits the staging. */
  #appendCommitMarker(commitNumber: number, cookie: Uint8Array | undefined): void {
    const payloadBytes = COMMIT_MARKER_FIXED_BYTES + (cookie?.length ?? 0);
    this.prepareOne(payloadBytes);
    const address = this.#reserve(payloadBytes, true);
    const offset = address - this.#stagingBase;
    const marker = { commitNumber, synced: this.durability !== "none", cookie };
    if (offset < 0 || address + recordSizeBytes(payloadBytes) > this.#stagingEnd()) {
      const payload = encodeCommitMarker(marker);
      this.#writeDirect(address, RecordKind.commit, undefined, payload, payloadBytes);
      return;
    }
    writeHeader(this.#stagedWords, offset, payloadBytes, address, RecordKind.commit);
    writeCommitMarker(this.#stagedView, this.#staged, offset + RECORD_HEADER_BYTES, marker);
    sealRecord(this.#staged, this.#stagedWords, offset, this.logId, this.#stagedChecksum);
  }

  /** Starts the syncs of every dirty segment (and of the directory after a new one). */
  #syncSegments(): Promise<void> | undefined {
    const segments = this.#segments.all();
    if (this.durability === "none") {
      for (const segment of segments) segment.dirty = segment.fresh = false;
      return undefined;
    }
    // With inlineSync each sync runs here, on this thread, in the order the pool would finish
    // them (segments, then the directory that gained a new one); a throw poisons the log in the
    // caller, never retried.
    const inline = this.inlineSync;
    const startedMs = inline ? performance.now() : 0;
    let single: Promise<void> | undefined;
    let work: Promise<void>[] | undefined;
    let fresh = false;
    for (const segment of segments) {
      if (!segment.dirty) continue;
      segment.dirty = false;
      fresh ||= segment.fresh;
      const mode = segment.fresh ? "full" : this.durability;
      segment.fresh = false;
      if (inline) {
        this.#stats.syncs++;
        segment.file.syncNow(mode);
        continue;
      }
      const sync = segment.file.sync(mode);
      if (single === undefined) single = sync;
      else (work ??= [single]).push(sync);
    }
    if (inline) {
      if (fresh) {
        this.#stats.syncs++;
        this.#device.syncDirectoryNow(this.dir);
      }
      this.metrics.syncSeconds.observe((performance.now() - startedMs) / 1000);
      return undefined;
    }
    if (fresh) (work ??= single ? [single] : []).push(this.#device.syncDirectory(this.dir));
    if (work === undefined) {
      if (single !== undefined) this.#stats.syncs++;
      return single;
    }
    this.#stats.syncs += work.length;
    return settleAll(work);
  }

  /** Writes and syncs a checkpoint at the committed point, then frees truncated segments. */
  async #checkpoint(clean: boolean): Promise<void> {
    const point: Checkpoint = {
      logId: this.logId,
      checkpointNumber: this.#checkpointNumber + 1,
      commitNumber: this.#commitNumber,
      beginAddress: this.#beginAddress,
      committedUntilAddress: this.#committedUntilAddress,
      segmentSizeBytes: this.segmentSizeBytes,
      clean,
      cookie: this.#cookie,
    };
    try {
      writeCheckpoint(this.#checkpointFile, point);
      if (this.durability !== "none") {
        if (this.inlineSync) this.#checkpointFile.syncNow("data");
        else await this.#checkpointFile.sync("data");
      }
    } catch (error) {
      this.#poison = error;
      throw error;
    }
    this.#checkpointNumber = point.checkpointNumber;
    this.#checkpointAddress = point.committedUntilAddress;
    this.#checkpointCookie = point.cookie;
    this.#cleanOnDisk = clean;
    this.#durableBeginAddress = point.beginAddress;
    this.#stats.checkpoints++;
    const firstKept = Math.floor(point.beginAddress / this.segmentSizeBytes);
    if (this.#segments.removeBelow(firstKept) > 0 && this.durability !== "none") {
      try {
        if (this.inlineSync) this.#device.syncDirectoryNow(this.dir);
        else await this.#device.syncDirectory(this.dir);
      } catch (error) {
        this.#poison = error; // never retried: a reopen finds what the directory really holds
        throw error;
      }
    }
  }

  /** Resolves when `committedUntilAddress >= address`, or rejects when the tail fails/closes. */
  waitFor(address: number, signal?: AbortSignal): Promise<void> {
    if (this.#committedUntilAddress >= address) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.#committedUntilAddress >= address) return finish(resolve);
        if (this.#closed) {
          return finish(() => reject(new ClosedError("Cannot wait for commit: the log is closed")));
        }
        if (this.#poison !== undefined) {
          return finish(() =>
            reject(
              new PoisonedError("Cannot wait for commit: a write or sync failed", {
                cause: this.#poison,
              }),
            )
          );
        }
        if (signal?.aborted) return finish(() => reject(signal.reason));
        this.#commitListeners.push(check);
      };
      const onAbort = () => check();
      const finish = (settle: () => void) => {
        signal?.removeEventListener("abort", onAbort);
        settle();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      check();
    });
  }

  /** Wakes every waiter registered by {@linkcode DurableTail.onNextCommit}. */
  #notifyCommit(): void {
    const listeners = this.#commitListeners;
    this.#commitListeners = [];
    for (const listener of listeners) listener();
  }

  /** Calls `listener` once, after the next commit, close, or failure. */
  onNextCommit(listener: () => void): void {
    this.#commitListeners.push(listener);
  }

  // ---- truncation --------------------------------------------------------------------------

  /** Moves the begin address forward; segments below it are removed after the next commit. */
  truncateUntil(address: number): void {
    if (address > this.#beginAddress) this.#beginAddress = address;
  }

  // ---- reads -------------------------------------------------------------------------------

  /**
   * Finds the record at `address` (`beginAddress <= address < tailAddress`) and returns its kind
   * and payload (a view into the mapping, or into the staging buffer — copy before keeping), or a
   * string saying why no record starts there.
   */
  recordAt(address: number): { kind: number; payload: Uint8Array; size: number } | string {
    if (address >= this.#stagingBase) {
      const offset = address - this.#stagingBase;
      const words = this.#stagedWords;
      if (
        (offset & 7) !== 0 || offset + RECORD_HEADER_BYTES > this.#tailAddress - this.#stagingBase
      ) {
        return "no record starts there";
      }
      const w = offset >>> 2;
      if ((words[w + 2] >>> 0) !== (address >>> 0)) return "no record starts there";
      const length = headerLength(words, offset);
      const start = offset + RECORD_HEADER_BYTES;
      return {
        kind: headerKind(words, offset),
        payload: this.#staged.subarray(start, start + length),
        size: recordSizeBytes(length),
      };
    }
    const segment = this.#segments.ofAddress(address);
    if (!segment) return "no segment holds that address";
    return recordInSegment(
      segment.view,
      segment.index,
      this.segmentSizeBytes,
      address,
      this.logId,
      segment.path,
    );
  }

  /** Records at or above this address are staged in memory, not yet written to a segment. */
  get stagingBase(): number {
    return this.#stagingBase;
  }

  /** The segment holding `address`, or `undefined`. */
  segmentOf(address: number): Segment | undefined {
    return this.#segments.ofAddress(address);
  }

  /** The path a problem at `address` is reported with: its segment's, else the directory. */
  pathOf(address: number): string {
    return this.#segments.ofAddress(address)?.path ?? this.dir;
  }

  /**
   * The segment holding the committed `address`, or `undefined` when the tail is closed or
   * `address` is outside `[beginAddress, committedUntilAddress)` (the read fast path's first step).
   */
  committedSegment(address: number): Segment | undefined {
    if (this.#closed || !(address >= this.#beginAddress && address < this.#committedUntilAddress)) {
      return undefined;
    }
    return this.#segments.ofAddress(address);
  }

  /**
   * The read fast path: the payload of the committed record of `kind` at `address` as a view of
   * the mapping, or `undefined` when {@linkcode DurableTail.committedSegment} has none or no valid
   * record of `kind` starts there (the caller then takes the checked path, which says which).
   */
  committedPayload(address: number, kind: RecordKind): Uint8Array | undefined {
    const segment = this.committedSegment(address);
    return segment && payloadView(segment, this.segmentSizeBytes, address, kind, this.logId);
  }

  /**
   * Like {@linkcode DurableTail.committedPayload}, as a copy: the first copying reads of a segment
   * found at open read the record with `pread` instead of mapping the segment (see
   * {@linkcode PREADS_BEFORE_MAPPING}).
   */
  committedPayloadCopy(address: number, kind: RecordKind): Uint8Array | undefined {
    const segment = this.committedSegment(address);
    if (segment === undefined) return undefined;
    return this.unmappedPayloadCopy(segment, address, kind) ??
      payloadView(segment, this.segmentSizeBytes, address, kind, this.logId)?.slice();
  }

  /**
   * A copy of the payload of the record of `kind` at `address` in `segment` (from
   * {@linkcode DurableTail.committedSegment}), read with `pread` while the segment is unmapped
   * and has served fewer than {@linkcode PREADS_BEFORE_MAPPING} such reads; else `undefined`,
   * as when anything about the record is off: the caller then takes the mapped path, which
   * maps the segment and says what.
   */
  unmappedPayloadCopy(segment: Segment, address: number, kind: RecordKind): Uint8Array | undefined {
    if (segment.mapped || segment.preads >= PREADS_BEFORE_MAPPING) return undefined;
    segment.preads++;
    this.#headerScratch ??= headerScratch();
    return readPayloadCopy(
      segment,
      this.segmentSizeBytes,
      address,
      kind,
      this.logId,
      this.#headerScratch,
    );
  }

  /**
   * The entries in `[from, to)` (`from` a record address, or the begin/committed address): views
   * of the mapping, copies while staged; a damaged record throws `CorruptionError`.
   */
  entries(from: number, to: number): EntryIterator {
    return new EntryIterator(this, Math.max(from, this.#beginAddress), to);
  }

  /**
   * The record at `address`, which the caller's index says must exist: a missing or damaged one
   * is corruption, reported with the file and address.
   */
  recordExpectedAt(address: number): { kind: number; payload: Uint8Array; size: number } {
    const found = this.recordAt(address);
    if (typeof found !== "string") return found;
    const path = this.#segments.ofAddress(address)?.path ?? this.dir;
    throw new CorruptionError(path, address, `an indexed record is missing: ${found}`);
  }

  // ---- close -------------------------------------------------------------------------------

  /** Waits for running commits, commits what remains, writes a clean checkpoint, releases all. */
  async close(): Promise<void> {
    if (this.#closed) return;
    let failure: unknown;
    try {
      if (this.#poison === undefined) {
        if (!this.idle) await this.commit();
        await this.#lastDone;
        const unchanged = this.#cleanOnDisk &&
          this.#checkpointAddress === this.#committedUntilAddress &&
          this.#durableBeginAddress === this.#beginAddress;
        if (this.#poison === undefined && !unchanged) {
          this.#markTailEnd();
          await this.#checkpoint(true);
        }
      }
    } catch (error) {
      failure = error;
    } finally {
      await this.#lastDone;
      this.#closed = true;
      await this.#spares?.close();
      const next = this.#next;
      this.#next = undefined;
      next?.reject(new ClosedError("Cannot commit: the log is closed"));
      this.#notifyCommit();
      this.#segments.closeAll();
      this.#checkpointFile.close();
      this.#lock.release();
      this.metrics.release();
    }
    if (failure !== undefined) throw failure;
  }

  /**
   * Before a clean checkpoint: makes the record header at the tail read as zeros if it does not
   * already, durably. A segment made from a recycled spare (`zeroFillSegments`) holds its old
   * records past the tail, seldom on a record boundary: a clean open must meet the end of the
   * records there, as in a zero-filled or preallocated segment, instead of taking them for a torn
   * tail and cutting it. A failure poisons the log (the sync is never retried).
   */
  #markTailEnd(): void {
    const S = this.segmentSizeBytes;
    const tail = this.#tailAddress;
    const index = tailSegmentIndex(tail, S);
    const offset = tail - index * S;
    const segment = this.#segments.at(index);
    if (segment === undefined || offset + RECORD_HEADER_BYTES > S) return;
    try {
      if (headerIsZero(segment.file, offset)) return;
      segment.file.write(new Uint8Array(RECORD_HEADER_BYTES), offset);
      if (this.durability !== "none") segment.file.syncNow("data");
    } catch (error) {
      this.#poison = error;
      throw error;
    }
  }
}

/** Waits for every sync to finish (or fail); rejects with the first failure. */
async function settleAll(work: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(work);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}
