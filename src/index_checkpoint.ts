/**
 * The index checkpoint: the slot index of a consensus log as of a committed address, so a reopen
 * finds committed slots without scanning the log, and verifies only the records written after it.
 * It is an accelerator: if it is missing, stale or damaged, recovery scans from the begin address.
 *
 * A reopen does not load it: the committed pairs stay in the file, and the slot index takes a
 * leaf's 64 slots from them when a slot of that leaf is first looked up (see
 * `SlotIndex.attachBase`), so that a log of 1M slots opens to its first read without 1M stores.
 * The pairs are therefore read and checked in chunks, each with its own CRC, as they are first
 * used; only the header, the journaled accepts and the chunk directory are read at open.
 *
 * File `index`, version 2 (written whole: temp file, sync, rename, directory sync):
 * - a 64-byte header: 0 CRC-32 of header bytes 4..64, then the journal, then the directory ·
 *   4 magic `HLIX` · 8 version · 12 log id · 16 covered address (float64) · 24 committed count
 *   (float64) · 32 journaled count (float64) · 40 pairs per chunk (uint32) · 48 the last committed
 *   slot (float64; −1 if none) · 56 zeros;
 * - the committed pairs in slot order, 16 bytes each: slot, then the address of its commit record
 *   (float64s);
 * - the journaled accepts, 16 bytes each: slot, then −(address + 1) of its latest accept record;
 * - the directory, 24 bytes per chunk of committed pairs: the chunk's first slot and least address
 *   (float64s), the CRC-32 of its bytes (uint32), 0.
 *
 * Version 1, still read: the same header up to 24 (the count of all pairs there), one CRC-32 of
 * bytes 4..end, then the committed pairs in slot order followed by the journaled accepts.
 *
 * @module
 */
import { join } from "node:path";
import { checksum } from "./checksum.ts";
import type { Device, DeviceFile } from "./device.ts";

const MAGIC = 0x5849_4c48; // "HLIX"
const VERSION = 2;
const VERSION_PAIRS_ONLY = 1;
const HEADER_BYTES = 64;
const PAIR_BYTES = 16;
const DIRECTORY_ENTRY_BYTES = 24;
/**
 * Committed pairs per chunk (64 KiB): a first lookup reads and checks one chunk (a `pread` of
 * 15 µs and a CRC of 1–3 µs here), where checking a whole checkpoint of 1M slots took 2.4–5.6 ms.
 */
export const CHUNK_PAIRS = 4096;

/** The file name of the index checkpoint. */
export const INDEX_FILE_NAME = "index";

/** Bytes of the checkpoint's header: committed pairs placed this far into their buffer are not copied. */
export const INDEX_CHECKPOINT_HEADER_BYTES = HEADER_BYTES;

/** Bytes the checksums of a checkpoint cover between pauses (about half a millisecond). */
const CHECKSUM_STEP_BYTES = 4 * 1024 * 1024;
/** Bytes of a checkpoint written per call. */
const WRITE_STEP_BYTES = 1024 * 1024;

/** Chunks a checkpoint keeps read (the last ones used): a lookup needs two at most. */
const CHUNKS_KEPT = 4;
/** Chunk buffers of released checkpoints kept for the next ones this thread opens. */
const CHUNK_BUFFERS_POOLED = 8;
/**
 * Buffers of {@linkcode CHUNK_PAIRS} pairs, handed from released checkpoints to the next: a new
 * 64 KiB typed array cost 26–29 µs here (fresh pages), a third of a reopened log's first read.
 */
const chunkBuffers: Float64Array[] = [];

/**
 * The committed pairs of a checkpoint in slot order, read and checked a chunk at a time as they
 * are used, and at most {@linkcode CHUNKS_KEPT} chunks kept: read only pairs of chunks
 * {@linkcode CheckpointPairs.verify} accepted, before any other lookup (the chunk directory,
 * checked at open, is trusted throughout).
 */
export class CheckpointPairs {
  /** How many pairs. */
  readonly count: number;
  /** The last pair's slot, −1 if none. */
  readonly lastSlot: number;
  readonly #chunkPairs: number;
  readonly #firstSlots: Float64Array;
  readonly #leastAddresses: Float64Array;
  /** Per chunk: 1 once found damaged or unreadable. */
  readonly #damaged: Uint8Array;
  /** Reads and checks chunk `chunk` into `into` (its bytes exactly): false if damaged. */
  readonly #load: (chunk: number, into: Uint8Array) => boolean;
  /** The chunks kept: their numbers (−1: none), pairs, and when each was last used. */
  readonly #keptChunk = new Float64Array(CHUNKS_KEPT).fill(-1);
  readonly #keptPairs: Array<Float64Array | undefined> = new Array(CHUNKS_KEPT);
  readonly #keptUse = new Float64Array(CHUNKS_KEPT);
  #uses = 0;

  constructor(
    count: number,
    lastSlot: number,
    chunkPairs: number,
    directory: { firstSlots: Float64Array; leastAddresses: Float64Array },
    load: (chunk: number, into: Uint8Array) => boolean,
  ) {
    this.count = count;
    this.lastSlot = lastSlot;
    this.#chunkPairs = chunkPairs;
    this.#firstSlots = directory.firstSlots;
    this.#leastAddresses = directory.leastAddresses;
    this.#damaged = new Uint8Array(directory.firstSlots.length);
    this.#load = load;
  }

  /** Pairs per chunk (each read and checked as a whole). */
  get chunkPairs(): number {
    return this.#chunkPairs;
  }

  /** The first slot of the pairs (−1 if none). */
  get firstSlot(): number {
    return this.count === 0 ? -1 : this.#firstSlots[0];
  }

  /** The slot of pair `i`, whose chunk {@linkcode CheckpointPairs.verify} just accepted. */
  slotAt(i: number): number {
    const chunk = Math.floor(i / this.#chunkPairs);
    return this.#kept(chunk)[2 * (i - chunk * this.#chunkPairs)];
  }

  /** The address of pair `i`, whose chunk {@linkcode CheckpointPairs.verify} just accepted. */
  addressAt(i: number): number {
    const chunk = Math.floor(i / this.#chunkPairs);
    return this.#kept(chunk)[2 * (i - chunk * this.#chunkPairs) + 1];
  }

  /**
   * The index of the first pair whose slot is `slot` or more (`count` if none), checking the one
   * chunk it searches; −1 if that chunk is damaged.
   */
  lowerBound(slot: number): number {
    const firsts = this.#firstSlots;
    // The first chunk that starts at `slot` or later: the pair sought lies in the chunk before
    // it, or starts that chunk.
    let low = 0;
    let high = firsts.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (firsts[middle] < slot) low = middle + 1;
      else high = middle;
    }
    if (low === 0) return 0;
    const chunk = low - 1;
    const pairs = this.chunk(chunk);
    if (pairs === null) return -1;
    let from = 0;
    let to = this.countOf(chunk);
    while (from < to) {
      const middle = (from + to) >>> 1;
      if (pairs[2 * middle] < slot) from = middle + 1;
      else to = middle;
    }
    return chunk * this.#chunkPairs + from;
  }

  /**
   * Reads and checks the chunks holding pairs `[from, to)` (at most {@linkcode CHUNKS_KEPT}):
   * false if one is damaged.
   */
  verify(from: number, to: number): boolean {
    if (from >= to) return true;
    const last = Math.floor((to - 1) / this.#chunkPairs);
    for (let chunk = Math.floor(from / this.#chunkPairs); chunk <= last; chunk++) {
      if (this.chunk(chunk) === null) return false;
    }
    return true;
  }

  /**
   * The least address of at least `addressMin` among the pairs from `from` on (Infinity if none),
   * or −1 if a chunk it had to read is damaged. A whole chunk's least address is in the directory;
   * only a chunk entered midway, or whose least address lies below `addressMin`, is read.
   */
  leastAddressFrom(from: number, addressMin: number): number {
    const size = this.#chunkPairs;
    let least = Infinity;
    for (let at = from; at < this.count;) {
      const chunk = Math.floor(at / size);
      const end = Math.min((chunk + 1) * size, this.count);
      if (at === chunk * size && this.#leastAddresses[chunk] >= addressMin) {
        least = Math.min(least, this.#leastAddresses[chunk]);
      } else {
        const pairs = this.chunk(chunk);
        if (pairs === null) return -1;
        for (let i = at - chunk * size; i < end - chunk * size; i++) {
          const address = pairs[2 * i + 1];
          if (address >= addressMin && address < least) least = address;
        }
      }
      at = end;
    }
    return least;
  }

  /** Every pair (slot, address, …), or `undefined` if a chunk is damaged. */
  all(): Float64Array | undefined {
    const all = new Float64Array(2 * this.count);
    for (let chunk = 0; chunk < this.#firstSlots.length; chunk++) {
      const pairs = this.chunk(chunk);
      if (pairs === null) return undefined;
      all.set(pairs.subarray(0, 2 * this.countOf(chunk)), 2 * chunk * this.#chunkPairs);
    }
    return all;
  }

  /** Hands the chunk buffers on to the next checkpoint this thread opens; reads none after. */
  release(): void {
    for (let k = 0; k < CHUNKS_KEPT; k++) {
      const pairs = this.#keptPairs[k];
      this.#keptPairs[k] = undefined;
      this.#keptChunk[k] = -1;
      if (pairs?.length === 2 * CHUNK_PAIRS && chunkBuffers.length < CHUNK_BUFFERS_POOLED) {
        chunkBuffers.push(pairs);
      }
    }
  }

  /** How many chunks. */
  get chunks(): number {
    return this.#firstSlots.length;
  }

  /** How many pairs chunk `chunk` holds. */
  countOf(chunk: number): number {
    return Math.min(this.#chunkPairs, this.count - chunk * this.#chunkPairs);
  }

  /** The first slot of chunk `chunk`, from the directory (no read). */
  firstSlotOf(chunk: number): number {
    return this.#firstSlots[chunk];
  }

  /** The least address of chunk `chunk`, from the directory (no read). */
  leastAddressOf(chunk: number): number {
    return this.#leastAddresses[chunk];
  }

  /** A kept chunk's pairs (its buffer may run past them). */
  #kept(chunk: number): Float64Array {
    for (let k = 0; k < CHUNKS_KEPT; k++) {
      if (this.#keptChunk[k] === chunk) return this.#keptPairs[k]!;
    }
    throw new Error(`assertion failed: chunk ${chunk} of the index checkpoint is not read`);
  }

  /**
   * The pairs of chunk `chunk` (the first {@linkcode CheckpointPairs.countOf} of the buffer),
   * read and checked unless kept; `null` if damaged. Valid until the next chunk is read.
   */
  chunk(chunk: number): Float64Array | null {
    let victim = 0;
    for (let k = 0; k < CHUNKS_KEPT; k++) {
      if (this.#keptChunk[k] === chunk) {
        this.#keptUse[k] = ++this.#uses;
        return this.#keptPairs[k]!;
      }
      if (this.#keptUse[k] < this.#keptUse[victim]) victim = k;
    }
    if (this.#damaged[chunk] === 1) return null;
    // Sized by the pairs there are: a header's chunk size is trusted only as far as its CRC.
    const pairs = this.#keptPairs[victim] ??=
      (this.#chunkPairs === CHUNK_PAIRS ? chunkBuffers.pop() : undefined) ??
        new Float64Array(2 * Math.min(this.#chunkPairs, this.count));
    this.#keptChunk[victim] = -1;
    const bytes = new Uint8Array(pairs.buffer, 0, PAIR_BYTES * this.countOf(chunk));
    if (!this.#load(chunk, bytes)) {
      this.#damaged[chunk] = 1;
      return null;
    }
    this.#keptChunk[victim] = chunk;
    this.#keptUse[victim] = ++this.#uses;
    return pairs;
  }
}

/** A loaded index checkpoint. */
export interface IndexCheckpoint {
  /** Every record below this address is reflected in the pairs. */
  coveredAddress: number;
  /** The committed slots and the addresses of their commit records. */
  committed: CheckpointPairs;
  /** Journaled accepts: slot, then −(address + 1) of the accept record; checked at open. */
  journal: Float64Array;
  /** Closes the file: `committed` must not read chunks it has not read yet after. */
  release(): void;
}

/**
 * Writes the checkpoint of `committed` (slot, address pairs in slot order) and `journal` (slot,
 * −(address + 1) pairs) atomically. `syncs` false (durability "none") skips the syncs. When
 * `committed` starts exactly {@linkcode INDEX_CHECKPOINT_HEADER_BYTES} into an `ArrayBuffer`,
 * the header is written into those first bytes and the file from that buffer: a checkpoint of
 * millions of slots is not copied (a 24 MB copy into a fresh buffer took 18–20 ms, mostly page
 * faults). The bytes are written off the JS thread, 1 MiB per call; `pause`, if given, is awaited
 * between 4 MiB steps of the checksums.
 */
export async function writeIndexCheckpoint(
  device: Device,
  dir: string,
  logId: number,
  coveredAddress: number,
  committed: Float64Array,
  journal: ArrayLike<number>,
  syncs: boolean,
  pause?: () => Promise<void>,
): Promise<void> {
  const count = committed.length / 2;
  const journaled = journal.length / 2;
  const inPlace = committed.byteOffset === HEADER_BYTES && committed.buffer instanceof ArrayBuffer;
  const bytes = inPlace
    ? new Uint8Array(committed.buffer, 0, HEADER_BYTES + committed.byteLength)
    : new Uint8Array(HEADER_BYTES + count * PAIR_BYTES);
  const pairs = inPlace ? committed : new Float64Array(bytes.buffer, HEADER_BYTES, count * 2);
  if (!inPlace) pairs.set(committed);
  const chunks = Math.ceil(count / CHUNK_PAIRS);
  // What follows the pairs: the journal, then the directory.
  const rest = new Uint8Array(journaled * PAIR_BYTES + chunks * DIRECTORY_ENTRY_BYTES);
  new Float64Array(rest.buffer, 0, journaled * 2).set(journal);
  const directory = new DataView(rest.buffer, journaled * PAIR_BYTES);
  let summed = 0;
  for (let chunk = 0; chunk < chunks; chunk++) {
    if (summed >= CHECKSUM_STEP_BYTES) {
      await pause?.();
      summed = 0;
    }
    const from = chunk * CHUNK_PAIRS;
    const to = Math.min(from + CHUNK_PAIRS, count);
    let least = Infinity;
    for (let i = from; i < to; i++) least = Math.min(least, pairs[2 * i + 1]);
    const at = chunk * DIRECTORY_ENTRY_BYTES;
    directory.setFloat64(at, pairs[2 * from], true);
    directory.setFloat64(at + 8, least, true);
    const chunkBytes = bytes.subarray(
      HEADER_BYTES + from * PAIR_BYTES,
      HEADER_BYTES + to * PAIR_BYTES,
    );
    directory.setUint32(at + 16, checksum(chunkBytes, 0), true);
    summed += chunkBytes.length;
  }
  const view = new DataView(bytes.buffer, 0, HEADER_BYTES);
  for (let at = 0; at < HEADER_BYTES; at += 4) view.setUint32(at, 0, true);
  view.setUint32(4, MAGIC, true);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, logId, true);
  view.setFloat64(16, coveredAddress, true);
  view.setFloat64(24, count, true);
  view.setFloat64(32, journaled, true);
  view.setUint32(40, CHUNK_PAIRS, true);
  view.setFloat64(48, count === 0 ? -1 : pairs[2 * (count - 1)], true);
  view.setUint32(0, checksum(rest, checksum(bytes.subarray(4, HEADER_BYTES), 0)), true);
  const path = join(dir, INDEX_FILE_NAME);
  const tempPath = `${path}.tmp`;
  device.remove(tempPath);
  const file = device.open(tempPath, { create: true, exclusive: true });
  try {
    // In steps: a runtime's async write copies or writes much of a large buffer on the JS thread
    // (a 22 MB write held it 8 ms in Bun and 23–51 ms in Deno; 1 MiB, 0.01–0.7 ms).
    for (let at = 0; at < bytes.length; at += WRITE_STEP_BYTES) {
      await file.writeAsync(bytes.subarray(at, Math.min(at + WRITE_STEP_BYTES, bytes.length)), at);
    }
    if (rest.length > 0) await file.writeAsync(rest, bytes.length);
    if (syncs) await file.sync("full");
  } finally {
    file.close();
  }
  device.rename(tempPath, path);
  if (syncs) await device.syncDirectory(dir);
}

/**
 * Opens the index checkpoint of log `logId`, or returns `undefined` if it is absent or its header,
 * journal or directory is invalid. The chunks of committed pairs of a version 2 file are read and
 * checked as they are used, so the file stays open until `release()`: mapping it instead cost Bun
 * 0.2 ms per open of a 16 MB checkpoint (and counted as external memory).
 */
export function readIndexCheckpoint(
  device: Device,
  dir: string,
  logId: number,
): IndexCheckpoint | undefined {
  const path = join(dir, INDEX_FILE_NAME);
  if (!device.exists(path)) return undefined;
  const file = device.open(path, { readOnly: true });
  let keep = false;
  try {
    const size = file.sizeBytes();
    if (size < HEADER_BYTES) return undefined;
    const head = new Uint8Array(HEADER_BYTES);
    if (file.read(head, 0) !== HEADER_BYTES) return undefined;
    const header = new DataView(head.buffer);
    if (header.getUint32(4, true) !== MAGIC || header.getUint32(12, true) !== logId) {
      return undefined;
    }
    const version = header.getUint32(8, true);
    const parsed = version === VERSION
      ? openChunked(file, size, head)
      : version === VERSION_PAIRS_ONLY
      ? readPairsOnly(file, size, head)
      : undefined;
    if (parsed === undefined) return undefined;
    keep = version === VERSION;
    return {
      coveredAddress: header.getFloat64(16, true),
      ...parsed,
      release: () => {
        parsed.committed.release();
        if (keep) file.close();
      },
    };
  } finally {
    if (!keep) file.close();
  }
}

/** What a version's reader gives {@linkcode readIndexCheckpoint}. */
type Opened = Pick<IndexCheckpoint, "committed" | "journal">;

/** A count of 16-byte pairs that could fit in `size` bytes (a hostile float fails). */
function isPairCount(value: number, size: number): boolean {
  return Number.isSafeInteger(value) && value >= 0 && value * PAIR_BYTES <= size;
}

/** Version 2: checks the header, journal and directory; the chunks are read as used. */
function openChunked(
  file: DeviceFile,
  size: number,
  head: Uint8Array,
): Opened | undefined {
  const header = new DataView(head.buffer);
  const count = header.getFloat64(24, true);
  const journaled = header.getFloat64(32, true);
  const chunkPairs = header.getUint32(40, true);
  if (!isPairCount(count, size) || !isPairCount(journaled, size) || chunkPairs === 0) {
    return undefined;
  }
  const chunks = Math.ceil(count / chunkPairs);
  const journalAt = HEADER_BYTES + count * PAIR_BYTES;
  const directoryAt = journalAt + journaled * PAIR_BYTES;
  if (directoryAt + chunks * DIRECTORY_ENTRY_BYTES !== size) return undefined;
  // The journal and the directory, read together: both are covered by the header's CRC.
  const rest = new Uint8Array(size - journalAt);
  if (file.read(rest, journalAt) !== rest.length) return undefined;
  if (header.getUint32(0, true) !== checksum(rest, checksum(head.subarray(4), 0))) {
    return undefined;
  }
  const directory = new DataView(rest.buffer, directoryAt - journalAt);
  const firstSlots = new Float64Array(chunks);
  const leastAddresses = new Float64Array(chunks);
  const sums = new Uint32Array(chunks);
  for (let chunk = 0; chunk < chunks; chunk++) {
    const at = chunk * DIRECTORY_ENTRY_BYTES;
    firstSlots[chunk] = directory.getFloat64(at, true);
    leastAddresses[chunk] = directory.getFloat64(at + 8, true);
    sums[chunk] = directory.getUint32(at + 16, true);
  }
  const load = (chunk: number, into: Uint8Array): boolean => {
    try {
      const at = HEADER_BYTES + chunk * chunkPairs * PAIR_BYTES;
      if (file.read(into, at) !== into.length) return false;
    } catch {
      return false; // unreadable counts as damaged: the log has the same slots
    }
    return checksum(into, 0) === sums[chunk];
  };
  return {
    committed: new CheckpointPairs(
      count,
      header.getFloat64(48, true),
      chunkPairs,
      { firstSlots, leastAddresses },
      load,
    ),
    journal: new Float64Array(rest.buffer, 0, journaled * 2),
  };
}

/** Version 1: read whole, one checksum of everything; the directory is computed. */
function readPairsOnly(
  file: DeviceFile,
  size: number,
  head: Uint8Array,
): Opened | undefined {
  const header = new DataView(head.buffer);
  const total = header.getFloat64(24, true);
  if (!isPairCount(total, size) || HEADER_BYTES + total * PAIR_BYTES !== size) return undefined;
  const all = new Float64Array(total * 2);
  const bytes = new Uint8Array(all.buffer);
  if (file.read(bytes, HEADER_BYTES) !== bytes.length) return undefined;
  if (header.getUint32(0, true) !== checksum(bytes, checksum(head.subarray(4), 0))) {
    return undefined;
  }
  // The journaled accepts (negative addresses) were written after the committed pairs.
  let count = total;
  while (count > 0 && all[2 * count - 1] < 0) count--;
  const chunks = Math.ceil(count / CHUNK_PAIRS);
  const firstSlots = new Float64Array(chunks);
  const leastAddresses = new Float64Array(chunks).fill(Infinity);
  for (let i = 0; i < count; i++) {
    const chunk = Math.floor(i / CHUNK_PAIRS);
    if (i % CHUNK_PAIRS === 0) firstSlots[chunk] = all[2 * i];
    leastAddresses[chunk] = Math.min(leastAddresses[chunk], all[2 * i + 1]);
  }
  return {
    committed: new CheckpointPairs(
      count,
      count === 0 ? -1 : all[2 * (count - 1)],
      CHUNK_PAIRS,
      { firstSlots, leastAddresses },
      (chunk, into) => {
        const at = chunk * CHUNK_PAIRS * PAIR_BYTES;
        into.set(bytes.subarray(at, at + into.length));
        return true;
      },
    ),
    journal: all.subarray(2 * count),
  };
}
