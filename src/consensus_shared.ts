/**
 * What the owner of a consensus log and its attached Workers share, and the accept and read paths
 * they run alike. Everything here is shared memory and atomics: an accept in any thread is a
 * region allocation, a copy and a compare-and-swap of the slot word; a read is two loads and a
 * copy; a commit asked for by a Worker is a ticket in a request ring that the owner's group commit
 * carries out ({@linkcode CommitRequests}).
 *
 * @module
 */
import {
  AlreadyCommittedError,
  BallotError,
  ClosedError,
  InvalidArgumentError,
  PoisonedError,
  RegionFullError,
} from "./errors.ts";
import { checkIndex } from "./validate.ts";
import type { LogEntry } from "./entry_iterator.ts";
import { type Segment, segmentDoubles } from "./segments.ts";
import { EPOCH_WORDS, EpochTable } from "./epoch.ts";
import type { Ballot } from "./hard_state.ts";
import { MutableRegion, regionCapacityBytes as regionBytesFor } from "./mutable_region.ts";
import { keepSharedBuffer, takeSharedBuffer } from "./shared_buffers.ts";
import {
  acceptedWord,
  INDEX_SIZE_BYTES_DEFAULT,
  SLOT_COMMITTED,
  SLOT_EMPTY,
  SlotIndex,
  wordOffset,
} from "./slot_index.ts";

/** Version of {@linkcode ConsensusLogHandle}; attach refuses another. */
export const HANDLE_VERSION = 1;

/**
 * What a Worker needs to attach to a consensus log: shared buffers and the log's fixed facts. It
 * is structured-cloneable: send it with `postMessage` (no transfer list).
 */
export interface ConsensusLogHandle {
  /** Marks the object as a handle (a Worker may receive other messages). */
  readonly kind: "hybridlog/consensus-log";
  /** The handle format; `attach` refuses another version. */
  readonly version: number;
  /** The log directory (absolute). */
  readonly dir: string;
  /** The log's random id, checked in every record read. */
  readonly logId: number;
  /** Size of the segment files. */
  readonly segmentSizeBytes: number;
  /** Largest value an accept takes. */
  readonly entrySizeBytesMax: number;
  /** Whether accepts are journaled (then `accept` returns a promise in Workers too). */
  readonly durableAccepts: boolean;
  /** Size of the mutable region. */
  readonly regionCapacityBytes: number;
  /** The mutable region: entry bytes and its allocation state. */
  readonly region: { readonly data: SharedArrayBuffer; readonly control: SharedArrayBuffer };
  /** The slot index. */
  readonly index: SharedArrayBuffer;
  /** The epoch table that protects memory being reused. */
  readonly epochs: SharedArrayBuffer;
  /** Shared state: the durable range, the promise, closed and failure flags. */
  readonly control: SharedArrayBuffer;
  /** The ring of Workers' commit and journal requests to the owner. */
  readonly requests: SharedArrayBuffer;
}

/** An entry of a consensus log. */
export interface ConsensusEntry {
  /** The entry's slot. */
  readonly slot: number;
  /** The ballot it was accepted under. */
  readonly ballot: Ballot;
  /** True once the commit is durable. */
  readonly committed: boolean;
  /** The value: a copy, except a committed value from `readView` (a view of the mapped segment). */
  readonly value: Uint8Array;
}

// ---- the control block ---------------------------------------------------------------------

const CLOSED = 0;
const POISONED = 1;
const COMMITS = 2; // bumped (and notified) after every durable commit
const PROMISE_SEQUENCE = 3; // seqlock over the promised ballot: odd while it changes
const PROMISED_NODE = 4;
const HAS_PROMISE = 5;
const ERROR_LENGTH = 6;
const F_COMMITTED_UNTIL = 4; // float64 index
const F_BEGIN = 5;
const F_PROMISED_ROUND = 6;
const ERROR_TEXT_OFFSET = 64;
const ERROR_TEXT_BYTES = 1024;
const CONTROL_BYTES = ERROR_TEXT_OFFSET + ERROR_TEXT_BYTES;

/** The log-wide facts every thread reads: open or closed, failure, commit progress, promise. */
export class SharedControl {
  readonly buffer: SharedArrayBuffer;
  #ints: Int32Array;
  #floats: Float64Array;
  #text: Uint8Array;
  /** No other thread can see the control (the owner before `share()`): plain loads. */
  solo = false;

  constructor(buffer = new SharedArrayBuffer(CONTROL_BYTES)) {
    this.buffer = buffer;
    this.#ints = new Int32Array(buffer, 0, ERROR_TEXT_OFFSET / 4);
    this.#floats = new Float64Array(buffer, 0, ERROR_TEXT_OFFSET / 8);
    this.#text = new Uint8Array(buffer, ERROR_TEXT_OFFSET, ERROR_TEXT_BYTES);
  }

  get closed(): boolean {
    return Atomics.load(this.#ints, CLOSED) !== 0;
  }

  /** Owner: marks the log closed and wakes every waiting thread. */
  markClosed(): void {
    Atomics.store(this.#ints, CLOSED, 1);
    Atomics.add(this.#ints, COMMITS, 1);
    Atomics.notify(this.#ints, COMMITS);
  }

  /** Owner: records why the log failed, for the Workers' errors. */
  poison(error: unknown): void {
    if (Atomics.load(this.#ints, POISONED) !== 0) return;
    const message = error instanceof Error ? error.message : String(error);
    const bytes = new TextEncoder().encode(message).subarray(0, ERROR_TEXT_BYTES);
    this.#text.set(bytes);
    Atomics.store(this.#ints, ERROR_LENGTH, bytes.length);
    Atomics.store(this.#ints, POISONED, 1);
    Atomics.add(this.#ints, COMMITS, 1);
    Atomics.notify(this.#ints, COMMITS);
  }

  /** The owner's failure as an error for this thread, or `undefined`. */
  failure(what: string): Error | undefined {
    if (Atomics.load(this.#ints, POISONED) === 0) return undefined;
    const length = Atomics.load(this.#ints, ERROR_LENGTH);
    const message = new TextDecoder().decode(this.#text.slice(0, length));
    return new PoisonedError(`Cannot ${what}: the log failed in its owner: ${message}`);
  }

  /** Throws `ClosedError` once the owner closed the log. */
  assertOpen(what: string): void {
    if (this.closed) throw new ClosedError(`Cannot ${what}: the log is closed`);
  }

  /** Durable commits so far (a number to wait on with {@linkcode SharedControl.waitCommit}). */
  get commits(): number {
    return Atomics.load(this.#ints, COMMITS);
  }

  /** Resolves after the next durable commit (or close), or after `timeoutMs`. */
  async waitCommit(seen: number, timeoutMs: number): Promise<void> {
    const waiting = Atomics.waitAsync(this.#ints, COMMITS, seen, timeoutMs);
    if (waiting.async) await waiting.value;
  }

  get committedUntilAddress(): number {
    return this.#floats[F_COMMITTED_UNTIL];
  }
  get beginAddress(): number {
    return this.#floats[F_BEGIN];
  }

  /** Owner: publishes the durable range after a commit and wakes waiting threads. */
  publishCommit(beginAddress: number, committedUntilAddress: number): void {
    this.#floats[F_BEGIN] = beginAddress;
    this.#floats[F_COMMITTED_UNTIL] = committedUntilAddress;
    Atomics.add(this.#ints, COMMITS, 1);
    Atomics.notify(this.#ints, COMMITS);
  }

  /** Owner: publishes the promised ballot (single writer). */
  setPromise(ballot: Ballot): void {
    const ints = this.#ints;
    Atomics.add(ints, PROMISE_SEQUENCE, 1);
    this.#floats[F_PROMISED_ROUND] = ballot.round;
    Atomics.store(ints, PROMISED_NODE, ballot.node);
    Atomics.store(ints, HAS_PROMISE, 1);
    Atomics.add(ints, PROMISE_SEQUENCE, 1);
  }

  /**
   * Compares the ballot `(round, node)` with the promised one, as `compareBallots` does:
   * negative if lower; positive when nothing is promised. Makes no object: every accept asks.
   */
  compareWithPromise(round: number, node: number): number {
    const ints = this.#ints;
    if (this.solo) {
      // Only this thread writes the promise: no sequence to check.
      if (ints[HAS_PROMISE] === 0) return 1;
      const promisedRound = this.#floats[F_PROMISED_ROUND];
      return round !== promisedRound ? round - promisedRound : node - (ints[PROMISED_NODE] >>> 0);
    }
    if (Atomics.load(ints, HAS_PROMISE) === 0) return 1; // once set, never unset
    for (;;) {
      const before = Atomics.load(ints, PROMISE_SEQUENCE);
      if ((before & 1) !== 0) continue;
      const promisedRound = this.#floats[F_PROMISED_ROUND];
      const promisedNode = Atomics.load(ints, PROMISED_NODE) >>> 0;
      if (Atomics.load(ints, PROMISE_SEQUENCE) === before) {
        return round !== promisedRound ? round - promisedRound : node - promisedNode;
      }
    }
  }

  /** The promised ballot (the durable one, or a newer one being made durable). */
  promise(): Ballot | undefined {
    const ints = this.#ints;
    if (Atomics.load(ints, HAS_PROMISE) === 0) return undefined; // once set, never unset
    for (;;) {
      const before = Atomics.load(ints, PROMISE_SEQUENCE);
      if ((before & 1) !== 0) continue;
      const round = this.#floats[F_PROMISED_ROUND];
      const node = Atomics.load(ints, PROMISED_NODE) >>> 0;
      if (Atomics.load(ints, PROMISE_SEQUENCE) === before) return { round, node };
    }
  }
}

/** Checks a ballot argument: `{ round, node }`, a safe integer and a 32-bit node. */
export function checkBallot(what: string, ballot: unknown): Ballot {
  const round = (ballot as Partial<Ballot> | null)?.round;
  const node = (ballot as Partial<Ballot> | null)?.node;
  checkBallotFields(what, ballot, round, node);
  return { round: round as number, node: node as number };
}

/**
 * {@linkcode checkBallot} of fields the caller read once (`ballot?.round`, `ballot?.node`), for
 * the accept path, which keeps them as numbers rather than make an object per accept.
 */
export function checkBallotFields(
  what: string,
  ballot: unknown,
  round: unknown,
  node: unknown,
): void {
  if (typeof ballot !== "object" || ballot === null) {
    throw new InvalidArgumentError(`Cannot ${what}: ballot must be { round, node }`);
  }
  checkIndex(what, "ballot.round", round);
  checkIndex(what, "ballot.node", node);
  if ((node as number) > 0xffff_ffff) {
    throw new InvalidArgumentError(`Cannot ${what}: ballot.node must be below 2^32, got ${node}`);
  }
}

/** Describes a ballot for messages. */
export function describeBallot(b: Ballot): string {
  return `(${b.round}, ${b.node})`;
}

// ---- the shared slots: accept and read, in any thread ---------------------------------------

/** Result of {@linkcode SharedSlots.accept}. */
export const AcceptResult = { accepted: 0, full: 1 } as const;

/** One thread's handle on the shared slot index, region and epochs. */
export class SharedSlots {
  readonly index: SlotIndex;
  readonly region: MutableRegion;
  readonly epochs: EpochTable;
  readonly control: SharedControl;
  readonly epochBuffer: SharedArrayBuffer;
  #onMove = (slot: number, from: number, to: number): boolean => {
    const position = this.index.position(slot, false);
    if (position < 0) return false;
    const expected = acceptedWord(from);
    return Atomics.compareExchange(this.index.words, position, expected, acceptedWord(to)) ===
      expected;
  };

  /** Set by {@linkcode SharedSlots.release}: the index and region buffers serve another log. */
  #released = false;

  /**
   * Creates the shared state (owner), from buffers a closed log left (see shared_buffers.ts) when
   * there are, or attaches to a handle's buffers (Worker).
   */
  constructor(
    regionCapacityBytes: number,
    handle?: ConsensusLogHandle,
    indexSizeBytes: number = INDEX_SIZE_BYTES_DEFAULT,
  ) {
    this.epochBuffer = handle?.epochs ?? new SharedArrayBuffer(EPOCH_WORDS * 4);
    this.epochs = new EpochTable(new Int32Array(this.epochBuffer), handle === undefined);
    this.epochs.register();
    if (handle === undefined) {
      const index = takeSharedBuffer("index", indexSizeBytes);
      this.index = new SlotIndex(index, indexSizeBytes, true);
      const data = takeSharedBuffer("region", regionBytesFor(regionCapacityBytes));
      this.region = new MutableRegion(regionCapacityBytes, this.epochs, { data });
    } else {
      this.index = new SlotIndex(handle.index, indexSizeBytes);
      this.region = new MutableRegion(regionCapacityBytes, this.epochs, handle.region);
    }
    this.control = new SharedControl(handle?.control);
    if (handle === undefined) {
      // Until the owner shares the log (see share): no other thread can see any of it.
      this.epochs.beginSolo();
      this.index.solo = true;
      this.control.solo = true;
    }
  }

  /**
   * Owner: from now on other threads may see the index, region, control and epoch table, so
   * every access goes through `Atomics` (before, plain loads and stores served: no fences).
   * Call before the buffers leave this thread.
   */
  share(): void {
    this.epochs.share();
    this.index.solo = false;
    this.control.solo = false;
  }

  /**
   * Owner, after its log closed, if it never shared these buffers: hands the index and region
   * data to the next log this thread opens. Reads through this object find nothing from then on.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    keepSharedBuffer("index", this.index.buffer, this.index.sizeBytes);
    keepSharedBuffer("region", this.region.buffers.data, 0);
  }

  /** Ends this thread's part: seals its region chunk and frees its epoch slot. */
  detach(): void {
    this.epochs.enter();
    try {
      this.region.detach();
    } finally {
      this.epochs.exit();
    }
    this.epochs.release();
  }

  /**
   * Accepts `value` for `slot` under the ballot `(round, node)` (already checked), if it is not
   * lower than the promised one nor the slot's held one, whatever other threads do meanwhile.
   * Returns `AcceptResult.full` when the region has no room; throws `BallotError` or
   * `AlreadyCommittedError`. `checkPromise` false skips the promise (recovery's replay).
   */
  accept(
    what: string,
    slot: number,
    round: number,
    node: number,
    value: Uint8Array,
    checkPromise = true,
  ): number {
    const { index, region, epochs } = this;
    epochs.enter();
    let mine = -1;
    try {
      const position = index.position(slot, true);
      const words = index.words;
      let word = index.wordAt(position);
      // A decided slot says so first: the proposer should learn the committed value.
      if (word === SLOT_COMMITTED || word < 0) throw new AlreadyCommittedError(slot, what);
      if (checkPromise && this.control.compareWithPromise(round, node) < 0) {
        const promised = this.control.promise()!;
        throw new BallotError(
          `Cannot ${what} slot ${slot}: ballot ${
            describeBallot({ round, node })
          } is lower than the promised ${describeBallot(promised)}`,
        );
      }
      for (;;) {
        if (word === SLOT_COMMITTED || word < 0) throw new AlreadyCommittedError(slot, what);
        if (word !== SLOT_EMPTY) {
          const held = wordOffset(word);
          const heldRound = region.roundAt(held);
          const heldNode = region.nodeAt(held);
          if (round !== heldRound ? round < heldRound : node < heldNode) {
            throw new BallotError(
              `Cannot ${what} slot ${slot}: ballot ${
                describeBallot({ round, node })
              } is lower than the accepted ${describeBallot({ round: heldRound, node: heldNode })}`,
            );
          }
        }
        if (mine < 0) {
          mine = region.put(slot, round, node, value, this.#onMove);
          if (mine < 0) return AcceptResult.full;
        }
        let found: number;
        if (epochs.solo) {
          // No other thread can change the word before the owner shares the log, but the put's
          // compaction may have moved the held entry: a plain compare, then a plain store.
          found = words[position];
          if (found === word) words[position] = acceptedWord(mine);
        } else found = Atomics.compareExchange(words, position, word, acceptedWord(mine));
        if (found === word) {
          mine = -1;
          if (word !== SLOT_EMPTY) region.free(wordOffset(word));
          return AcceptResult.accepted;
        }
        word = found; // another thread changed the slot: compare against what it holds now
      }
    } finally {
      if (mine >= 0) region.free(mine);
      epochs.exit();
    }
  }

  /**
   * Reads `slot`: an accepted (or frozen) entry from the region, or a committed one through
   * `readRecord(address)` (the record's payload, or `undefined` if truncated meanwhile).
   */
  read(
    slot: number,
    readRecord: (address: number) => Uint8Array | undefined,
    copy = true,
  ): ConsensusEntry | undefined {
    if (this.#released) return undefined; // e.g. a generator of the closed log resumed
    const { index, region, epochs } = this;
    epochs.enter();
    try {
      const position = index.position(slot, false);
      if (position < 0) return undefined;
      const word = index.wordAt(position);
      if (word === SLOT_EMPTY) return undefined;
      if (word !== SLOT_COMMITTED) {
        const offset = wordOffset(word);
        return {
          slot,
          ballot: { round: region.roundAt(offset), node: region.nodeAt(offset) },
          committed: false,
          value: region.valueAt(offset).slice(),
        };
      }
      const payload = readRecord(index.addressAt(position));
      return payload === undefined ? undefined : entryFromRecord(payload, true, copy);
    } finally {
      epochs.exit();
    }
  }

  /** Every accepted entry (frozen ones included), in accept order. */
  *uncommitted(): Generator<ConsensusEntry> {
    const found: Array<{ sequence: number; slot: number }> = [];
    this.epochs.enter();
    try {
      this.index.forEach((slot, word) => {
        if (word !== SLOT_COMMITTED) {
          found.push({ sequence: this.region.sequenceAt(wordOffset(word)), slot });
        }
      });
    } finally {
      this.epochs.exit();
    }
    found.sort((a, b) => a.sequence - b.sequence);
    for (const { slot } of found) {
      const entry = this.read(slot, () => undefined);
      if (entry && !entry.committed) yield entry;
    }
  }

  /** Whether `slot` holds anything (accepted, frozen or committed). */
  has(slot: number): boolean {
    this.epochs.enter();
    try {
      return this.index.wordOf(slot) !== SLOT_EMPTY;
    } finally {
      this.epochs.exit();
    }
  }

  /** The full-region error for an accept of `valueBytes`. */
  fullError(slot: number, valueBytes: number): RegionFullError {
    return new RegionFullError(
      `Cannot accept slot ${slot}: the mutable region holds ${this.region.liveBytes} of ${this.region.capacityBytes} bytes, no room for ${valueBytes} more`,
    );
  }
}

/** Bytes of the per-entry header inside a tail record: slot, round, node, type. */
export const ENTRY_HEADER_BYTES = 24;
/** Record type of a commit. */
export const TYPE_COMMITTED = 1;
/** Record type of a journaled accept. */
export const TYPE_ACCEPTED = 2;

/**
 * Writes the entry header of a tail record (slot, round, node, type) at byte `at`, a multiple of
 * 8, of a buffer seen as `doubles` and `words`: what `entryFromRecord` decodes.
 */
export function writeEntryHeader(
  doubles: Float64Array,
  words: Uint32Array,
  at: number,
  slot: number,
  round: number,
  node: number,
  type: number,
): void {
  const d = at >>> 3;
  doubles[d] = slot;
  doubles[d + 1] = round;
  words[(at >>> 2) + 4] = node;
  words[(at >>> 2) + 5] = type;
}

/** Decodes a tail record's payload into an entry (the value copied, or a view if `copy` is false). */
export function entryFromRecord(
  payload: Uint8Array,
  committed: boolean,
  copy = true,
): ConsensusEntry {
  const view = new DataView(payload.buffer, payload.byteOffset, ENTRY_HEADER_BYTES);
  return {
    slot: view.getFloat64(0, true),
    ballot: { round: view.getFloat64(8, true), node: view.getUint32(16, true) },
    committed,
    value: copy ? payload.slice(ENTRY_HEADER_BYTES) : payload.subarray(ENTRY_HEADER_BYTES),
  };
}

/**
 * The committed entry whose record payload starts at byte `start` of `segment` (a fast-path
 * read: {@linkcode payloadOffset} found it valid): header fields read from the segment's own
 * typed arrays, the value a view of the mapping (or a copy with `copy`).
 */
export function entryInSegment(segment: Segment, start: number, copy: boolean): ConsensusEntry {
  const doubles = segmentDoubles(segment);
  const { bytes, words } = segment.view;
  const d = start >>> 3;
  const valueLength = words[(start >>> 2) - 3] - ENTRY_HEADER_BYTES;
  const value = new Uint8Array(
    bytes.buffer,
    bytes.byteOffset + start + ENTRY_HEADER_BYTES,
    valueLength,
  );
  return {
    slot: doubles[d],
    ballot: { round: doubles[d + 1], node: words[(start >>> 2) + 4] },
    committed: true,
    value: copy ? value.slice() : value,
  };
}

/** Where {@linkcode followCommits} reads committed records, in the owner or in a Worker. */
export interface CommitSource {
  /** The log's begin address now. */
  beginAddress(): number;
  /** The durable end now. */
  committedUntilAddress(): number;
  /** Whether the log (or this thread's part) is closed. */
  closed(): boolean;
  /** The entry records of `[from, to)` (commit markers and padding skipped). */
  entries(from: number, to: number): Iterable<LogEntry>;
  /**
   * Called before `committedUntilAddress()` is read; the function it returns resolves after the
   * next durable commit (or close) following that call, so no commit is missed in between.
   */
  armWait(): () => Promise<void>;
}

/**
 * Committed entries with a slot at or above `from`, in commit order: those durable now, then each
 * new one as it becomes durable. Ends when `signal` aborts or the source closes.
 */
export async function* followCommits(
  source: CommitSource,
  from: number,
  signal: AbortSignal | undefined,
): AsyncGenerator<ConsensusEntry> {
  let cursor = source.beginAddress();
  const aborted = new Promise<void>((wake) => {
    signal?.addEventListener("abort", () => wake(), { once: true });
  });
  while (!signal?.aborted && !source.closed()) {
    const wait = source.armWait();
    const until = source.committedUntilAddress();
    for (const { address, nextAddress, value: payload } of source.entries(cursor, until)) {
      cursor = nextAddress;
      if (
        recordType(payload) === TYPE_COMMITTED && recordSlot(payload) >= from &&
        address >= source.beginAddress()
      ) {
        yield entryFromRecord(payload, true);
      }
      if (signal?.aborted || source.closed()) return;
    }
    cursor = Math.max(cursor, until);
    if (cursor < source.committedUntilAddress()) continue;
    await Promise.race([wait(), aborted]);
  }
}

/** Eight bytes to read a float64 through (little-endian, as the typed-array views elsewhere). */
const SLOT_SCRATCH = new Float64Array(1);
const SLOT_SCRATCH_BYTES = new Uint8Array(SLOT_SCRATCH.buffer);

/**
 * Slot of a tail record's payload. Reads through a scratch float instead of a `DataView` and a
 * result object per record: recovery calls it once per record, and those two allocations were a
 * sixth of a 1M-record replay in Deno's profile.
 */
export function recordSlot(payload: Uint8Array): number {
  for (let i = 0; i < 8; i++) SLOT_SCRATCH_BYTES[i] = payload[i];
  return SLOT_SCRATCH[0];
}

/** Type of a tail record's payload ({@linkcode TYPE_COMMITTED} or {@linkcode TYPE_ACCEPTED}). */
export function recordType(payload: Uint8Array): number {
  return (payload[20] | (payload[21] << 8) | (payload[22] << 16) | (payload[23] << 24)) >>> 0;
}

// ---- commit requests: a Worker's commit, carried out by the owner --------------------------

/** Kind of a request. */
export const RequestKind = { commit: 1, journal: 2 } as const;

const REQUEST_CELLS = 1024; // a power of two
// Header words (Int32), then per cell: sequence (Int32), kind (Int32), slot (Float64).
const TICKETS = 0; // next ticket
const DOORBELL = 1; // bumped after a request is ready
const DONE = 2; // every ticket below this is durable
const HEADER_WORDS = 4;
const REQUEST_BYTES = (HEADER_WORDS + 2 * REQUEST_CELLS) * 4 + REQUEST_CELLS * 8;

/**
 * A multi-producer ring of requests to the owner (Vyukov's bounded queue): a cell's sequence
 * number says whose turn it is. A producer takes a ticket `t` with `Atomics.add`, waits
 * (asynchronously) until its cell's sequence is `t`, writes the request and sets it to `t + 1`.
 * The owner takes cells in ticket order, hands each back at once (sequence `t + cells`), carries
 * the requests out in its next group commit, and then advances `DONE` past them; producers wait
 * on `DONE`. No lock: a slow producer delays only the requests behind its own ticket.
 */
export class CommitRequests {
  readonly buffer: SharedArrayBuffer;
  #header: Int32Array;
  #sequences: Int32Array;
  #kinds: Int32Array;
  #slots: Float64Array;
  #head = 0; // owner: next ticket to take

  /** Creates the ring (owner), or attaches to its `buffer`. */
  constructor(buffer?: SharedArrayBuffer) {
    this.buffer = buffer ?? new SharedArrayBuffer(REQUEST_BYTES);
    this.#header = new Int32Array(this.buffer, 0, HEADER_WORDS);
    this.#sequences = new Int32Array(this.buffer, HEADER_WORDS * 4, REQUEST_CELLS);
    this.#kinds = new Int32Array(this.buffer, (HEADER_WORDS + REQUEST_CELLS) * 4, REQUEST_CELLS);
    this.#slots = new Float64Array(
      this.buffer,
      (HEADER_WORDS + 2 * REQUEST_CELLS) * 4,
      REQUEST_CELLS,
    );
    if (buffer === undefined) {
      for (let cell = 0; cell < REQUEST_CELLS; cell++) Atomics.store(this.#sequences, cell, cell);
    }
  }

  /**
   * Producer: enqueues requests and resolves once the owner made them durable. Rejects with the
   * owner's failure, or `ClosedError` when it closed first.
   */
  async submit(
    what: string,
    kind: number,
    slots: readonly number[],
    control: SharedControl,
  ): Promise<void> {
    let last = 0;
    for (const slot of slots) {
      const ticket = Atomics.add(this.#header, TICKETS, 1);
      const cell = ticket & (REQUEST_CELLS - 1);
      for (;;) {
        const sequence = Atomics.load(this.#sequences, cell);
        if (sequence === ticket) break;
        this.#check(what, control);
        const waiting = Atomics.waitAsync(this.#sequences, cell, sequence, 100);
        if (waiting.async) await waiting.value;
      }
      this.#kinds[cell] = kind;
      this.#slots[cell] = slot;
      Atomics.store(this.#sequences, cell, (ticket + 1) | 0);
      Atomics.add(this.#header, DOORBELL, 1);
      Atomics.notify(this.#header, DOORBELL, 1);
      last = ticket;
    }
    if (slots.length === 0) return;
    for (;;) {
      const done = Atomics.load(this.#header, DONE);
      if (((done - last) | 0) > 0) return;
      this.#check(what, control);
      const waiting = Atomics.waitAsync(this.#header, DONE, done, 100);
      if (waiting.async) await waiting.value;
    }
  }

  #check(what: string, control: SharedControl): void {
    const failure = control.failure(what);
    if (failure) throw failure;
    control.assertOpen(what);
  }

  /** Owner: the doorbell's value, to wait on with {@linkcode CommitRequests.waitDoorbell}. */
  get doorbell(): number {
    return Atomics.load(this.#header, DOORBELL);
  }

  /** Owner: resolves when a producer rings (or after `timeoutMs`). */
  async waitDoorbell(seen: number, timeoutMs: number): Promise<void> {
    const waiting = Atomics.waitAsync(this.#header, DOORBELL, seen, timeoutMs);
    if (waiting.async) await waiting.value;
  }

  /** Owner: wakes its own doorbell wait (used at close). */
  ring(): void {
    Atomics.add(this.#header, DOORBELL, 1);
    Atomics.notify(this.#header, DOORBELL);
  }

  /**
   * Owner: takes every ready request in ticket order, calling `take(kind, slot)`; returns the
   * ticket to mark done once they are durable, or -1 if there were none.
   */
  drain(take: (kind: number, slot: number) => void): number {
    let head = this.#head;
    const first = head;
    for (;;) {
      const cell = head & (REQUEST_CELLS - 1);
      if (Atomics.load(this.#sequences, cell) !== ((head + 1) | 0)) break;
      take(this.#kinds[cell], this.#slots[cell]);
      Atomics.store(this.#sequences, cell, (head + REQUEST_CELLS) | 0);
      Atomics.notify(this.#sequences, cell);
      head = (head + 1) | 0;
    }
    this.#head = head;
    return head === first ? -1 : head;
  }

  /** Owner: every ticket below `ticket` is durable. */
  markDone(ticket: number): void {
    const header = this.#header;
    if (((ticket - Atomics.load(header, DONE)) | 0) > 0) {
      Atomics.store(header, DONE, ticket);
      Atomics.notify(header, DONE);
    }
  }
}
