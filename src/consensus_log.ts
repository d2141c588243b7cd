/**
 * `ConsensusLog`: the log a Paxos, WPaxos or Raft replica keeps. Accepted entries live in the
 * mutable region (shared memory) and may be replaced by an equal or higher ballot; committed
 * entries move to the durable tail and never change. Optional durable accepts journal every
 * accept with group commit; the promised ballot and Raft's term and vote are a durable record.
 *
 * @module
 */
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, SEGMENT_SIZE_BYTES_MAX } from "./constants.ts";
import type { Device } from "./device.ts";
import {
  BallotError,
  InvalidArgumentError,
  IoError,
  NotCommittedError,
  RegionFullError,
  SlotNotFoundError,
} from "./errors.ts";
import { type Ballot, compareBallots, HardStateStore, type RaftHardState } from "./hard_state.ts";
import {
  INDEX_CHECKPOINT_HEADER_BYTES,
  type IndexCheckpoint,
  readIndexCheckpoint,
  writeIndexCheckpoint,
} from "./index_checkpoint.ts";
import { REGION_ENTRY_HEADER_BYTES } from "./mutable_region.ts";
import { RecordKind } from "./record_format.ts";
import { payloadOffset } from "./segments.ts";
import {
  acceptedWord,
  INDEX_SIZE_BYTES_DEFAULT,
  INDEX_SIZE_BYTES_MAX,
  INDEX_SIZE_BYTES_MIN,
  LEAF_SLOTS,
  PAIRS_STEP_LEAVES,
  SLOT_COMMITTED,
  SLOT_EMPTY,
  wordOffset,
} from "./slot_index.ts";
import { type Durability, DurableTail } from "./tail.ts";
import { fsDevice } from "./fs_device.ts";
import { checkLogOptions } from "./log_options.ts";
import { LOG_LABEL, type Metrics, type NumberSeries } from "./metrics.ts";
import {
  checkBytes,
  checkFlag,
  checkIndex,
  checkSizeOption,
  nextTurn,
  runNow,
} from "./validate.ts";
import {
  AcceptResult,
  checkBallot,
  checkBallotFields,
  CommitRequests,
  type ConsensusEntry,
  type ConsensusLogHandle,
  describeBallot,
  ENTRY_HEADER_BYTES,
  entryFromRecord,
  entryInSegment,
  followCommits,
  HANDLE_VERSION,
  recordSlot,
  recordType,
  RequestKind,
  SharedSlots,
  TYPE_ACCEPTED,
  TYPE_COMMITTED,
  writeEntryHeader,
} from "./consensus_shared.ts";
import { AttachedConsensusLog } from "./consensus_attached.ts";

export type { Ballot, ConsensusEntry, ConsensusLogHandle, RaftHardState };
export { AttachedConsensusLog };

/** Default mutable region: 64 MiB. */
export const MUTABLE_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Default largest value: 16 MiB (at most what the region and a segment can hold). */
export const CONSENSUS_ENTRY_SIZE_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** Default `indexCheckpointIntervalBytes`: 64 MiB. */
export const INDEX_CHECKPOINT_INTERVAL_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Numbers per entry of `#frozen`: slot, index position, region offset, record address. */
const FROZEN_FIELDS = 4;
/**
 * Frozen entries `#frozen` keeps room for when empty: two cycles of 256 committers fit without
 * growing, and room grown past 64 times that (a large `commitMany`) is given back once drained.
 */
const FROZEN_KEPT_ENTRIES_MIN = 512;
const FROZEN_KEPT_ENTRIES_MAX = 64 * FROZEN_KEPT_ENTRIES_MIN;
/** Numbers per slot of `#commitSlots`' scratch: slot, index position, region offset. */
const BATCH_FIELDS = 3;
/**
 * Largest `commitMany` whose scratch arrays are kept for the next one (the pressure bench commits
 * 10,000 at a time); a larger one gets arrays of its own.
 */
const BATCH_KEPT_SLOTS_MAX = 16 * 1024;

/** Options of {@linkcode ConsensusLog.open}. */
export interface ConsensusLogOptions {
  /** The log directory; created (0700) if missing. One open log per directory. */
  dir: string;
  /** What a resolved commit (and durable accept) promises; default `"data"` (fdatasync). */
  durability?: Durability;
  /** Bytes of the shared-memory region holding accepted entries (default 64 MiB). */
  mutableSizeBytes?: number;
  /**
   * Bytes of address space reserved for the slot index (default 64 MiB, about 5.5 million live
   * slots; 1 MiB to 1 GiB). Pages are used only as slots need them; truncation frees them for
   * reuse. Accepting a slot the full index cannot hold throws `RegionFullError`.
   */
  indexSizeBytes?: number;
  /** Segment file size, a power of two (default 64 MiB); fixed when the log is created. */
  segmentSizeBytes?: number;
  /** Largest value (default 16 MiB, at most what the region and a segment hold). */
  entrySizeBytesMax?: number;
  /** Journal every accept durably; `accept` then returns a promise (default false). */
  durableAccepts?: boolean;
  /** Staging buffer of the durable tail (default 1 MiB). */
  bufferSizeBytes?: number;
  /** Committed bytes between tail checkpoints (default 8 MiB). */
  checkpointIntervalBytes?: number;
  /**
   * Committed bytes between index checkpoints (default 64 MiB; 0 writes one after every commit).
   * An index checkpoint saves the slot index so a reopen verifies only the records after it; it
   * is also written at close. It is written in the background: the index is walked in steps of
   * 16k slots (0.2–0.3 ms here) on the JS thread, and the file is written off it.
   */
  indexCheckpointIntervalBytes?: number;
  /**
   * Run each commit's `fdatasync`/`fsync` on the JS thread instead of the runtime's worker pool
   * (default false). A lone commit then skips the hand-off to the pool and back (about 20 µs
   * here), at the price of blocking the event loop for every sync: tens of microseconds on an
   * idle SSD, milliseconds or more with much dirty data or a busy device. For a latency-bound
   * writer with nothing else on its loop; servers keep the default.
   */
  inlineSync?: boolean;
  /**
   * Write zeros through each new segment, off the JS thread and ahead of need, before the log
   * writes to it (default false). A preallocated segment's blocks are unwritten extents, and the
   * first write to each makes its sync also commit the file system's journal; into zero-filled
   * blocks a sync writes data only. Measured here: a commit of 100 × 100 B syncs in ~60 µs
   * instead of ~130, and a lone commit's p99 drops by a third (its p50 rises ~5 µs). Costs a
   * second write of every segment and one spare segment file on disk (kept across reopens); a
   * new log's `open` waits for its first segment to be filled (about 60 ms for 64 MiB here).
   */
  zeroFillSegments?: boolean;
  /** The storage device (default: the real file system). */
  device?: Device;
  /** The metrics registry the log records into (default `defaultMetrics`). */
  metrics?: Metrics;
}

/** Options of {@linkcode ConsensusLog.committed}. */
export interface SlotRange {
  /** First slot (default 0). */
  from?: number;
  /** End slot, exclusive (default: no end). */
  to?: number;
}

/** Options of {@linkcode ConsensusLog.tail}. */
export interface ConsensusTailOptions {
  /** Only entries with a slot at or above this (default 0). */
  from?: number;
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
}

/** The part of {@linkcode ConsensusLogStats} read from the index and the region. */
type SlotStats = Pick<
  ConsensusLogStats,
  | "acceptedCount"
  | "committedCount"
  | "regionLiveBytes"
  | "regionUsedBytes"
  | "regionCapacityBytes"
  | "indexBytes"
>;

/**
 * Counters and fill levels of a consensus log (counts since it was opened, levels as of now; a
 * closed log whose index and region went to the next log opened holds none, and reads 0).
 */
export interface ConsensusLogStats {
  /** Commit cycles completed (each may serve many `commit()` calls). */
  readonly commits: number;
  /** File and directory syncs issued. */
  readonly syncs: number;
  /** Staging-buffer write-outs. */
  readonly flushes: number;
  /** Bytes written to segment files. */
  readonly bytesWritten: number;
  /** Tail checkpoints written. */
  readonly checkpoints: number;
  /** Index checkpoints written (see `indexCheckpointIntervalBytes`). */
  readonly indexCheckpoints: number;
  /**
   * Spare segments made ready (`zeroFillSegments`): written with zeros and synced, recycled, or
   * kept from the last open.
   */
  readonly zeroFillPrepared: number;
  /**
   * Of those, the files of segments a truncation dropped, made ready with a rename instead of
   * being removed: no zeros written for them.
   */
  readonly zeroFillRecycled: number;
  /** Segments made from those spares. */
  readonly zeroFillInstalled: number;
  /** Spare preparations that failed; each segment is then preallocated as without the option. */
  readonly zeroFillFailed: number;
  /** Slots holding an accepted, uncommitted entry. */
  readonly acceptedCount: number;
  /** Slots holding a committed entry (below a truncation point they are gone). */
  readonly committedCount: number;
  /** Bytes of the mutable region held by accepted entries. */
  readonly regionLiveBytes: number;
  /** Bytes of the mutable region allocated, live or awaiting reuse. */
  readonly regionUsedBytes: number;
  /** Size of the mutable region (`mutableSizeBytes`, rounded to whole chunks). */
  readonly regionCapacityBytes: number;
  /** Every record of the durable tail below this address is committed. */
  readonly committedUntilAddress: number;
  /** Bytes of segment files mapped for reading. */
  readonly mappedBytes: number;
  /**
   * Bytes of log the open verified and replayed (what the index checkpoint did not cover), and
   * scanned since because a chunk of the checkpoint turned out damaged.
   */
  readonly recoveryReplayedBytes: number;
  /** Bytes of shared memory the slot index occupies. */
  readonly indexBytes: number;
}

/**
 * A consensus log: accept, commit and read by slot. An accepted entry may be replaced under an
 * equal or higher ballot; a committed one is durable and never changes. With `durableAccepts`
 * and {@linkcode ConsensusLog.promise} it is a correct Paxos acceptor; with
 * {@linkcode ConsensusLog.setHardState} it keeps a Raft server's log, term and vote.
 *
 * @example
 * ```ts
 * import { ConsensusLog } from "@hybridlog/hybridlog";
 *
 * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
 * log.accept(1, { round: 3, node: 1 }, new TextEncoder().encode("x = 1"));
 * await log.commit(1);
 * console.log(log.readCommitted(1)?.committed); // true
 * ```
 */
export class ConsensusLog {
  #tail: DurableTail;
  #slots: SharedSlots;
  /** `truncatePrefix` calls in progress (see `close`). */
  #truncations = 0;
  /** Settles when the last truncation queued has ended (they run one at a time). */
  #truncationDone: Promise<void> = Promise.resolve();
  /**
   * The index and region figures once their buffers went to another log: a closed log holds no
   * slot in memory. (Counting them at close walked the whole index: 15–20 ms at 1M slots.)
   */
  #releasedStats: SlotStats | undefined;
  #hard: HardStateStore;
  #durableAccepts: boolean;
  #entrySizeBytesMax: number;
  #promisedPending: Ballot | undefined;
  /** The entry header of a record too large for the staging buffer (see `#appendRecord`). */
  #header = new Uint8Array(ENTRY_HEADER_BYTES);
  #headerWords = new Uint32Array(this.#header.buffer);
  #headerDoubles = new Float64Array(this.#header.buffer);
  /** Latest journal record of each accepted slot (durable accepts): kept by truncation. */
  #journaled = new Map<number, number>();
  #indexCheckpointAddress: number;
  #indexCheckpointIntervalBytes: number;
  /** The checkpoint the index takes committed slots from as they are looked up (see `#recover`). */
  #base: IndexCheckpoint | undefined;
  /** Why the log scan that replaces a damaged checkpoint failed, if it did. */
  #baseFailure: unknown;
  /** The background index checkpoint running now, if any (it never rejects). */
  #indexCheckpointWork: Promise<void> | undefined = undefined;
  #indexCheckpoints = 0;
  #recoveryReplayedBytes = 0;
  #requests: CommitRequests | undefined;
  #handle: ConsensusLogHandle | undefined;
  #closing = false;
  /**
   * Entries frozen for commit whose records are not durable yet, in append order: slot, index
   * position, region offset, record address (`FROZEN_FIELDS` numbers each, from `#frozenHead` to
   * `#frozenTail`). A typed array kept across cycles: a commit adds no garbage here. Made by the
   * first commit: a log opened only to be read never pays for its 16 KiB.
   */
  #frozen: Float64Array = new Float64Array(0);
  #frozenHead = 0;
  #frozenTail = 0;
  /** `#commitSlots`' scratch, kept for batches up to `BATCH_KEPT_SLOTS_MAX` slots. */
  #batch: Float64Array = new Float64Array(0);
  #batchSizes: Float64Array = new Float64Array(0);
  /** Workers' requests being carried out (close waits for them). */
  #inFlight = new Set<Promise<void>>();
  #accepts: NumberSeries;

  private constructor(
    tail: DurableTail,
    slots: SharedSlots,
    hard: HardStateStore,
    durableAccepts: boolean,
    entrySizeBytesMax: number,
    indexCheckpointIntervalBytes: number,
  ) {
    this.#tail = tail;
    this.#indexCheckpointIntervalBytes = indexCheckpointIntervalBytes;
    this.#slots = slots;
    this.#hard = hard;
    this.#durableAccepts = durableAccepts;
    this.#entrySizeBytesMax = entrySizeBytesMax;
    this.#indexCheckpointAddress = tail.beginAddress;
    this.#accepts = tail.metrics.accepts();
    tail.metrics.watchRegion(slots.region);
    tail.onDurable(this.#onDurable);
  }

  /**
   * Opens the log in `options.dir`, creating it if new. Recovery loads the index checkpoint,
   * verifies only the records after it, restores journaled accepts (`durableAccepts`), and reads
   * the promised ballot and hard state.
   *
   * @param options Where and how to open.
   * @returns The open log.
   * @throws {LockedError} Another open log holds the directory.
   * @throws {CorruptionError} Durable data failed validation.
   * @throws {InvalidArgumentError} An option is out of range.
   */
  static open(options: ConsensusLogOptions): Promise<ConsensusLog> {
    return Promise.resolve().then(async () => {
      const what = "open consensus log";
      const common = checkLogOptions(what, options);
      const mutableSizeBytes = checkSizeOption(
        what,
        "mutableSizeBytes",
        options.mutableSizeBytes,
        MUTABLE_SIZE_BYTES_DEFAULT,
        64 * 1024,
        SEGMENT_SIZE_BYTES_MAX,
      ) & ~7;
      const durableAccepts = checkFlag(what, "durableAccepts", options.durableAccepts, false);
      const indexCheckpointIntervalBytes = checkSizeOption(
        what,
        "indexCheckpointIntervalBytes",
        options.indexCheckpointIntervalBytes,
        INDEX_CHECKPOINT_INTERVAL_BYTES_DEFAULT,
        0,
        Number.MAX_SAFE_INTEGER,
      );
      const indexSizeBytes = checkSizeOption(
        what,
        "indexSizeBytes",
        options.indexSizeBytes,
        INDEX_SIZE_BYTES_DEFAULT,
        INDEX_SIZE_BYTES_MIN,
        INDEX_SIZE_BYTES_MAX,
      ) & ~7;
      const slots = new SharedSlots(mutableSizeBytes, undefined, indexSizeBytes);
      const entryLimit = Math.min(
        slots.region.capacityBytes - REGION_ENTRY_HEADER_BYTES,
        common.segmentSizeBytes - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES - ENTRY_HEADER_BYTES,
      );
      const entrySizeBytesMax = checkSizeOption(
        what,
        "entrySizeBytesMax",
        options.entrySizeBytesMax,
        Math.min(CONSENSUS_ENTRY_SIZE_BYTES_MAX_DEFAULT, entryLimit),
        0,
        entryLimit,
      );
      const durability = common.durability;
      // A LogManager labels its logs' series with their names.
      const label = (options as { [LOG_LABEL]?: unknown })[LOG_LABEL];
      const startedMs = performance.now();
      const tail = DurableTail.open({
        ...common,
        metricsLabel: typeof label === "string" ? label : undefined,
      });
      try {
        await tail.zeroFillEmptyTail();
        const hard = HardStateStore.open(tail.device, tail.dir, tail.logId, durability !== "none");
        const log = new ConsensusLog(
          tail,
          slots,
          hard,
          durableAccepts,
          entrySizeBytesMax,
          indexCheckpointIntervalBytes,
        );
        try {
          log.#recover();
        } catch (error) {
          log.#dropBase();
          throw error;
        }
        const promised = hard.state.promised;
        if (promised) slots.control.setPromise(promised);
        log.#publishCommits();
        tail.metrics.recovered(startedMs, tail.recoveredTruncatedTail);
        return log;
      } catch (error) {
        return tail.close().then(() => Promise.reject(error), () => Promise.reject(error));
      }
    });
  }

  /**
   * Attaches to a log shared by {@linkcode ConsensusLog.share} from another thread (inside a
   * Worker): accepts and reads go straight to shared memory and this thread's own mappings of
   * the segment files; commits are carried out by the owner's group commit. See
   * {@linkcode ConsensusLog.share} for an example.
   *
   * @param handle What the owner's `share()` returned, received by `postMessage`.
   * @returns The attached log; `detach()` it (or `using`) when done.
   * @throws {InvalidArgumentError} `handle` is not a handle of this version.
   */
  static attach(handle: ConsensusLogHandle): AttachedConsensusLog {
    return new AttachedConsensusLog(handle);
  }

  /** Keeps the shared control's view of the durable range current after every commit. */
  #publishCommits(): void {
    const tail = this.#tail;
    const control = this.#slots.control;
    const publish = () => {
      // A failed write or sync stops every Worker's writes too, with the owner's reason.
      if (tail.failure !== undefined) control.poison(tail.failure);
      control.publishCommit(tail.beginAddress, tail.committedUntilAddress);
      if (!tail.closed) tail.onNextCommit(publish);
    };
    publish();
  }

  // ---- recovery ----------------------------------------------------------------------------

  #recover(): void {
    const tail = this.#tail;
    const below = this.#hard.state.truncatedBelowSlot;
    let start = tail.beginAddress;
    this.#slots.epochs.enter();
    try {
      const checkpoint = readIndexCheckpoint(tail.device, tail.dir, tail.logId);
      if (
        checkpoint && checkpoint.coveredAddress <= tail.committedUntilAddress &&
        checkpoint.coveredAddress >= tail.beginAddress
      ) {
        // Committed slots stay in the checkpoint file: the index takes each leaf's from it when
        // one of its slots is first looked up, so a reopen loads none of them. A committed entry
        // needs only its address: its record is verified when first read.
        this.#attachBase(checkpoint);
        const journal = checkpoint.journal;
        for (let i = 0; i < journal.length; i += 2) {
          const address = -journal[i + 1] - 1;
          if (journal[i] < below || address < tail.beginAddress) continue;
          this.#replay(address);
        }
        start = checkpoint.coveredAddress;
        this.#indexCheckpointAddress = start;
      } else checkpoint?.release();
      for (const entry of tail.entries(start, tail.committedUntilAddress)) {
        this.#replay(entry.address, entry.value);
      }
    } finally {
      this.#slots.epochs.exit();
    }
    this.#recoveryReplayedBytes += tail.committedUntilAddress - start;
  }

  /**
   * Makes `checkpoint` the base the index takes committed slots from as they are looked up (see
   * `SlotIndex.attachBase`), or closes it if it has none.
   */
  #attachBase(checkpoint: IndexCheckpoint): void {
    if (checkpoint.committed.count === 0) {
      checkpoint.release();
      return;
    }
    this.#base = checkpoint;
    this.#slots.index.attachBase({
      pairs: checkpoint.committed,
      slotMin: () => this.#hard.state.truncatedBelowSlot,
      addressMin: this.#tail.beginAddress,
      damaged: () => this.#replaceDamagedBase(),
    });
  }

  /** Detaches the checkpoint from the index (if attached) and closes its file. */
  #dropBase(): void {
    this.#slots.index.detachBase();
    this.#base?.release();
    this.#base = undefined;
  }

  /**
   * Takes every committed slot of the checkpoint into the index, then drops it: for sharing the
   * index with Workers, and listing every committed entry. About 10–15 ms per 1M slots.
   */
  #loadBase(): void {
    if (this.#slots.index.base === undefined) return;
    this.#loadBaseRange(0, Infinity);
    this.#dropBase();
  }

  /**
   * Takes the checkpoint's leaves that hold a slot of `[from, to)` into the index, keeping the
   * checkpoint for the others.
   */
  #loadBaseRange(from: number, to: number): void {
    const steps = this.#slots.index.loadBaseInSteps(from, to);
    this.#slots.epochs.enter();
    try {
      while (!steps.next().done);
    } finally {
      this.#slots.epochs.exit();
    }
  }

  /**
   * A chunk of the checkpoint's pairs is damaged: finds the committed slots it covers by
   * scanning the log below its covered address instead (as a reopen without a checkpoint does)
   * and stores those of leaves not taken from the checkpoint yet; every other leaf was taken from
   * intact chunks. Nothing is stored unless the whole scan succeeds; a scan that fails is not
   * repeated, and every lookup that needs the checkpoint throws its error.
   */
  #replaceDamagedBase(): void {
    if (this.#baseFailure !== undefined) throw this.#baseFailure;
    const covered = this.#base!.coveredAddress;
    const below = this.#hard.state.truncatedBelowSlot;
    const found: number[] = [];
    try {
      for (const entry of this.#tail.entries(this.#tail.beginAddress, covered)) {
        if (recordType(entry.value) !== TYPE_COMMITTED) continue;
        const slot = recordSlot(entry.value);
        if (slot >= below) found.push(slot, entry.address);
      }
    } catch (error) {
      this.#baseFailure = error;
      throw error;
    }
    this.#dropBase();
    this.#recoveryReplayedBytes += covered - this.#tail.beginAddress;
    const index = this.#slots.index;
    const missing = new Map<number, boolean>();
    for (let i = 0; i < found.length; i += 2) {
      const slot = found[i];
      const leaf = Math.floor(slot / LEAF_SLOTS);
      let store = missing.get(leaf);
      if (store === undefined) {
        store = index.position(slot, false) < 0;
        missing.set(leaf, store);
      }
      if (store) index.setCommitted(slot, found[i + 1]);
    }
  }

  /** Applies one durable record (a commit or a journaled accept) to the in-memory state. */
  #replay(address: number, payload?: Uint8Array): void {
    if (payload === undefined) {
      payload = this.#tail.recordExpectedAt(address).payload;
    }
    const slot = recordSlot(payload);
    if (slot < this.#hard.state.truncatedBelowSlot) return;
    const { index, region } = this.#slots;
    if (recordType(payload) === TYPE_COMMITTED) {
      const previous = index.setCommitted(slot, address);
      if (previous >= 2) region.free(wordOffset(previous));
      this.#journaled.delete(slot);
      return;
    }
    const word = index.wordOf(slot);
    if (word === SLOT_COMMITTED) return;
    const entry = entryFromRecord(payload, false);
    if (word !== SLOT_EMPTY) {
      const held = wordOffset(word);
      const heldBallot = { round: region.roundAt(held), node: region.nodeAt(held) };
      if (compareBallots(entry.ballot, heldBallot) < 0) return;
    }
    const result = this.#slots.accept(
      "restore",
      slot,
      entry.ballot.round,
      entry.ballot.node,
      entry.value,
      false,
    );
    if (result === AcceptResult.full) {
      throw new RegionFullError(
        `Cannot restore accepted slot ${slot}: mutableSizeBytes ${region.capacityBytes} is too small for the journaled accepts`,
      );
    }
    this.#journaled.set(slot, address);
  }

  // ---- accept ------------------------------------------------------------------------------

  #checkSlot(what: string, slot: unknown): number {
    return checkIndex(what, "slot", slot);
  }

  #accept(
    what: string,
    slot: number,
    ballot: Ballot,
    value: Uint8Array,
  ): boolean | Promise<void> {
    this.#checkSlot(what, slot);
    // The fields are read once and kept as numbers: no ballot object per accept.
    const round = (ballot as Partial<Ballot> | null)?.round as number;
    const node = (ballot as Partial<Ballot> | null)?.node as number;
    checkBallotFields(what, ballot, round, node);
    checkBytes(what, "value", value, this.#entrySizeBytesMax);
    this.#tail.assertWritable(what);
    if (this.#durableAccepts) {
      // Create any segment the journal record needs first: the only step that can fail cleanly.
      this.#tail.prepareOne(ENTRY_HEADER_BYTES + value.length);
    }
    if (this.#slots.accept(what, slot, round, node, value) === AcceptResult.full) return false;
    this.#accepts.value++;
    if (!this.#durableAccepts) return true;
    this.#journaled.set(slot, this.#appendRecord(TYPE_ACCEPTED, slot, round, node, value));
    return this.#tail.commitVoid();
  }

  /**
   * Appends an entry record of `value`, assembled in place in the staging buffer (no parts array,
   * no header copy); a record larger than the staging buffer goes straight to its segment.
   */
  #appendRecord(
    type: number,
    slot: number,
    round: number,
    node: number,
    value: Uint8Array,
  ): number {
    const tail = this.#tail;
    const length = ENTRY_HEADER_BYTES + value.length;
    const address = tail.stage(RecordKind.entry, length);
    if (address >= 0) {
      const at = tail.stagedPayloadOffset(address);
      const { bytes, words, doubles } = tail.staging;
      writeEntryHeader(doubles, words, at, slot, round, node, type);
      bytes.set(value, at + ENTRY_HEADER_BYTES);
      tail.sealStaged(address);
      return address;
    }
    writeEntryHeader(this.#headerDoubles, this.#headerWords, 0, slot, round, node, type);
    return tail.append(RecordKind.entry, this.#header, value);
  }

  /**
   * Appends an entry record of the region entry at `offset` (frozen, or read inside an epoch
   * section), copying its value straight from the region into the staging buffer: no view of it.
   */
  #appendRegionEntry(type: number, slot: number, offset: number): number {
    const region = this.#slots.region;
    const tail = this.#tail;
    const round = region.roundAt(offset);
    const node = region.nodeAt(offset);
    const address = tail.stage(RecordKind.entry, ENTRY_HEADER_BYTES + region.valueLengthAt(offset));
    if (address < 0) return this.#appendRecord(type, slot, round, node, region.valueAt(offset));
    const at = tail.stagedPayloadOffset(address);
    const { bytes, words, doubles } = tail.staging;
    writeEntryHeader(doubles, words, at, slot, round, node, type);
    region.copyValueTo(offset, bytes, words, at + ENTRY_HEADER_BYTES);
    tail.sealStaged(address);
    return address;
  }

  /**
   * Accepts `value` for `slot` under `ballot`: stores it, or replaces the slot's accepted entry,
   * if `ballot` is not lower than the one held nor than the promised ballot.
   *
   * @param slot Any non-negative safe integer; slots may be accepted in any order.
   * @param ballot The proposer's ballot (Raft: `{ round: term, node: leader }`).
   * @param value The entry's bytes, copied at once.
   * @returns `undefined`; with `durableAccepts`, a promise that resolves once the accept is durable.
   * @throws {BallotError} The ballot is lower than the held or promised one.
   * @throws {AlreadyCommittedError} The slot is committed.
   * @throws {RegionFullError} The mutable region has no room (commit, then retry).
   * @throws {InvalidArgumentError} Bad slot, ballot or value; nothing changed.
   *
   * @example
   * ```ts
   * import { ConsensusLog } from "@hybridlog/hybridlog";
   *
   * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
   * const text = new TextEncoder();
   * log.accept(1, { round: 1, node: 1 }, text.encode("x = 1"));
   * log.accept(1, { round: 2, node: 3 }, text.encode("x = 2")); // a higher ballot replaces it
   * const entry = log.read(1);
   * console.log(entry?.ballot, new TextDecoder().decode(entry?.value));
   * // { round: 2, node: 3 } x = 2
   * ```
   */
  accept(slot: number, ballot: Ballot, value: Uint8Array): Promise<void> | undefined {
    const result = this.#accept("accept", slot, ballot, value);
    if (result === false) throw this.#slots.fullError(slot, value.length);
    return result === true ? undefined : result;
  }

  /**
   * Like {@linkcode ConsensusLog.accept}, but returns `false` instead of throwing
   * `RegionFullError`; `true` (or, with `durableAccepts`, a promise resolving once durable) when
   * accepted.
   *
   * @param slot The slot.
   * @param ballot The proposer's ballot.
   * @param value The entry's bytes.
   * @returns `false` if the region is full, else `true` (a promise with `durableAccepts`).
   */
  tryAccept(slot: number, ballot: Ballot, value: Uint8Array): boolean | Promise<void> {
    return this.#accept("accept", slot, ballot, value);
  }

  // ---- commit ------------------------------------------------------------------------------

  /**
   * Commits `slot`: moves its accepted entry to the durable tail, where it can never change.
   * Resolves once durable; concurrent commits share one sync. Committing a committed slot
   * resolves (re-delivered commit messages are harmless).
   *
   * @param slot An accepted (or committed) slot.
   * @throws {SlotNotFoundError} The slot holds no accepted entry (nothing changed).
   * @throws {PoisonedError} An earlier write or sync failed; reopen the log.
   */
  commit(slot: number): Promise<void> {
    // What runNow does, without its closure: every commit comes through here.
    try {
      this.#tail.assertWritable("commit");
      return this.#commitOne(this.#checkSlot("commit", slot), false);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Commits every slot in `slots` with one sync; all are checked before any moves.
   *
   * @param slots Accepted (or committed) slots, in any order.
   * @throws {SlotNotFoundError} A slot holds no accepted entry (nothing changed).
   */
  commitMany(slots: readonly number[]): Promise<void> {
    return runNow(() => {
      if (!Array.isArray(slots)) {
        throw new InvalidArgumentError(
          "Cannot commit slots: slots must be an array of slot numbers",
        );
      }
      this.#tail.assertWritable("commit");
      return this.#commitSlots(slots.map((slot) => this.#checkSlot("commit", slot)), false);
    });
  }

  /**
   * Freezes each accepted slot (so no thread can replace it), appends its commit record and
   * queues it; the tail's group commit marks it committed when the record is durable, before any
   * caller of that cycle resumes: a committed word always means durable, in every thread, and a
   * call that found a slot frozen by an earlier one resolves only after that slot is committed
   * (the tail covers it by the same or a later cycle). `lenient` skips empty slots (requests from
   * Workers).
   *
   * No epoch section: nothing read here can be reused under this (the owner's) thread. Index
   * leaves are unlinked only by this thread (`truncatePrefix`); the freeze is a compare-and-swap
   * of the slot word, and the region entry is read only once frozen, when no thread but this one
   * (in `#onDurable`) can free it: a Worker's accept refuses a frozen slot and its compaction's
   * move of one fails.
   */
  #commitSlots(slots: readonly number[], lenient: boolean): Promise<void> {
    if (slots.length === 1) return this.#commitOne(slots[0], lenient);
    const { index, region } = this.#slots;
    if (!lenient) {
      for (let i = 0; i < slots.length; i++) {
        if (index.wordOf(slots[i]) === SLOT_EMPTY) throw new SlotNotFoundError(slots[i], "commit");
      }
    }
    const words = index.words;
    let batch = this.#batch;
    let sizes = this.#batchSizes;
    if (sizes.length < slots.length) {
      batch = new Float64Array(BATCH_FIELDS * slots.length);
      sizes = new Float64Array(slots.length);
      if (slots.length <= BATCH_KEPT_SLOTS_MAX) {
        this.#batch = batch;
        this.#batchSizes = sizes;
      }
    }
    let count = 0;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i];
      const position = index.position(slot, false);
      if (position < 0) continue;
      const offset = this.#freeze(words, position);
      if (offset < 0) continue;
      const b = count * BATCH_FIELDS;
      batch[b] = slot;
      batch[b + 1] = position;
      batch[b + 2] = offset;
      sizes[count++] = ENTRY_HEADER_BYTES + region.valueLengthAt(offset);
    }
    try {
      this.#tail.prepare(sizes, count);
    } catch (error) {
      for (let b = 0; b < count * BATCH_FIELDS; b += BATCH_FIELDS) {
        Atomics.store(words, batch[b + 1], acceptedWord(batch[b + 2]));
      }
      throw error;
    }
    for (let b = 0; b < count * BATCH_FIELDS; b += BATCH_FIELDS) {
      this.#appendCommitted(batch[b], batch[b + 1], batch[b + 2]);
    }
    return this.#tail.commitVoid();
  }

  /** {@linkcode ConsensusLog.#commitSlots} of one slot, without the arrays. */
  #commitOne(slot: number, lenient: boolean): Promise<void> {
    const { index, region } = this.#slots;
    const words = index.words;
    const position = index.position(slot, false);
    if (!lenient && (position < 0 || Atomics.load(words, position) === SLOT_EMPTY)) {
      throw new SlotNotFoundError(slot, "commit");
    }
    if (position >= 0) {
      const offset = this.#freeze(words, position);
      if (offset >= 0) {
        try {
          this.#tail.prepareOne(ENTRY_HEADER_BYTES + region.valueLengthAt(offset));
        } catch (error) {
          Atomics.store(words, position, acceptedWord(offset));
          throw error;
        }
        this.#appendCommitted(slot, position, offset);
      }
    }
    return this.#tail.commitVoid();
  }

  /**
   * Freezes the accepted entry at index `position` (Workers may replace it until the swap
   * succeeds; the newest one is committed); returns its region offset, or -1 if the slot holds
   * no accepted entry (committed, already frozen, or truncated).
   */
  #freeze(words: Int32Array, position: number): number {
    if (this.#slots.epochs.solo) {
      // No other thread can see the index: no compare-and-swap (a fence) per slot.
      const word = words[position];
      if (word < 2) return -1;
      words[position] = -word;
      return wordOffset(word);
    }
    let word = Atomics.load(words, position);
    while (word >= 2) {
      const found = Atomics.compareExchange(words, position, word, -word);
      if (found === word) return wordOffset(word);
      word = found;
    }
    return -1;
  }

  /** Appends the commit record of a frozen entry and queues it for marking once durable. */
  #appendCommitted(slot: number, position: number, offset: number): void {
    const address = this.#appendRegionEntry(TYPE_COMMITTED, slot, offset);
    if (this.#frozenTail + FROZEN_FIELDS > this.#frozen.length) this.#growFrozen();
    const frozen = this.#frozen;
    const at = this.#frozenTail;
    frozen[at] = slot;
    frozen[at + 1] = position;
    frozen[at + 2] = offset;
    frozen[at + 3] = address;
    this.#frozenTail = at + FROZEN_FIELDS;
  }

  /** Makes room at the end of `#frozen`: moves its live part to the front, or doubles it. */
  #growFrozen(): void {
    const frozen = this.#frozen;
    const head = this.#frozenHead;
    const live = this.#frozenTail - head;
    let grown = frozen;
    if (live * 2 + FROZEN_FIELDS > frozen.length) {
      grown = new Float64Array(
        Math.max(frozen.length * 2, FROZEN_FIELDS * FROZEN_KEPT_ENTRIES_MIN),
      );
      grown.set(frozen.subarray(head, head + live));
    } else frozen.copyWithin(0, head, head + live);
    this.#frozen = grown;
    this.#frozenHead = 0;
    this.#frozenTail = live;
  }

  /**
   * The tail made every record below `until` durable: marks the frozen entries whose commit
   * records lie below it committed, in append order, and starts an index checkpoint when due.
   */
  #onDurable = (until: number): void => {
    const frozen = this.#frozen;
    const { index, region } = this.#slots;
    const words = index.words;
    const journaled = this.#journaled;
    const end = this.#frozenTail;
    const solo = this.#slots.epochs.solo;
    let i = this.#frozenHead;
    for (; i < end && frozen[i + 3] < until; i += FROZEN_FIELDS) {
      const position = frozen[i + 1];
      index.setAddressAt(position, frozen[i + 3]);
      // Workers see the word change; with none (not shared), a plain store.
      if (solo) words[position] = SLOT_COMMITTED;
      else Atomics.store(words, position, SLOT_COMMITTED);
      region.free(frozen[i + 2]);
      if (journaled.size > 0) journaled.delete(frozen[i]);
    }
    if (i === end) {
      this.#frozenHead = this.#frozenTail = 0;
      if (frozen.length > FROZEN_FIELDS * FROZEN_KEPT_ENTRIES_MAX) {
        this.#frozen = new Float64Array(FROZEN_FIELDS * FROZEN_KEPT_ENTRIES_MIN);
      }
    } else this.#frozenHead = i;
    if (
      this.#indexCheckpointWork === undefined &&
      until - this.#indexCheckpointAddress >= this.#indexCheckpointIntervalBytes
    ) {
      // After this cycle's callers resume: the checkpoint reads the index as committed. A failure
      // leaves the previous checkpoint in place (it is an accelerator); the next commit retries.
      this.#indexCheckpointWork = Promise.resolve()
        .then(() => this.#writeIndexCheckpoint(true))
        .catch(() => {})
        .finally(() => {
          this.#indexCheckpointWork = undefined;
        });
    }
  };

  /**
   * Runs `steps` to their end, each inside an epoch section; with `inSteps`, lets other work run
   * between them and gives up (`undefined`) if the log starts closing meanwhile.
   */
  async #runSteps<T>(
    steps: Generator<undefined, T, undefined>,
    inSteps: boolean,
  ): Promise<{ value: T } | undefined> {
    const epochs = this.#slots.epochs;
    for (;;) {
      epochs.enter();
      let step: IteratorResult<undefined, T>;
      try {
        step = steps.next();
      } finally {
        epochs.exit();
      }
      if (step.done) return { value: step.value };
      if (inSteps) {
        await nextTurn();
        if (this.#closing || this.#tail.closed) return undefined;
      }
    }
  }

  /**
   * Writes the index as of the current committed address (an accelerator for reopen). `inSteps`
   * (in the background) lets other work run between steps of 0.2–0.3 ms, and gives up
   * if the log starts closing meanwhile (close writes its own).
   */
  async #writeIndexCheckpoint(inSteps: boolean): Promise<void> {
    const covered = this.#tail.committedUntilAddress;
    const index = this.#slots.index;
    // The new checkpoint lists every committed slot: those still only in the old one are merged
    // in from its file, not taken into the index (for 1M slots, 12 MB of leaves, and twice the
    // time of the merge here).
    const merged = index.base;
    // Pairs placed after room for the file's header are written without a copy.
    // The truncated slot is durable before truncatePrefix empties a slot or unlinks a leaf: the
    // walk skips leaves wholly below it from its next step on (they may be recycled).
    const walked = await this.#runSteps(
      index.committedPairsInSteps(
        covered,
        INDEX_CHECKPOINT_HEADER_BYTES,
        () => this.#hard.state.truncatedBelowSlot,
      ),
      inSteps,
    );
    if (walked === undefined) return;
    const pairs = walked.value;
    const journal: number[] = [];
    for (const [slot, address] of this.#journaled) {
      if (address < covered) journal.push(slot, -address - 1);
    }
    const tail = this.#tail;
    await writeIndexCheckpoint(
      tail.device,
      tail.dir,
      tail.logId,
      covered,
      pairs,
      journal,
      tail.durability !== "none",
      inSteps ? nextTurn : undefined,
    );
    this.#indexCheckpointAddress = covered;
    this.#indexCheckpoints++;
    // Not if the base went meanwhile (share() or a damaged chunk put every slot in the index),
    // nor at close.
    if (merged !== undefined && index.base === merged && !this.#closing) this.#replaceBase();
  }

  /**
   * The index checkpoint just written replaces the one the index takes untouched leaves from.
   * For every leaf not in the index, the new file lists the old one's pairs, less some below the
   * truncated slot (skipped either way): the walk listed the old file's pairs of every leaf the
   * index lacked then, and a leaf it held then leaves it only when a truncation unlinks it, wholly
   * below the truncated slot. (The begin address, the new least address, is at most the address
   * of every slot at or above the truncated slot.) Lookups then read the new file, and the old
   * one is closed.
   */
  #replaceBase(): void {
    const tail = this.#tail;
    let checkpoint: IndexCheckpoint | undefined;
    try {
      checkpoint = readIndexCheckpoint(tail.device, tail.dir, tail.logId);
    } catch {
      // The old base still serves: it stands for the same slots.
    }
    if (checkpoint === undefined) return;
    this.#dropBase();
    this.#attachBase(checkpoint);
  }

  // ---- sharing with Workers ----------------------------------------------------------------

  /**
   * A handle for {@linkcode ConsensusLog.attach} in a Worker: shared buffers and the log's fixed
   * facts, structured-cloneable (`worker.postMessage(handle)`). From the first call on, this log
   * serves commits (and journaled accepts) that attached Workers request. Only logs on the real
   * file system can be shared.
   *
   * @returns The handle, the same one on every call.
   * @throws {InvalidArgumentError} The log runs on a test device.
   *
   * @example
   * ```ts
   * // main.ts: the owner opens the log and shares it with a Worker running worker.ts (below).
   * import { ConsensusLog } from "@hybridlog/hybridlog";
   *
   * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
   * const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
   * const committed = new Promise((resolve) => {
   *   worker.onmessage = (event) => {
   *     if (event.data === "ready") worker.postMessage(log.share()); // the Worker listens now
   *     else resolve(event.data);
   *   };
   * });
   * console.log(await committed, log.readCommitted(7)?.committed); // 7 true
   * worker.terminate();
   * ```
   *
   * ```ts
   * // file: worker.ts
   * import { ConsensusLog } from "@hybridlog/hybridlog";
   *
   * declare const self: Worker; // this module runs as a Worker
   *
   * self.onmessage = async (event: MessageEvent) => {
   *   using log = ConsensusLog.attach(event.data); // accepts and reads on shared memory
   *   log.accept(7, { round: 1, node: 2 }, new TextEncoder().encode("from a Worker"));
   *   await log.commit(7); // durable when it resolves: the owner's group commit
   *   self.postMessage(7);
   * };
   * self.postMessage("ready"); // Bun drops messages that arrive before onmessage is set
   * ```
   */
  share(): ConsensusLogHandle {
    this.#tail.assertWritable("share");
    if (this.#tail.device !== fsDevice) {
      throw new InvalidArgumentError(
        `Cannot share a log on the ${this.#tail.device.name} device: Workers map the real files`,
      );
    }
    if (this.#handle) return this.#handle;
    // Workers never see the checkpoint: every slot it holds goes into the shared index first.
    this.#loadBase();
    this.#slots.share(); // Workers read the index and region from now on
    const requests = new CommitRequests();
    this.#requests = requests;
    const { index, region, control, epochBuffer } = this.#slots;
    this.#handle = {
      kind: "hybridlog/consensus-log",
      version: HANDLE_VERSION,
      dir: this.#tail.dir,
      logId: this.#tail.logId,
      segmentSizeBytes: this.#tail.segmentSizeBytes,
      entrySizeBytesMax: this.#entrySizeBytesMax,
      durableAccepts: this.#durableAccepts,
      regionCapacityBytes: region.capacityBytes,
      region: region.buffers,
      index: index.buffer,
      epochs: epochBuffer,
      control: control.buffer,
      requests: requests.buffer,
    };
    void this.#serve(requests);
    return this.#handle;
  }

  /** Carries out Workers' requests until the log closes. */
  async #serve(requests: CommitRequests): Promise<void> {
    while (!this.#closing && !this.#tail.closed) {
      const seen = requests.doorbell;
      this.#serveOnce(requests);
      // The timeout only bounds the damage of a lost wake-up; rings normally wake it at once.
      await requests.waitDoorbell(seen, 1000);
    }
  }

  #serveOnce(requests: CommitRequests): Promise<void> | undefined {
    const commits: number[] = [];
    const journals: number[] = [];
    const ticket = requests.drain((kind, slot) => {
      (kind === RequestKind.commit ? commits : journals).push(slot);
    });
    if (ticket < 0) return undefined;
    const work = runNow(() => {
      for (const slot of journals) this.#journalHeld(slot);
      return this.#commitSlots(commits, true);
    });
    const done = work.then(
      () => requests.markDone(ticket),
      (error) => this.#slots.control.poison(error),
    ).finally(() => this.#inFlight.delete(done));
    this.#inFlight.add(done);
    return done;
  }

  /**
   * Journals what `slot` holds now, for a Worker's durable accept. The holder's ballot is at
   * least the one the Worker accepted (ballots only rise), so a crash after the sync leaves the
   * acceptor having accepted that ballot or a higher one: what Paxos asks of it.
   */
  #journalHeld(slot: number): void {
    const { index, region, epochs } = this.#slots;
    epochs.enter();
    try {
      const word = index.wordOf(slot);
      if (word < 2) return; // committed, frozen for commit, or truncated: nothing to journal
      const offset = wordOffset(word);
      this.#tail.prepareOne(ENTRY_HEADER_BYTES + region.valueLengthAt(offset));
      this.#journaled.set(slot, this.#appendRegionEntry(TYPE_ACCEPTED, slot, offset));
    } finally {
      epochs.exit();
    }
  }

  // ---- reads -------------------------------------------------------------------------------

  #readRecord = (address: number): Uint8Array => this.#tail.recordExpectedAt(address).payload;

  /**
   * The read fast path of a committed slot (owner thread): the slot word and address, then the
   * record's header words; `undefined` sends the caller to the checked, epoch-protected path.
   * No epoch is needed: a committed word and its segment change only by truncation or close,
   * which run on this thread.
   */
  #committedEntry(slot: number, copy: boolean): ConsensusEntry | undefined {
    const index = this.#slots.index;
    const position = index.position(slot, false);
    if (position < 0 || Atomics.load(index.words, position) !== SLOT_COMMITTED) return undefined;
    const address = index.addressAt(position);
    const tail = this.#tail;
    const segment = tail.committedSegment(address);
    if (segment === undefined) return undefined;
    if (copy && !segment.mapped) {
      // A segment found at open is read with `pread` by its first copying reads, not mapped: a
      // reopen that reads an entry or two never pays for mapping and unmapping 64 MiB.
      const payload = tail.unmappedPayloadCopy(segment, address, RecordKind.entry);
      if (payload !== undefined && payload.length >= ENTRY_HEADER_BYTES) {
        return entryFromRecord(payload, true);
      }
    }
    const start = payloadOffset(
      segment,
      tail.segmentSizeBytes,
      address,
      RecordKind.entry,
      tail.logId,
    );
    if (start < 0 || segment.view.words[(start >>> 2) - 3] < ENTRY_HEADER_BYTES) return undefined;
    return entryInSegment(segment, start, copy);
  }

  /**
   * The entry of `slot`, committed or only accepted, or `undefined` if never written (or
   * truncated).
   *
   * @param slot The slot.
   * @returns A copy of the entry, with `committed` telling which.
   */
  read(slot: number): ConsensusEntry | undefined {
    this.#checkSlot("read", slot);
    this.#tail.assertOpen("read");
    return this.#committedEntry(slot, true) ?? this.#slots.read(slot, this.#readRecord);
  }

  /**
   * Like {@linkcode ConsensusLog.read}, without copying a committed value: `value` is a view of
   * the mapped segment, detached (length 0) once the slot is truncated away or the log closes, so
   * it never reaches unmapped memory. An accepted value is still a copy (region memory is reused).
   *
   * @param slot The slot.
   * @returns The entry; copy a committed `value` to keep it past truncation or close.
   */
  readView(slot: number): ConsensusEntry | undefined {
    this.#checkSlot("read", slot);
    this.#tail.assertOpen("read");
    return this.#committedEntry(slot, false) ?? this.#slots.read(slot, this.#readRecord, false);
  }

  /**
   * The committed entry of `slot`, or `undefined` if the slot was never written.
   *
   * @param slot The slot.
   * @returns A copy of the committed entry.
   * @throws {NotCommittedError} The slot is only accepted (or its commit is not durable yet).
   */
  readCommitted(slot: number): ConsensusEntry | undefined {
    const entry = this.read(slot);
    if (entry && !entry.committed) throw new NotCommittedError(slot);
    return entry;
  }

  /**
   * Every entry still in the mutable region, in accept order: what a new leader must learn in
   * Paxos phase 1, or a Raft follower's entries beyond its commit index.
   *
   * @returns Copies of the accepted, uncommitted entries.
   */
  *uncommitted(): Generator<ConsensusEntry> {
    this.#tail.assertOpen("list uncommitted entries");
    yield* this.#slots.uncommitted();
  }

  /**
   * Durably committed entries with `from <= slot < to`, in slot order.
   *
   * @param range `from` (default 0) and `to` (exclusive, default: no end).
   * @returns Copies of the committed entries.
   *
   * @example
   * ```ts
   * import { ConsensusLog } from "@hybridlog/hybridlog";
   *
   * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
   * for (const slot of [3, 1, 2]) log.accept(slot, { round: 1, node: 1 }, new Uint8Array([slot]));
   * await log.commitMany([1, 3]);
   * console.log([...log.committed()].map((entry) => entry.slot)); // [ 1, 3 ]
   * console.log([...log.uncommitted()].map((entry) => entry.slot)); // [ 2 ]
   * ```
   */
  *committed(range: SlotRange = {}): Generator<ConsensusEntry> {
    this.#tail.assertOpen("list committed entries");
    const from = range.from === undefined
      ? 0
      : this.#checkSlot("list committed entries", range.from);
    const to = range.to === undefined
      ? Infinity
      : this.#checkSlot("list committed entries", range.to);
    const slots: number[] = [];
    if (from === 0 && to === Infinity) this.#loadBase();
    else this.#loadBaseRange(from, to);
    this.#slots.epochs.enter();
    try {
      // forEach walks in slot order already, and only the leaves of the range.
      this.#slots.index.forEach(
        (slot, word) => {
          if (word === SLOT_COMMITTED && slot >= from && slot < to) slots.push(slot);
        },
        from,
        to,
      );
    } finally {
      this.#slots.epochs.exit();
    }
    for (const slot of slots) {
      const entry = this.#slots.read(slot, this.#readRecord);
      if (entry?.committed) yield entry;
    }
  }

  /**
   * Committed entries in commit order: those already durable, then each new one as its commit
   * becomes durable. Ends when `signal` aborts or the log closes.
   *
   * @param options `from`: only slots at or above it; `signal` ends the iteration.
   * @returns The committed entries, as they become durable.
   *
   * @example
   * ```ts
   * import { ConsensusLog } from "@hybridlog/hybridlog";
   *
   * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
   * const applied: number[] = [];
   * const applier = (async () => {
   *   for await (const entry of log.tail()) { // a state machine applies decisions as they land
   *     applied.push(entry.slot);
   *     if (applied.length === 2) break;
   *   }
   * })();
   * log.accept(1, { round: 1, node: 1 }, new TextEncoder().encode("x = 1"));
   * log.accept(2, { round: 1, node: 1 }, new TextEncoder().encode("y = 2"));
   * await log.commit(1);
   * await log.commit(2);
   * await applier;
   * console.log(applied); // [ 1, 2 ]
   * ```
   */
  async *tail(options: ConsensusTailOptions = {}): AsyncGenerator<ConsensusEntry> {
    this.#tail.assertOpen("tail");
    const from = options.from === undefined ? 0 : this.#checkSlot("tail", options.from);
    const tail = this.#tail;
    yield* followCommits(
      {
        beginAddress: () => tail.beginAddress,
        committedUntilAddress: () => tail.committedUntilAddress,
        closed: () => tail.closed,
        entries: (start, end) => tail.entries(start, end),
        // One thread: nothing commits between this call and the wait, so registering then is enough.
        armWait: () => () => new Promise<void>((wake) => tail.onNextCommit(wake)),
      },
      from,
      options.signal,
    );
  }

  // ---- hard state --------------------------------------------------------------------------

  /** The durable promised ballot, or `undefined` before the first promise. */
  get promised(): Ballot | undefined {
    return this.#hard.state.promised;
  }

  #effectivePromise(): Ballot | undefined {
    const durable = this.#hard.state.promised;
    const pending = this.#promisedPending;
    if (!durable) return pending;
    if (!pending) return durable;
    return compareBallots(durable, pending) >= 0 ? durable : pending;
  }

  /**
   * Promises `ballot` (Paxos phase 1): from the call on, accepts below it are refused, in every
   * attached Worker too; resolves once the promise is durable and no accept that began before
   * it is still running in any thread.
   *
   * @param ballot The ballot of the prepare (phase 1a) message.
   * @throws {BallotError} `ballot` is lower than the current promise.
   *
   * @example
   * ```ts
   * import { ConsensusLog } from "@hybridlog/hybridlog";
   *
   * // A Paxos acceptor answers only from disk: durable accepts and a durable promise.
   * await using log = await ConsensusLog.open({ dir: "./data/acceptor", durableAccepts: true });
   * await log.accept(4, { round: 1, node: 1 }, new TextEncoder().encode("x = 1"));
   *
   * // Phase 1: a prepare for ballot { round: 2, node: 3 } arrives.
   * await log.promise({ round: 2, node: 3 }); // durable: now reply with what was accepted
   * const accepted = [...log.uncommitted()]; // every accepted entry, with its ballot and value
   * console.log(accepted.length, log.promised); // 1 { round: 2, node: 3 }
   *
   * // Phase 2: the accept of that ballot; an older ballot's would throw BallotError.
   * await log.accept(4, { round: 2, node: 3 }, new TextEncoder().encode("x = 1")); // durable
   * await log.commit(4); // once a quorum accepted: decided
   * ```
   */
  promise(ballot: Ballot): Promise<void> {
    return runNow(async () => {
      const b = checkBallot("promise", ballot);
      this.#tail.assertWritable("promise");
      const current = this.#effectivePromise();
      if (current && compareBallots(b, current) < 0) {
        throw new BallotError(
          `Cannot promise ${describeBallot(b)}: already promised ${describeBallot(current)}`,
        );
      }
      this.#promisedPending = b;
      this.#slots.control.setPromise(b);
      await this.#hard.update((state) => {
        if (state.promised && compareBallots(b, state.promised) <= 0) return undefined;
        return { promised: b };
      });
      await this.#slots.epochs.drain();
    });
  }

  /** Raft's durable term and vote (`{ term: 0, vote: undefined }` before the first set). */
  get hardState(): RaftHardState {
    const { term, vote } = this.#hard.state;
    return { term, vote };
  }

  /**
   * Durably sets Raft's term and vote; resolves once on disk. The term never decreases, and a
   * vote once cast in a term cannot change within it.
   *
   * @param hardState The current term and the vote cast in it (`undefined`: none yet).
   * @throws {BallotError} The term is lower, or the vote would change within the term.
   *
   * @example
   * ```ts
   * import assert from "node:assert/strict";
   * import { BallotError, ConsensusLog } from "@hybridlog/hybridlog";
   *
   * await using log = await ConsensusLog.open({ dir: "./data/raft" });
   * await log.setHardState({ term: 3, vote: 2 }); // durable before the RequestVote reply
   * console.log(log.hardState); // { term: 3, vote: 2 }
   * await assert.rejects(log.setHardState({ term: 3, vote: 5 }), BallotError); // one vote a term
   * await log.setHardState({ term: 4, vote: undefined }); // a new term: no vote yet
   * ```
   */
  setHardState(hardState: RaftHardState): Promise<void> {
    return runNow(async () => {
      const what = "set hard state";
      const term = checkIndex(what, "term", hardState?.term);
      const vote = hardState.vote === undefined
        ? undefined
        : checkIndex(what, "vote", hardState.vote);
      this.#tail.assertWritable(what);
      await this.#hard.update((state) => {
        if (term < state.term) {
          throw new BallotError(
            `Cannot ${what}: term ${term} is lower than the current ${state.term}`,
          );
        }
        if (term === state.term && state.vote !== undefined && vote !== state.vote) {
          throw new BallotError(
            `Cannot ${what}: already voted for ${state.vote} in term ${term}`,
          );
        }
        if (term === state.term && vote === state.vote) return undefined;
        return { term, vote };
      });
    });
  }

  // ---- truncation --------------------------------------------------------------------------

  /**
   * Drops the entries with a slot below `slot` (after a snapshot covering them), committed or
   * only accepted (a stale accept, journaled or not, as a reopen drops it), and frees whole
   * segments on disk; `slot` itself is kept. Durable when it resolves. Workers reading a dropped
   * slot meanwhile get `undefined`, never freed memory.
   *
   * @param slot The first slot to keep.
   *
   * @example
   * ```ts
   * import { ConsensusLog, SnapshotStore } from "@hybridlog/hybridlog";
   *
   * await using log = await ConsensusLog.open({ dir: "./data/replica/log" });
   * await using snapshots = await SnapshotStore.open({ dir: "./data/replica/snapshots" });
   * const ballot = { round: 1, node: 1 };
   * for (let slot = 1; slot <= 3; slot++) log.accept(slot, ballot, new Uint8Array(8));
   * await log.commitMany([1, 2, 3]);
   * await snapshots.create(2, new TextEncoder().encode("state after slot 2"));
   * await log.truncatePrefix(3); // a crash between the two steps is safe: see `recover`
   * console.log(log.read(2), log.read(3)?.committed); // undefined true
   * ```
   */
  truncatePrefix(slot: number): Promise<void> {
    return runNow(async () => {
      const s = this.#checkSlot("truncate", slot);
      this.#tail.assertWritable("truncate");
      this.#truncations++;
      try {
        // One at a time: a truncation walks leaves across turns that another's could recycle.
        const run = this.#truncationDone.then(() => this.#truncate(s));
        this.#truncationDone = run.catch(() => {});
        await run;
      } finally {
        this.#truncations--;
      }
    });
  }

  /**
   * `truncatePrefix` after its checks; counted, since it uses the index across awaits. The
   * index is walked in steps of {@linkcode PAIRS_STEP_LEAVES} leaves with a turn between them
   * (1M live slots held the JS thread for 11 / 20 ms at once in Bun / Deno): the leaves it walks
   * are those there at the start, which only a truncation unlinks, and truncations run one at a
   * time. Leaves made since hold new accepts, or commits at or above the committed address it
   * started from, which bounds what it keeps.
   */
  async #truncate(s: number): Promise<void> {
    await this.#hard.update((state) =>
      s > state.truncatedBelowSlot ? { truncatedBelowSlot: s } : undefined
    );
    const { index, region, epochs } = this.#slots;
    let keepFrom = this.#tail.committedUntilAddress;
    const leaves: number[] = [];
    epochs.enter();
    try {
      const base = index.base;
      if (base !== undefined) {
        // Slots kept that are still only in the checkpoint keep their records too.
        const from = base.pairs.lowerBound(s);
        const least = from < 0 ? -1 : base.pairs.leastAddressFrom(from, base.addressMin);
        if (least < 0) base.damaged(); // they are in the index now: the walk below finds them
        else keepFrom = Math.min(keepFrom, least);
      }
      index.forEachLeaf((firstSlot, leaf) => {
        leaves.push(firstSlot, leaf);
      });
    } finally {
      epochs.exit();
    }
    const words = index.words;
    const step = PAIRS_STEP_LEAVES * 2;
    for (let start = 0; start < leaves.length; start += step) {
      if (start > 0) {
        await nextTurn();
        this.#tail.assertOpen("truncate");
      }
      epochs.enter();
      try {
        for (let i = start; i < Math.min(start + step, leaves.length); i += 2) {
          const firstSlot = leaves[i];
          const leaf = leaves[i + 1];
          for (let lane = 0; lane < LEAF_SLOTS; lane++) {
            const position = leaf + lane;
            const word = index.wordAt(position);
            if (word === SLOT_COMMITTED) {
              if (firstSlot + lane < s) Atomics.store(words, position, SLOT_EMPTY);
              else keepFrom = Math.min(keepFrom, index.addressAt(position));
            } else if (firstSlot + lane < s && word >= 2) {
              // An accept below the snapshot is stale (a reopen drops it too): its region space
              // and its journal record go. A Worker's accept that replaced it meanwhile stays
              // until the next truncation; a frozen one (being committed) is dropped by it.
              if (Atomics.compareExchange(words, position, word, SLOT_EMPTY) === word) {
                region.free(wordOffset(word));
              }
            }
          }
        }
      } finally {
        epochs.exit();
      }
    }
    for (const [journaledSlot, journal] of this.#journaled) {
      if (journaledSlot < s) this.#journaled.delete(journaledSlot);
      else keepFrom = Math.min(keepFrom, journal);
    }
    this.#tail.truncateUntil(keepFrom);
    // Workers learn the new begin before any segment file below it is removed.
    this.#slots.control.publishCommit(this.#tail.beginAddress, this.#tail.committedUntilAddress);
    await this.#tail.commit();
    // Index nodes left empty are recycled once no thread can still be reading them.
    const unlinked = index.unlinkBelow(s);
    if (unlinked.leaves.length + unlinked.inner.length > 0) {
      await epochs.drain();
      index.recycle(unlinked, (word) => region.free(wordOffset(word)));
    }
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** The log directory, as resolved at open. */
  get dir(): string {
    return this.#tail.dir;
  }

  /** The largest value `accept` takes, in bytes (the `entrySizeBytesMax` option, checked). */
  get entrySizeBytesMax(): number {
    return this.#entrySizeBytesMax;
  }

  /** Bytes mapped by this log's segments (cheap; `stats()` walks the index). */
  get mappedBytes(): number {
    return this.#tail.mappedBytes;
  }

  /**
   * Counters and fill levels.
   *
   * @returns A snapshot of the counters (walks the slot index: not for a hot path).
   */
  stats(): ConsensusLogStats {
    return {
      ...this.#tail.stats(),
      indexCheckpoints: this.#indexCheckpoints,
      ...(this.#releasedStats ?? this.#slotStats()),
      committedUntilAddress: this.#tail.committedUntilAddress,
      mappedBytes: this.#tail.mappedBytes,
      recoveryReplayedBytes: this.#recoveryReplayedBytes,
    };
  }

  /** The counts of {@linkcode ConsensusLog.stats} read from the index and the region. */
  #slotStats(): SlotStats {
    const { index, region, epochs } = this.#slots;
    let counts: { committed: number; accepted: number };
    epochs.enter();
    try {
      // The checkpoint's untouched leaves are counted from its directory, not taken.
      counts = index.counts();
    } finally {
      epochs.exit();
    }
    return {
      acceptedCount: counts.accepted,
      committedCount: counts.committed,
      regionLiveBytes: region.liveBytes,
      regionUsedBytes: region.usedBytes,
      regionCapacityBytes: region.capacityBytes,
      indexBytes: index.sizeBytes,
    };
  }

  /**
   * Carries out the Workers' last requests, commits pending tail writes, writes the index
   * checkpoint (so the next open verifies nothing), and closes; attached Workers then get
   * `ClosedError`. Accepted entries that were not journaled are forgotten (see `durableAccepts`).
   */
  async close(): Promise<void> {
    if (this.#tail.closed || this.#closing) return;
    this.#closing = true;
    const requests = this.#requests;
    try {
      if (requests) {
        // Wakes the serving loop, which sees #closing and ends. Not awaited: Deno does not count
        // a pending Atomics.waitAsync as work, so awaiting it with nothing else pending would
        // let the process exit in the middle of close().
        requests.ring();
        this.#serveOnce(requests);
        await Promise.all(this.#inFlight);
      }
      await this.#tail.commit();
      await this.#indexCheckpointWork; // gives up at its next step: this one covers more
      if (this.#indexCheckpointAddress !== this.#tail.committedUntilAddress) {
        await this.#writeIndexCheckpoint(false);
      }
    } catch (error) {
      // A failing disk must not keep the log open; the tail's close reports what failed.
      if (error instanceof IoError) this.#slots.control.poison(error);
    }
    this.#slots.control.markClosed();
    this.#slots.detach();
    this.#dropBase();
    await this.#hard.close();
    await this.#tail.close();
    // Nothing of this log uses its index or region from here on (a truncation still running
    // would; Workers might, if it was shared): they can serve the next log this thread opens.
    if (this.#handle === undefined && this.#truncations === 0) {
      this.#releasedStats = {
        acceptedCount: 0,
        committedCount: 0,
        regionLiveBytes: 0,
        regionUsedBytes: 0,
        regionCapacityBytes: this.#slots.region.capacityBytes,
        indexBytes: 0,
      };
      this.#slots.release();
    }
  }

  /** Same as {@linkcode ConsensusLog.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
