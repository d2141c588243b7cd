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
  AlreadyCommittedError,
  BallotError,
  InvalidArgumentError,
  NotCommittedError,
  RegionFullError,
  SlotNotFoundError,
} from "./errors.ts";
import { type Ballot, compareBallots, HardStateStore, type RaftHardState } from "./hard_state.ts";
import { readIndexCheckpoint, writeIndexCheckpoint } from "./index_checkpoint.ts";
import { MutableRegion, REGION_ENTRY_HEADER_BYTES } from "./mutable_region.ts";
import { RecordKind } from "./record_format.ts";
import { SlotIndex, SlotState } from "./slot_index.ts";
import { type Durability, DurableTail, type TailStats } from "./tail.ts";
import { checkLogOptions } from "./log_options.ts";
import { checkBytes, checkIndex, checkSizeOption, runNow } from "./validate.ts";

export type { Ballot, RaftHardState };

/** Default mutable region: 64 MiB. */
export const MUTABLE_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Default largest value: 16 MiB (at most what the region and a segment can hold). */
export const CONSENSUS_ENTRY_SIZE_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** Index checkpoints are rewritten after this many committed bytes (and at close). */
const INDEX_CHECKPOINT_INTERVAL_BYTES = 64 * 1024 * 1024;

/** Bytes of the per-entry header inside a tail record: slot, round, node, type. */
const ENTRY_HEADER_BYTES = 24;
const TYPE_COMMITTED = 1;
const TYPE_ACCEPTED = 2;

/** Options of {@linkcode ConsensusLog.open}. */
export interface ConsensusLogOptions {
  /** The log directory; created (0700) if missing. One open log per directory. */
  dir: string;
  /** What a resolved commit (and durable accept) promises; default `"data"` (fdatasync). */
  durability?: Durability;
  /** Bytes of the shared-memory region holding accepted entries (default 64 MiB). */
  mutableSizeBytes?: number;
  /** Segment file size, a power of two (default 64 MiB); fixed when the log is created. */
  segmentSizeBytes?: number;
  /** Largest value (default 16 MiB, at most what the region and a segment hold). */
  entrySizeBytesMax?: number;
  /** Journal every accept durably; `accept` then returns a promise (default false). */
  durableAccepts?: boolean;
  /** Staging buffer of the durable tail (default 4 MiB). */
  bufferSizeBytes?: number;
  /** Committed bytes between tail checkpoints (default 8 MiB). */
  checkpointIntervalBytes?: number;
  /** The storage device (default: the real file system). */
  device?: Device;
}

/** An entry of a consensus log. */
export interface ConsensusEntry {
  readonly slot: number;
  readonly ballot: Ballot;
  /** True once the commit is durable. */
  readonly committed: boolean;
  /** A copy of the value. */
  readonly value: Uint8Array;
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

/** Counters and fill levels of a consensus log. */
export interface ConsensusLogStats extends TailStats {
  readonly acceptedCount: number;
  readonly committedCount: number;
  readonly regionLiveBytes: number;
  readonly regionUsedBytes: number;
  readonly regionCapacityBytes: number;
  readonly committedUntilAddress: number;
  readonly mappedBytes: number;
  /** Bytes of log the last open verified and replayed (what the index checkpoint did not cover). */
  readonly recoveryReplayedBytes: number;
}

function checkBallot(what: string, ballot: unknown): Ballot {
  const b = ballot as Ballot;
  if (typeof b !== "object" || b === null) {
    throw new InvalidArgumentError(`Cannot ${what}: ballot must be { round, node }`);
  }
  checkIndex(what, "ballot.round", b.round);
  checkIndex(what, "ballot.node", b.node);
  if (b.node > 0xffff_ffff) {
    throw new InvalidArgumentError(`Cannot ${what}: ballot.node must be below 2^32, got ${b.node}`);
  }
  return { round: b.round, node: b.node };
}

function describeBallot(b: Ballot): string {
  return `(${b.round}, ${b.node})`;
}

/**
 * A consensus log: accept, commit and read by slot.
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
  #region: MutableRegion;
  #index: SlotIndex;
  #hard: HardStateStore;
  #durableAccepts: boolean;
  #entrySizeBytesMax: number;
  #promisedPending: Ballot | undefined;
  #header = new Uint8Array(ENTRY_HEADER_BYTES);
  #headerView = new DataView(this.#header.buffer);
  #movedFrom = -1;
  #movedTo = -1;
  #indexCheckpointAddress: number;
  #indexCheckpointRunning = false;
  #recoveryReplayedBytes = 0;
  #onMove = (slot: number, from: number, to: number) => {
    this.#index.set(slot, SlotState.accepted, to);
    if (from === this.#movedFrom) this.#movedTo = to;
  };

  private constructor(
    tail: DurableTail,
    region: MutableRegion,
    hard: HardStateStore,
    durableAccepts: boolean,
    entrySizeBytesMax: number,
  ) {
    this.#tail = tail;
    this.#region = region;
    this.#index = new SlotIndex();
    this.#hard = hard;
    this.#durableAccepts = durableAccepts;
    this.#entrySizeBytesMax = entrySizeBytesMax;
    this.#indexCheckpointAddress = tail.beginAddress;
  }

  /**
   * Opens the log in `options.dir`, creating it if new. Recovery loads the index checkpoint,
   * verifies only the records after it, restores journaled accepts (`durableAccepts`), and reads
   * the promised ballot and hard state.
   *
   * @throws {LockedError} Another open log holds the directory.
   * @throws {CorruptionError} Durable data failed validation.
   * @throws {InvalidArgumentError} An option is out of range.
   */
  static open(options: ConsensusLogOptions): Promise<ConsensusLog> {
    return Promise.resolve().then(() => {
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
      const entryLimit = Math.min(
        mutableSizeBytes - REGION_ENTRY_HEADER_BYTES - 8,
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
      if (options.durableAccepts !== undefined && typeof options.durableAccepts !== "boolean") {
        throw new InvalidArgumentError(`Cannot ${what}: durableAccepts must be a boolean`);
      }
      const durability = common.durability;
      const tail = DurableTail.open(common);
      try {
        const hard = HardStateStore.open(tail.device, tail.dir, tail.logId, durability !== "none");
        const log = new ConsensusLog(
          tail,
          new MutableRegion(mutableSizeBytes),
          hard,
          options.durableAccepts ?? false,
          entrySizeBytesMax,
        );
        log.#recover();
        return log;
      } catch (error) {
        return tail.close().then(() => Promise.reject(error), () => Promise.reject(error));
      }
    });
  }

  // ---- recovery ----------------------------------------------------------------------------

  #recover(): void {
    const tail = this.#tail;
    const below = this.#hard.state.truncatedBelowSlot;
    let start = tail.beginAddress;
    const checkpoint = readIndexCheckpoint(tail.device, tail.dir, tail.logId);
    if (
      checkpoint && checkpoint.coveredAddress <= tail.committedUntilAddress &&
      checkpoint.coveredAddress >= tail.beginAddress
    ) {
      const entries = checkpoint.entries;
      // Sized up front: growing from the minimum would rehash about log2(count / 4096) times.
      this.#index = new SlotIndex(entries.length * 2);
      for (let i = 0; i < entries.length; i += 2) {
        const slot = entries[i];
        const stored = entries[i + 1];
        const address = stored < 0 ? -stored - 1 : stored;
        if (slot < below || address < tail.beginAddress) continue;
        // A committed entry needs only its address: its record is verified when first read.
        if (stored >= 0) this.#index.set(slot, SlotState.committed, address);
        else this.#replay(address);
      }
      start = checkpoint.coveredAddress;
      this.#indexCheckpointAddress = start;
    }
    for (const record of tail.records(start, tail.committedUntilAddress)) {
      this.#replay(record.address, record.payload);
    }
    this.#recoveryReplayedBytes = tail.committedUntilAddress - start;
  }

  /** Applies one durable record (a commit or a journaled accept) to the in-memory state. */
  #replay(address: number, payload?: Uint8Array): void {
    if (payload === undefined) {
      payload = this.#tail.recordExpectedAt(address).payload;
    }
    const view = new DataView(payload.buffer, payload.byteOffset, ENTRY_HEADER_BYTES);
    const slot = view.getFloat64(0, true);
    if (slot < this.#hard.state.truncatedBelowSlot) return;
    const type = view.getUint32(20, true);
    const position = this.#index.find(slot);
    const state = position < 0 ? SlotState.empty : this.#index.stateAt(position);
    if (type === TYPE_COMMITTED) {
      if (state === SlotState.accepted) this.#region.free(this.#index.locationAt(position));
      this.#index.set(slot, SlotState.committed, address);
      return;
    }
    if (state === SlotState.committed) return;
    const ballot = { round: view.getFloat64(8, true), node: view.getUint32(16, true) };
    if (state === SlotState.accepted) {
      const held = this.#index.locationAt(position);
      const heldBallot = { round: this.#region.roundAt(held), node: this.#region.nodeAt(held) };
      if (compareBallots(ballot, heldBallot) < 0) return;
    }
    this.#store(slot, ballot, payload.subarray(ENTRY_HEADER_BYTES), address, true);
  }

  // ---- accept ------------------------------------------------------------------------------

  #checkSlot(what: string, slot: unknown): number {
    return checkIndex(what, "slot", slot);
  }

  /** Puts an entry into the region, replacing the slot's previous one; false when full. */
  #store(slot: number, ballot: Ballot, value: Uint8Array, journal: number, mustFit: boolean) {
    const position = this.#index.find(slot);
    this.#movedFrom = position >= 0 && this.#index.stateAt(position) === SlotState.accepted
      ? this.#index.locationAt(position)
      : -1;
    this.#movedTo = this.#movedFrom;
    const offset = this.#region.put(slot, ballot.round, ballot.node, value, journal, this.#onMove);
    if (offset < 0) {
      if (mustFit) {
        throw new RegionFullError(
          `Cannot restore accepted slot ${slot}: mutableSizeBytes ${this.#region.capacityBytes} is too small for the journaled accepts`,
        );
      }
      return false;
    }
    this.#index.set(slot, SlotState.accepted, offset);
    if (this.#movedTo >= 0) this.#region.free(this.#movedTo);
    this.#movedFrom = this.#movedTo = -1;
    return true;
  }

  #accept(
    what: string,
    slot: number,
    ballot: Ballot,
    value: Uint8Array,
  ): boolean | Promise<void> {
    this.#checkSlot(what, slot);
    const b = checkBallot(what, ballot);
    checkBytes(what, "value", value, this.#entrySizeBytesMax);
    this.#tail.assertWritable(what);
    // A decided slot says so first: the proposer should learn the committed value.
    const position = this.#index.find(slot);
    if (position >= 0 && this.#index.stateAt(position) === SlotState.committed) {
      throw new AlreadyCommittedError(slot, what);
    }
    const promised = this.#effectivePromise();
    if (promised && compareBallots(b, promised) < 0) {
      throw new BallotError(
        `Cannot ${what} slot ${slot}: ballot ${describeBallot(b)} is lower than the promised ${
          describeBallot(promised)
        }`,
      );
    }
    if (position >= 0) {
      const held = this.#index.locationAt(position);
      const heldBallot = { round: this.#region.roundAt(held), node: this.#region.nodeAt(held) };
      if (compareBallots(b, heldBallot) < 0) {
        throw new BallotError(
          `Cannot ${what} slot ${slot}: ballot ${describeBallot(b)} is lower than the accepted ${
            describeBallot(heldBallot)
          }`,
        );
      }
    }
    if (!this.#region.fits(value.length)) return false;
    let journal = -1;
    if (this.#durableAccepts) {
      // Create any segment the journal record needs first: the only step that can fail cleanly.
      this.#tail.prepareOne(ENTRY_HEADER_BYTES + value.length);
      journal = this.#tail.tailAddress;
    }
    if (!this.#store(slot, b, value, journal, false)) return false;
    if (!this.#durableAccepts) return true;
    const address = this.#appendRecord(TYPE_ACCEPTED, slot, b, value);
    if (address !== journal) {
      // A roll-over moved it: the region entry must name the record's real address.
      this.#store(slot, b, value, address, true);
    }
    return this.#tail.commit().then(() => {});
  }

  #appendRecord(type: number, slot: number, ballot: Ballot, value: Uint8Array): number {
    const view = this.#headerView;
    view.setFloat64(0, slot, true);
    view.setFloat64(8, ballot.round, true);
    view.setUint32(16, ballot.node, true);
    view.setUint32(20, type, true);
    const length = ENTRY_HEADER_BYTES + value.length;
    return this.#tail.append(RecordKind.entry, [this.#header, value], length);
  }

  #effectivePromise(): Ballot | undefined {
    const durable = this.#hard.state.promised;
    const pending = this.#promisedPending;
    if (!durable) return pending;
    if (!pending) return durable;
    return compareBallots(durable, pending) >= 0 ? durable : pending;
  }

  /**
   * Accepts `value` for `slot` under `ballot`: stores it, or replaces the slot's accepted entry,
   * if `ballot` is not lower than the one held nor than the promised ballot.
   *
   * @returns `undefined`; with `durableAccepts`, a promise that resolves once the accept is durable.
   * @throws {BallotError} The ballot is lower than the held or promised one.
   * @throws {AlreadyCommittedError} The slot is committed.
   * @throws {RegionFullError} The mutable region has no room (commit, then retry).
   * @throws {InvalidArgumentError} Bad slot, ballot or value; nothing changed.
   */
  accept(slot: number, ballot: Ballot, value: Uint8Array): Promise<void> | undefined {
    const result = this.#accept("accept", slot, ballot, value);
    if (result === false) {
      throw new RegionFullError(
        `Cannot accept slot ${slot}: the mutable region holds ${this.#region.liveBytes} of ${this.#region.capacityBytes} bytes, no room for ${value.length} more`,
      );
    }
    return result === true ? undefined : result;
  }

  /**
   * Like {@linkcode ConsensusLog.accept}, but returns `false` instead of throwing
   * `RegionFullError`; `true` (or, with `durableAccepts`, a promise resolving once durable) when
   * accepted.
   */
  tryAccept(slot: number, ballot: Ballot, value: Uint8Array): boolean | Promise<void> {
    return this.#accept("accept", slot, ballot, value);
  }

  // ---- commit ------------------------------------------------------------------------------

  /** Moves an accepted slot to the tail; returns false if it was already committed. */
  #moveToTail(slot: number): void {
    const position = this.#index.find(slot);
    if (this.#index.stateAt(position) === SlotState.committed) return;
    const offset = this.#index.locationAt(position);
    const region = this.#region;
    const ballot = { round: region.roundAt(offset), node: region.nodeAt(offset) };
    const address = this.#appendRecord(TYPE_COMMITTED, slot, ballot, region.valueAt(offset));
    this.#index.set(slot, SlotState.committed, address);
    region.free(offset);
  }

  #checkCommittable(what: string, slot: unknown): number {
    const s = this.#checkSlot(what, slot);
    if (this.#index.find(s) < 0) throw new SlotNotFoundError(s, what);
    return s;
  }

  /**
   * Commits `slot`: moves its accepted entry to the durable tail, where it can never change.
   * Resolves once durable; concurrent commits share one sync. Committing a committed slot
   * resolves (re-delivered commit messages are harmless).
   *
   * @throws {SlotNotFoundError} The slot holds no accepted entry (nothing changed).
   */
  commit(slot: number): Promise<void> {
    return runNow(() => {
      this.#tail.assertWritable("commit");
      const s = this.#checkCommittable("commit", slot);
      const lengths = this.#pendingLengths([s]);
      this.#tail.prepare(lengths);
      this.#moveToTail(s);
      return this.#commitTail();
    });
  }

  /** Commits every slot in `slots` with one sync; all are checked before any moves. */
  commitMany(slots: readonly number[]): Promise<void> {
    return runNow(() => {
      if (!Array.isArray(slots)) {
        throw new InvalidArgumentError(
          "Cannot commit slots: slots must be an array of slot numbers",
        );
      }
      this.#tail.assertWritable("commit");
      const checked = slots.map((slot) => this.#checkCommittable("commit", slot));
      this.#tail.prepare(this.#pendingLengths(checked));
      for (const slot of checked) this.#moveToTail(slot);
      return this.#commitTail();
    });
  }

  #pendingLengths(slots: readonly number[]): number[] {
    const lengths: number[] = [];
    for (const slot of slots) {
      const position = this.#index.find(slot);
      if (this.#index.stateAt(position) !== SlotState.accepted) continue;
      lengths.push(
        ENTRY_HEADER_BYTES + this.#region.valueAt(this.#index.locationAt(position)).length,
      );
    }
    return lengths;
  }

  async #commitTail(): Promise<void> {
    await this.#tail.commit();
    const tail = this.#tail;
    if (
      !this.#indexCheckpointRunning &&
      tail.committedUntilAddress - this.#indexCheckpointAddress >= INDEX_CHECKPOINT_INTERVAL_BYTES
    ) {
      this.#indexCheckpointRunning = true;
      this.#writeIndexCheckpoint().catch(() => {}).finally(() => {
        this.#indexCheckpointRunning = false;
      });
    }
  }

  /** Writes the index as of the current committed address (an accelerator for reopen). */
  async #writeIndexCheckpoint(): Promise<void> {
    const covered = this.#tail.committedUntilAddress;
    const pairs: number[] = [];
    this.#index.forEach((slot, state, location) => {
      if (state === SlotState.committed && location < covered) pairs.push(slot, location);
      else if (state === SlotState.accepted) {
        const journal = this.#region.journalAt(location);
        if (journal >= 0 && journal < covered) pairs.push(slot, -journal - 1);
      }
    });
    const tail = this.#tail;
    await writeIndexCheckpoint(
      tail.device,
      tail.dir,
      tail.logId,
      covered,
      new Float64Array(pairs),
      tail.durability !== "none",
    );
    this.#indexCheckpointAddress = covered;
  }

  // ---- reads -------------------------------------------------------------------------------

  #entryAt(slot: number, position: number): ConsensusEntry {
    if (this.#index.stateAt(position) === SlotState.accepted) {
      const offset = this.#index.locationAt(position);
      const region = this.#region;
      return {
        slot,
        ballot: { round: region.roundAt(offset), node: region.nodeAt(offset) },
        committed: false,
        value: region.valueAt(offset).slice(),
      };
    }
    const address = this.#index.locationAt(position);
    const payload = this.#tail.recordExpectedAt(address).payload;
    const view = new DataView(payload.buffer, payload.byteOffset, ENTRY_HEADER_BYTES);
    return {
      slot,
      ballot: { round: view.getFloat64(8, true), node: view.getUint32(16, true) },
      committed: address < this.#tail.committedUntilAddress,
      value: payload.slice(ENTRY_HEADER_BYTES),
    };
  }

  /** The entry of `slot`, committed or only accepted, or `undefined` if never written. */
  read(slot: number): ConsensusEntry | undefined {
    this.#checkSlot("read", slot);
    this.#tail.assertOpen("read");
    const position = this.#index.find(slot);
    return position < 0 ? undefined : this.#entryAt(slot, position);
  }

  /**
   * The committed entry of `slot`, or `undefined` if the slot was never written.
   *
   * @throws {NotCommittedError} The slot is only accepted (or its commit is not durable yet).
   */
  readCommitted(slot: number): ConsensusEntry | undefined {
    const entry = this.read(slot);
    if (entry && !entry.committed) throw new NotCommittedError(slot);
    return entry;
  }

  /** Every entry still in the mutable region, in accept order (Paxos phase-1 recovery). */
  *uncommitted(): Generator<ConsensusEntry> {
    this.#tail.assertOpen("list uncommitted entries");
    for (const offset of this.#region.offsets()) {
      const slot = this.#region.slotAt(offset);
      const position = this.#index.find(slot);
      if (position < 0 || this.#index.locationAt(position) !== offset) continue;
      yield this.#entryAt(slot, position);
    }
  }

  /** Durably committed entries with `from <= slot < to`, in slot order. */
  *committed(range: SlotRange = {}): Generator<ConsensusEntry> {
    this.#tail.assertOpen("list committed entries");
    const from = range.from === undefined
      ? 0
      : this.#checkSlot("list committed entries", range.from);
    const to = range.to === undefined
      ? Infinity
      : this.#checkSlot("list committed entries", range.to);
    const durable = this.#tail.committedUntilAddress;
    const slots: number[] = [];
    this.#index.forEach((slot, state, location) => {
      if (state === SlotState.committed && slot >= from && slot < to && location < durable) {
        slots.push(slot);
      }
    });
    slots.sort((a, b) => a - b);
    for (const slot of slots) {
      const position = this.#index.find(slot);
      if (position >= 0) yield this.#entryAt(slot, position);
    }
  }

  /**
   * Committed entries in commit order: those already durable, then each new one as its commit
   * becomes durable. Ends when `signal` aborts or the log closes.
   */
  async *tail(options: ConsensusTailOptions = {}): AsyncGenerator<ConsensusEntry> {
    this.#tail.assertOpen("tail");
    const from = options.from === undefined ? 0 : this.#checkSlot("tail", options.from);
    const signal = options.signal;
    const tail = this.#tail;
    let cursor = tail.beginAddress;
    while (!signal?.aborted && !tail.closed) {
      const until = tail.committedUntilAddress;
      for (const record of tail.records(cursor, until)) {
        const view = new DataView(
          record.payload.buffer,
          record.payload.byteOffset,
          ENTRY_HEADER_BYTES,
        );
        const slot = view.getFloat64(0, true);
        if (view.getUint32(20, true) === TYPE_COMMITTED && slot >= from) {
          yield {
            slot,
            ballot: { round: view.getFloat64(8, true), node: view.getUint32(16, true) },
            committed: true,
            value: record.payload.slice(ENTRY_HEADER_BYTES),
          };
        }
        cursor = record.nextAddress;
        if (signal?.aborted || tail.closed) return;
      }
      cursor = Math.max(cursor, until);
      if (cursor < tail.committedUntilAddress) continue;
      await new Promise<void>((wake) => {
        tail.onNextCommit(wake);
        signal?.addEventListener("abort", () => wake(), { once: true });
      });
    }
  }

  // ---- hard state --------------------------------------------------------------------------

  /** The durable promised ballot, or `undefined` before the first promise. */
  get promised(): Ballot | undefined {
    return this.#hard.state.promised;
  }

  /**
   * Promises `ballot` (Paxos phase 1): from the call on, accepts below it are refused; resolves
   * once the promise is durable. Promising the current ballot again resolves.
   *
   * @throws {BallotError} `ballot` is lower than the current promise.
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
      await this.#hard.update((state) => {
        if (state.promised && compareBallots(b, state.promised) <= 0) return undefined;
        return { promised: b };
      });
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
   * @throws {BallotError} The term is lower, or the vote would change within the term.
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
   * Drops committed entries with a slot below `slot` (after a snapshot covering them) and frees
   * whole segments on disk; `slot` itself is kept. Durable when it resolves.
   */
  truncatePrefix(slot: number): Promise<void> {
    return runNow(async () => {
      const s = this.#checkSlot("truncate", slot);
      this.#tail.assertWritable("truncate");
      await this.#hard.update((state) =>
        s > state.truncatedBelowSlot ? { truncatedBelowSlot: s } : undefined
      );
      const drop: number[] = [];
      let keepFrom = this.#tail.committedUntilAddress;
      this.#index.forEach((entrySlot, state, location) => {
        if (state === SlotState.committed) {
          if (entrySlot < s) drop.push(entrySlot);
          else keepFrom = Math.min(keepFrom, location);
        } else {
          const journal = this.#region.journalAt(location);
          if (journal >= 0) keepFrom = Math.min(keepFrom, journal);
        }
      });
      for (const dropped of drop) this.#index.delete(dropped);
      this.#tail.truncateUntil(keepFrom);
      await this.#tail.commit();
    });
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Bytes mapped by this log's segments (cheap; `stats()` walks the index). */
  get mappedBytes(): number {
    return this.#tail.mappedBytes;
  }

  /** Counters and fill levels. */
  stats(): ConsensusLogStats {
    let acceptedCount = 0;
    let committedCount = 0;
    this.#index.forEach((_slot, state) => {
      if (state === SlotState.accepted) acceptedCount++;
      else committedCount++;
    });
    return {
      ...this.#tail.stats(),
      acceptedCount,
      committedCount,
      regionLiveBytes: this.#region.liveBytes,
      regionUsedBytes: this.#region.usedBytes,
      regionCapacityBytes: this.#region.capacityBytes,
      committedUntilAddress: this.#tail.committedUntilAddress,
      mappedBytes: this.#tail.mappedBytes,
      recoveryReplayedBytes: this.#recoveryReplayedBytes,
    };
  }

  /**
   * Commits pending tail writes, writes the index checkpoint (so the next open verifies nothing),
   * and closes. Accepted entries that were not journaled are forgotten (see `durableAccepts`).
   */
  async close(): Promise<void> {
    if (this.#tail.closed) return;
    try {
      await this.#tail.commit();
      if (this.#indexCheckpointAddress !== this.#tail.committedUntilAddress) {
        await this.#writeIndexCheckpoint();
      }
    } catch {
      // A failing disk must not keep the log open; the tail's close reports what failed.
    }
    await this.#hard.close();
    await this.#tail.close();
  }

  /** Same as {@linkcode ConsensusLog.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
