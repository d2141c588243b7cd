/**
 * The hard state of a consensus log: the promised ballot (Paxos phase 1), Raft's term and vote,
 * and the slot below which the log was truncated. An acceptor must have these on disk before it
 * answers, so every change is written and synced before the call resolves.
 *
 * Stored like the checkpoint: the file `state`, two 4 KiB slots written alternately (sequence
 * number N goes to slot N % 2) so a torn write only ever damages the slot being replaced; the
 * newest valid slot wins. The file is created whole (temp file, sync, rename, directory sync).
 *
 * Slot layout (little-endian): 0 CRC-32 of bytes 4..64 · 4 magic `HLHS` · 8 version · 12 log id ·
 * 16 sequence · 24 promised round (-1: none) · 32 promised node · 36 flags (bit 0: has vote) ·
 * 40 term · 48 vote · 56 truncated-below slot.
 *
 * @module
 */
import { join } from "node:path";
import { checksum } from "./checksum.ts";
import { FORMAT_VERSION } from "./constants.ts";
import type { Device, DeviceFile } from "./device.ts";
import { CorruptionError, PoisonedError } from "./errors.ts";

const MAGIC = 0x5348_4c48; // "HLHS"
const SLOT_BYTES = 4096;
const USED_BYTES = 64;
const FLAG_HAS_VOTE = 1;

/**
 * What {@linkcode HardStateStore.open} reads into, made once per thread: a fresh 8 KiB buffer cost
 * 5–8 µs per open (allocation and the collections it brings on). Decoded records keep no view.
 */
let readScratch: Uint8Array | undefined;

/** The file name of the hard state. */
export const HARD_STATE_FILE_NAME = "state";

/**
 * A ballot (Paxos proposal number): compared by round, then node, so two proposers never share
 * one.
 */
export interface Ballot {
  /** The round, raised by a proposer that starts over; non-negative integer. */
  readonly round: number;
  /** The proposing node's id, breaking ties between equal rounds; an integer below 2^32. */
  readonly node: number;
}

/** Raft's persistent state: what a server must have on disk before it answers an RPC. */
export interface RaftHardState {
  /** The latest term the server has seen; never decreases. */
  readonly term: number;
  /** The candidate voted for in `term`, or `undefined` if none yet; fixed once cast. */
  readonly vote: number | undefined;
}

/** Everything in the hard-state record. */
export interface HardState {
  sequence: number;
  promised: Ballot | undefined;
  term: number;
  vote: number | undefined;
  truncatedBelowSlot: number;
}

/** The record of a log that never wrote one. */
export const INITIAL_HARD_STATE: HardState = {
  sequence: 0,
  promised: undefined,
  term: 0,
  vote: undefined,
  truncatedBelowSlot: 0,
};

/** Negative, zero or positive as `a` is lower than, equal to or higher than `b`. */
export function compareBallots(a: Ballot, b: Ballot): number {
  return a.round !== b.round ? a.round - b.round : a.node - b.node;
}

function encode(logId: number, state: HardState): Uint8Array {
  const slot = new Uint8Array(SLOT_BYTES);
  const view = new DataView(slot.buffer);
  view.setUint32(4, MAGIC, true);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, logId, true);
  view.setFloat64(16, state.sequence, true);
  view.setFloat64(24, state.promised ? state.promised.round : -1, true);
  view.setUint32(32, state.promised ? state.promised.node : 0, true);
  view.setUint32(36, state.vote === undefined ? 0 : FLAG_HAS_VOTE, true);
  view.setFloat64(40, state.term, true);
  view.setFloat64(48, state.vote ?? 0, true);
  view.setFloat64(56, state.truncatedBelowSlot, true);
  view.setUint32(0, checksum(slot.subarray(4, USED_BYTES), 0), true);
  return slot;
}

/** Decodes a slot, or `undefined` if it does not validate. */
export function decodeHardState(logId: number, slot: Uint8Array): HardState | undefined {
  if (slot.length < USED_BYTES) return undefined;
  const view = new DataView(slot.buffer, slot.byteOffset, USED_BYTES);
  if (view.getUint32(4, true) !== MAGIC) return undefined;
  if (view.getUint32(0, true) !== checksum(slot.subarray(4, USED_BYTES), 0)) return undefined;
  if (view.getUint32(8, true) !== FORMAT_VERSION || view.getUint32(12, true) !== logId) {
    return undefined;
  }
  const round = view.getFloat64(24, true);
  const hasVote = (view.getUint32(36, true) & FLAG_HAS_VOTE) !== 0;
  return {
    sequence: view.getFloat64(16, true),
    promised: round < 0 ? undefined : { round, node: view.getUint32(32, true) },
    term: view.getFloat64(40, true),
    vote: hasVote ? view.getFloat64(48, true) : undefined,
    truncatedBelowSlot: view.getFloat64(56, true),
  };
}

/** The hard-state file of one log. */
export class HardStateStore {
  #device: Device;
  #dir: string;
  #logId: number;
  #syncs: boolean;
  #file: DeviceFile | undefined;
  #state: HardState;
  #queue: Promise<unknown> = Promise.resolve();
  #poison: unknown = undefined;

  private constructor(device: Device, dir: string, logId: number, syncs: boolean) {
    this.#device = device;
    this.#dir = dir;
    this.#logId = logId;
    this.#syncs = syncs;
    this.#state = { ...INITIAL_HARD_STATE };
  }

  /** Reads the record in `dir` (or starts from the initial one if the file does not exist). */
  static open(device: Device, dir: string, logId: number, syncs: boolean): HardStateStore {
    const store = new HardStateStore(device, dir, logId, syncs);
    const path = join(dir, HARD_STATE_FILE_NAME);
    // Left by a write that died before its rename. Looked for first: it is almost never there,
    // and removing a missing file cost 46 µs per open in Deno (the NotFound error it builds).
    const temp = join(dir, `${HARD_STATE_FILE_NAME}.tmp`);
    if (device.exists(temp)) device.remove(temp);
    if (!device.exists(path)) return store;
    const file = device.open(path);
    const bytes = readScratch ??= new Uint8Array(2 * SLOT_BYTES);
    // Bytes past `count` are a previous file's: only slots read whole are decoded.
    const count = file.read(bytes, 0);
    const slots = [0, 1]
      .filter((i) => count >= (i + 1) * SLOT_BYTES)
      .map((i) => decodeHardState(logId, bytes.subarray(i * SLOT_BYTES, (i + 1) * SLOT_BYTES)))
      .filter((s): s is HardState => s !== undefined);
    if (slots.length === 0) {
      file.close();
      throw new CorruptionError(path, 0, "no valid hard-state slot");
    }
    store.#state = slots.reduce((a, b) => (b.sequence > a.sequence ? b : a));
    store.#file = file;
    return store;
  }

  /** The current record. */
  get state(): Readonly<HardState> {
    return this.#state;
  }

  /**
   * Applies `change` to the record and makes it durable; updates are serialized, and `change`
   * sees every earlier update (it may throw to refuse, changing nothing).
   */
  update(change: (current: HardState) => Partial<HardState> | undefined): Promise<HardState> {
    const next = this.#queue.then(async () => {
      if (this.#poison !== undefined) {
        throw new PoisonedError("Cannot update hard state: an earlier write or sync failed", {
          cause: this.#poison,
        });
      }
      const patch = change(this.#state);
      if (patch === undefined) return this.#state;
      const state = { ...this.#state, ...patch, sequence: this.#state.sequence + 1 };
      try {
        await this.#write(state);
      } catch (error) {
        this.#poison = error; // never retry a failed sync; a reopen reads what is durable
        throw error;
      }
      this.#state = state;
      return state;
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  async #write(state: HardState): Promise<void> {
    const bytes = encode(this.#logId, state);
    if (this.#file === undefined) {
      // First record: create the file whole, so an existing file always holds a valid slot.
      const path = join(this.#dir, HARD_STATE_FILE_NAME);
      const tempPath = `${path}.tmp`;
      const file = this.#device.open(tempPath, { create: true, exclusive: true });
      try {
        file.allocate(0, 2 * SLOT_BYTES);
        file.write(bytes, (state.sequence % 2) * SLOT_BYTES);
        if (this.#syncs) await file.sync("full");
        this.#device.rename(tempPath, path);
        if (this.#syncs) await this.#device.syncDirectory(this.#dir);
      } catch (error) {
        file.close();
        throw error;
      }
      this.#file = file;
      return;
    }
    this.#file.write(bytes, (state.sequence % 2) * SLOT_BYTES);
    if (this.#syncs) await this.#file.sync("data");
  }

  /** Waits for pending updates and closes the file. */
  async close(): Promise<void> {
    await this.#queue;
    this.#file?.close();
    this.#file = undefined;
  }
}
