/**
 * A consensus log attached from a Worker: {@linkcode ConsensusLog.attach} of a handle from
 * {@linkcode ConsensusLog.share}. Accepts and reads run in this thread on shared memory, without
 * a lock or a message; committed records are read from this thread's own mappings of the segment
 * files; commits (and, with `durableAccepts`, accept journaling) are requests that the owner's
 * group commit carries out, resolved here when durable.
 *
 * @module
 */
import {
  ClosedError,
  InvalidArgumentError,
  NotCommittedError,
  SlotNotFoundError,
} from "./errors.ts";
import type { Ballot } from "./hard_state.ts";
import { fsDevice } from "./fs_device.ts";
import { RecordKind } from "./record_format.ts";
import { SegmentReader } from "./segment_reader.ts";
import {
  AcceptResult,
  checkBallotFields,
  CommitRequests,
  type ConsensusEntry,
  type ConsensusLogHandle,
  followCommits,
  HANDLE_VERSION,
  RequestKind,
  SharedSlots,
} from "./consensus_shared.ts";
import { checkBytes, checkIndex, runNow } from "./validate.ts";

/** Options of {@linkcode AttachedConsensusLog.tail}. */
export interface AttachedTailOptions {
  /** Only entries with a slot at or above this (default 0). */
  from?: number;
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
}

function checkHandle(handle: unknown): ConsensusLogHandle {
  const h = handle as ConsensusLogHandle;
  if (typeof h !== "object" || h === null || h.kind !== "hybridlog/consensus-log") {
    throw new InvalidArgumentError(
      "Cannot attach: handle must come from ConsensusLog.share() (sent to this Worker as is)",
    );
  }
  if (h.version !== HANDLE_VERSION) {
    throw new InvalidArgumentError(
      `Cannot attach: the handle has version ${h.version}, this hybridlog reads ${HANDLE_VERSION}`,
    );
  }
  return h;
}

/**
 * A consensus log in a Worker, attached to the log another thread opened. Same `accept`,
 * `tryAccept`, `read`, `readCommitted`, `uncommitted`, `commit`, `commitMany` and `tail` as
 * {@linkcode ConsensusLog}; once the owner closes, every call throws `ClosedError`.
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
export class AttachedConsensusLog {
  #slots: SharedSlots;
  #requests: CommitRequests;
  #reader: SegmentReader;
  #entrySizeBytesMax: number;
  #durableAccepts: boolean;
  #detached = false;
  #begin = () => this.#slots.control.beginAddress;
  #readRecord = (address: number) => this.#reader.recordAt(address, this.#begin)?.payload;

  /** Use {@linkcode ConsensusLog.attach}. */
  constructor(handle: ConsensusLogHandle) {
    const h = checkHandle(handle);
    this.#slots = new SharedSlots(h.regionCapacityBytes, h);
    this.#requests = new CommitRequests(h.requests);
    this.#reader = new SegmentReader(fsDevice, h.dir, h.logId, h.segmentSizeBytes);
    this.#entrySizeBytesMax = h.entrySizeBytesMax;
    this.#durableAccepts = h.durableAccepts;
  }

  /** Whether the owner closed the log (or this thread detached). */
  get closed(): boolean {
    return this.#detached || this.#slots.control.closed;
  }

  #assertOpen(what: string): void {
    if (this.#detached) throw new ClosedError(`Cannot ${what}: this Worker detached from the log`);
    this.#slots.control.assertOpen(what);
  }

  #assertWritable(what: string): void {
    this.#assertOpen(what);
    const failure = this.#slots.control.failure(what);
    if (failure) throw failure;
  }

  #accept(slot: number, ballot: Ballot, value: Uint8Array): boolean | Promise<void> {
    const what = "accept";
    checkIndex(what, "slot", slot);
    // The fields are read once and kept as numbers: no ballot object per accept.
    const round = (ballot as Partial<Ballot> | null)?.round as number;
    const node = (ballot as Partial<Ballot> | null)?.node as number;
    checkBallotFields(what, ballot, round, node);
    checkBytes(what, "value", value, this.#entrySizeBytesMax);
    this.#assertWritable(what);
    if (this.#slots.accept(what, slot, round, node, value) === AcceptResult.full) return false;
    if (!this.#durableAccepts) return true;
    return this.#requests.submit(what, RequestKind.journal, [slot], this.#slots.control);
  }

  /**
   * Accepts `value` for `slot` under `ballot` if the ballot is not lower than the held or the
   * promised one, whatever other threads accept meanwhile.
   *
   * @returns `undefined`; with `durableAccepts`, a promise resolving once the owner journaled it.
   * @throws {BallotError} The ballot is lower than the held or promised one.
   * @throws {AlreadyCommittedError} The slot is committed (or being committed).
   * @throws {RegionFullError} The shared region has no room (commit, then retry).
   * @throws {ClosedError} The owner closed the log.
   */
  accept(slot: number, ballot: Ballot, value: Uint8Array): Promise<void> | undefined {
    const result = this.#accept(slot, ballot, value);
    if (result === false) throw this.#slots.fullError(slot, value.length);
    return result === true ? undefined : result;
  }

  /** Like {@linkcode AttachedConsensusLog.accept}, but `false` when the region is full. */
  tryAccept(slot: number, ballot: Ballot, value: Uint8Array): boolean | Promise<void> {
    return this.#accept(slot, ballot, value);
  }

  /**
   * Commits `slot` through the owner: resolves once its group commit made it durable (one sync
   * serves the commits of every thread).
   *
   * @throws {SlotNotFoundError} The slot holds no accepted entry (nothing changed).
   * @throws {ClosedError} The owner closed the log before carrying the commit out.
   */
  commit(slot: number): Promise<void> {
    return this.commitMany([slot]);
  }

  /** Commits every slot in `slots` through the owner; all are checked before any is asked. */
  commitMany(slots: readonly number[]): Promise<void> {
    return runNow(() => {
      if (!Array.isArray(slots)) {
        throw new InvalidArgumentError(
          "Cannot commit slots: slots must be an array of slot numbers",
        );
      }
      const checked = slots.map((slot) => checkIndex("commit", "slot", slot));
      this.#assertWritable("commit");
      for (const slot of checked) {
        if (!this.#slots.has(slot)) throw new SlotNotFoundError(slot, "commit");
      }
      return this.#requests.submit("commit", RequestKind.commit, checked, this.#slots.control);
    });
  }

  /** The entry of `slot`, committed or only accepted, or `undefined` if never written. */
  read(slot: number): ConsensusEntry | undefined {
    checkIndex("read", "slot", slot);
    this.#assertOpen("read");
    return this.#slots.read(slot, this.#readRecord);
  }

  /**
   * Like {@linkcode AttachedConsensusLog.read}, without copying a committed value: `value` is a
   * view of this thread's own mapping of the segment (zero-copy), detached (length 0) when this
   * thread releases the mapping (the slot's segment truncated away, or `detach()`), so it never
   * reaches unmapped memory. An accepted value is still a copy.
   */
  readView(slot: number): ConsensusEntry | undefined {
    checkIndex("read", "slot", slot);
    this.#assertOpen("read");
    return this.#slots.read(slot, this.#readRecord, false);
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

  /** Every accepted, uncommitted entry, in accept order (whichever thread accepted it). */
  *uncommitted(): Generator<ConsensusEntry> {
    this.#assertOpen("list uncommitted entries");
    yield* this.#slots.uncommitted();
  }

  /**
   * Committed entries in commit order, read from this thread's mappings: those already durable,
   * then each new one as it becomes durable. Ends when `signal` aborts or the owner closes.
   */
  async *tail(options: AttachedTailOptions = {}): AsyncGenerator<ConsensusEntry> {
    this.#assertOpen("tail");
    const from = options.from === undefined ? 0 : checkIndex("tail", "slot", options.from);
    const control = this.#slots.control;
    const reader = this.#reader;
    const begin = this.#begin;
    yield* followCommits(
      {
        beginAddress: begin,
        committedUntilAddress: () => control.committedUntilAddress,
        closed: () => this.closed,
        *entries(start, end) {
          for (const { address, nextAddress, record } of reader.records(start, end, begin)) {
            if (record.kind === RecordKind.entry) {
              yield { address, nextAddress, value: record.payload };
            }
          }
        },
        armWait: () => {
          // Another thread commits: note the commit count first, then wait for it to move.
          const seen = control.commits;
          return () => control.waitCommit(seen, 1000);
        },
      },
      from,
      options.signal,
    );
  }

  /**
   * Detaches this thread: seals its region chunk, frees its epoch slot and unmaps its segment
   * mappings. Values already returned are copies and stay valid. Idempotent.
   */
  detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#slots.detach();
    this.#reader.close();
  }

  /** Same as {@linkcode AttachedConsensusLog.detach}. */
  [Symbol.dispose](): void {
    this.detach();
  }
}
