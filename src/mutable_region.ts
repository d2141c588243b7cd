/**
 * The mutable region: accepted, uncommitted entries in a `SharedArrayBuffer` that the owner and
 * every attached Worker allocate from at once, without locks.
 *
 * The region is cut into equal chunks. A thread claims a free chunk with a compare-and-swap and
 * then bump-allocates its entries in it alone, so concurrent accepts never contend on a shared
 * tail. Each chunk counts its live bytes (plus one while a thread still allocates in it); the
 * thread whose free brings a sealed chunk to zero retires it at a new epoch, and the chunk is
 * claimed again only when no thread can still be reading it ({@linkcode EpochTable}). An entry
 * larger than a chunk takes a run of consecutive free chunks. When no chunk is free but live
 * entries would fit, the claiming thread compacts: it copies the live entries of the emptiest
 * chunks into its own chunk and moves each slot word to the copy with a compare-and-swap
 * (`onMove`), so a racing accept or commit simply wins and the copy is dropped. A region whose
 * live entries leave no room is full: backpressure, never loss.
 *
 * Entry layout (8-byte aligned, written before the slot word that publishes it):
 *
 * | offset | size | field                                   |
 * |-------:|-----:|-----------------------------------------|
 * |      0 |    4 | state: 1 live, 2 freed                  |
 * |      4 |    4 | total entry size in bytes               |
 * |      8 |    8 | slot (float64)                          |
 * |     16 |    8 | ballot round (float64)                  |
 * |     24 |    4 | ballot node                             |
 * |     28 |    4 | value length                            |
 * |     32 |    8 | accept sequence number (accept order)   |
 * |     40 |    … | value                                   |
 *
 * @module
 */
import type { EpochTable } from "./epoch.ts";

const ENTRY_LIVE = 1;
const ENTRY_FREED = 2;

const CHUNK_FREE = 0;
const CHUNK_OPEN = 1; // a thread allocates in it
const CHUNK_SEALED = 2;
const CHUNK_RETIRED = 3; // empty, waiting for the epoch it retired at
const CHUNK_PART = 4; // a later chunk of a multi-chunk entry
const CHUNK_COMPACTING = 5;

/** Bytes of an entry header in the region. */
export const REGION_ENTRY_HEADER_BYTES = 40;

/**
 * Longest value {@linkcode MutableRegion.copyValueTo} copies word by word: below it the loop beat
 * `subarray` + `set` (100 B: 40–50 ns against 50–130 ns in both runtimes), above it `set`'s
 * memcpy wins (1 KiB: 160–210 ns against 65–80 ns).
 */
const COPY_BY_WORDS_BYTES_MAX = 256;

// Control words (Int32Array over their own SharedArrayBuffer); then one 64-byte line per chunk,
// so threads allocating in different chunks never write to the same cache line.
const SEQUENCE = 0; // sequence blocks taken so far, low 32 bits
const SEQUENCE_HIGH = 1;
const SEQUENCE_BLOCK = 1024;
// Word 2 held a claim hint (round-robin claims), no longer used: see #claim.
const CONTROL_FIXED_WORDS = 16;
const CHUNK_STRIDE = 16; // words per chunk line
// Per-chunk fields.
const STATE = 0;
const CHARGE = 1; // bytes not yet freed: the whole chunk (+1) while open, see #claim
const RETIRED_AT = 2; // epoch
const RUN = 3; // chunks in its run (a multi-chunk entry), 1 otherwise
const FILL = 4; // bytes allocated from its start (written by the allocating thread)

/** Total bytes an entry with `valueBytes` occupies in the region. */
export function regionEntrySize(valueBytes: number): number {
  return (REGION_ENTRY_HEADER_BYTES + valueBytes + 7) & ~7;
}

/** The bytes a region asked for `capacityBytes` holds: whole chunks. */
export function regionCapacityBytes(capacityBytes: number): number {
  const chunkBytes = chunkBytesFor(capacityBytes);
  return Math.floor(capacityBytes / chunkBytes) * chunkBytes;
}

/** Chunk size for a region of `capacityBytes`: about 1/16 of it, 8 KiB to 1 MiB. */
function chunkBytesFor(capacityBytes: number): number {
  const target = 2 ** Math.floor(Math.log2(capacityBytes / 16));
  return Math.min(1024 * 1024, Math.max(8 * 1024, target));
}

/** The buffers of a region, structured-cloneable for a Worker. */
export interface RegionBuffers {
  data: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

/** Moves slot `slot`'s word from the entry at `from` to its copy at `to`; false if it changed. */
export type MoveListener = (slot: number, from: number, to: number) => boolean;

/** One thread's handle on the shared region. */
export class MutableRegion {
  readonly capacityBytes: number;
  readonly chunkBytes: number;
  readonly chunkCount: number;
  #bytes: Uint8Array;
  #words: Int32Array;
  #floats: Float64Array;
  #control: Int32Array;
  #epochs: EpochTable;
  // This thread's open chunk: allocation runs from #bump to #end.
  #chunk = -1;
  #bump = 0;
  #end = 0;
  #sequence = 0;
  #sequenceEnd = 0;

  /**
   * Creates a region of about `capacityBytes`, or attaches to `buffers` of an existing one. A new
   * region may be given its data buffer (of {@linkcode regionCapacityBytes}), with any bytes in
   * it: only the control buffer must start as zeros.
   */
  constructor(capacityBytes: number, epochs: EpochTable, buffers?: Partial<RegionBuffers>) {
    this.chunkBytes = chunkBytesFor(capacityBytes);
    this.capacityBytes = regionCapacityBytes(capacityBytes);
    this.chunkCount = this.capacityBytes / this.chunkBytes;
    const data = buffers?.data ?? new SharedArrayBuffer(this.capacityBytes);
    const control = buffers?.control ??
      new SharedArrayBuffer((CONTROL_FIXED_WORDS + CHUNK_STRIDE * this.chunkCount) * 4);
    if (data.byteLength !== this.capacityBytes) {
      throw new Error("assertion failed: region buffer size does not match its capacity");
    }
    this.#bytes = new Uint8Array(data);
    this.#words = new Int32Array(data);
    this.#floats = new Float64Array(data);
    this.#control = new Int32Array(control);
    this.#epochs = epochs;
  }

  /** The shared buffers. */
  get buffers(): RegionBuffers {
    return {
      data: this.#bytes.buffer as SharedArrayBuffer,
      control: this.#control.buffer as SharedArrayBuffer,
    };
  }

  #field(chunk: number, field: number): number {
    return CONTROL_FIXED_WORDS + chunk * CHUNK_STRIDE + field;
  }

  /**
   * Bytes held by live entries (summed over the chunks: exact when no thread is allocating,
   * approximate while they do).
   */
  get liveBytes(): number {
    const control = this.#control;
    let live = 0;
    for (let chunk = 0; chunk < this.chunkCount; chunk++) {
      const state = Atomics.load(control, this.#field(chunk, STATE));
      const charge = Atomics.load(control, this.#field(chunk, CHARGE));
      if (state === CHUNK_SEALED || state === CHUNK_COMPACTING) live += charge;
      else if (state === CHUNK_OPEN) {
        live += charge - 1 - (this.chunkBytes - Atomics.load(control, this.#field(chunk, FILL)));
      }
    }
    return live;
  }

  /** Bytes of chunks in use (claimed, sealed or waiting to be reused). */
  get usedBytes(): number {
    let used = 0;
    for (let chunk = 0; chunk < this.chunkCount; chunk++) {
      if (Atomics.load(this.#control, this.#field(chunk, STATE)) !== CHUNK_FREE) used++;
    }
    return used * this.chunkBytes;
  }

  /**
   * Writes an entry and returns its offset, or -1 if the region is full. The entry is live but
   * unreachable until a slot word names it. Call inside an epoch section, before reading any
   * other entry again: the chunk it claims may be one this thread read from earlier.
   */
  put(slot: number, round: number, node: number, value: Uint8Array, onMove: MoveListener) {
    const size = regionEntrySize(value.length);
    let offset = this.#allocate(size, false);
    // Compaction only helps if the live entries leave room (the sum is worth it only here).
    if (offset < 0 && this.liveBytes + size <= this.capacityBytes && this.#compact(size, onMove)) {
      offset = this.#allocate(size, false);
    }
    if (offset < 0) return -1;
    const w = offset >>> 2;
    const f = offset >>> 3;
    this.#floats[f + 1] = slot;
    this.#floats[f + 2] = round;
    this.#words[w + 6] = node;
    this.#words[w + 7] = value.length;
    this.#floats[f + 4] = this.#nextSequence();
    this.#bytes.set(value, offset + REGION_ENTRY_HEADER_BYTES);
    return offset;
  }

  /**
   * The next accept sequence number. Threads take blocks of them, so the shared counter is
   * touched once per block: order is exact within a thread and by block across threads.
   */
  #nextSequence(): number {
    if (this.#sequence === this.#sequenceEnd) {
      const block = Atomics.add(this.#control, SEQUENCE, 1) >>> 0;
      if (block === 0xffff_ffff) Atomics.add(this.#control, SEQUENCE_HIGH, 1);
      const first = (Atomics.load(this.#control, SEQUENCE_HIGH) * 0x1_0000_0000 + block) *
        SEQUENCE_BLOCK;
      this.#sequence = first;
      this.#sequenceEnd = first + SEQUENCE_BLOCK;
    }
    return this.#sequence++;
  }

  /**
   * Reserves `size` bytes (live, header state and size set); -1 if no chunk can take them.
   * `compacting`: for a copy made by compaction, which reads the chunks it empties (so they must
   * not be reused under it) and may take the last free chunk.
   */
  #allocate(size: number, compacting: boolean): number {
    if (size > this.chunkBytes) return this.#allocateRun(size, !compacting);
    if (this.#chunk < 0 || this.#bump + size > this.#end) {
      this.#seal();
      const chunk = this.#claim(!compacting, compacting);
      if (chunk < 0) return -1;
      this.#chunk = chunk;
      this.#bump = chunk * this.chunkBytes;
      this.#end = this.#bump + this.chunkBytes;
    }
    const offset = this.#bump;
    this.#bump += size;
    // No atomic add: the chunk was charged in full when claimed (only this thread writes FILL).
    this.#control[this.#field(this.#chunk, FILL)] = this.#bump - this.#chunk * this.chunkBytes;
    this.#words[(offset >>> 2) + 1] = size;
    this.#words[offset >>> 2] = ENTRY_LIVE;
    return offset;
  }

  /**
   * Claims a free chunk (or a retired one no thread can still read); -1 if none. The last free
   * chunk is kept for compaction, which needs somewhere to copy live entries to.
   *
   * The lowest-numbered chunk first: a steady accept-and-commit workload then cycles through the
   * same few chunks, whose pages stay faulted in and cached. Claims used to go round the region,
   * so a new log faulted in every page of it (64 MiB by default) before reusing one: 500k
   * accepts + commits of 100 B ended at 138–198 MiB RSS against 78–137 MiB, and 100 accepts
   * took 30–56 µs against 23–43.
   */
  #claim(excludeSelf: boolean, compacting: boolean): number {
    const control = this.#control;
    const count = this.chunkCount;
    if (!compacting && this.#available(excludeSelf) <= 1) return -1;
    for (let chunk = 0; chunk < count; chunk++) {
      const taken = this.#take(chunk, excludeSelf);
      if (taken < 0) continue;
      // Another thread may have claimed between the count above and this take. Whichever of two
      // racing claims counts second sees both, so it gives its chunk back if it took the last:
      // without a free chunk compaction has nowhere to copy to, and the region would stay full
      // until frees empty a whole chunk.
      if (!compacting && this.#available(excludeSelf) === 0) {
        Atomics.store(control, this.#field(chunk, STATE), taken);
        return -1;
      }
      // Charged in full (plus one, so frees cannot bring it to zero while open); sealing gives
      // back the unused end and the one.
      Atomics.store(control, this.#field(chunk, CHARGE), this.chunkBytes + 1);
      Atomics.store(control, this.#field(chunk, FILL), 0);
      Atomics.store(control, this.#field(chunk, RUN), 1);
      return chunk;
    }
    return -1;
  }

  /** Chunks that could be claimed now. */
  #available(excludeSelf: boolean): number {
    let available = 0;
    for (let chunk = 0; chunk < this.chunkCount; chunk++) {
      if (this.#claimableState(chunk, excludeSelf) >= 0) available++;
    }
    return available;
  }

  /** The state of `chunk` if it can be claimed (free, or retired and safe), else -1. */
  #claimableState(chunk: number, excludeSelf: boolean): number {
    const state = Atomics.load(this.#control, this.#field(chunk, STATE));
    if (state === CHUNK_FREE) return state;
    if (state !== CHUNK_RETIRED) return -1;
    const epoch = Atomics.load(this.#control, this.#field(chunk, RETIRED_AT));
    return this.#epochs.isSafe(epoch, excludeSelf) ? state : -1;
  }

  /**
   * Moves `chunk` from free (or safely retired) to open; returns the state it had, or -1 if it
   * could not be claimed. A retired chunk keeps its epoch, so the state alone restores it.
   */
  #take(chunk: number, excludeSelf: boolean): number {
    const state = this.#claimableState(chunk, excludeSelf);
    if (state < 0) return -1;
    const at = this.#field(chunk, STATE);
    return Atomics.compareExchange(this.#control, at, state, CHUNK_OPEN) === state ? state : -1;
  }

  /** A run of chunks for one large entry. */
  #allocateRun(size: number, excludeSelf: boolean): number {
    const length = Math.ceil(size / this.chunkBytes);
    const control = this.#control;
    for (let first = 0; first + length <= this.chunkCount; first++) {
      let taken = 0;
      while (taken < length && this.#take(first + taken, excludeSelf) >= 0) taken++;
      if (taken < length) {
        for (let i = 0; i < taken; i++) {
          Atomics.store(control, this.#field(first + i, STATE), CHUNK_FREE);
        }
        first += taken;
        continue;
      }
      for (let i = 1; i < length; i++) {
        Atomics.store(control, this.#field(first + i, STATE), CHUNK_PART);
      }
      Atomics.store(control, this.#field(first, CHARGE), size);
      Atomics.store(control, this.#field(first, RUN), length);
      Atomics.store(control, this.#field(first, FILL), size);
      Atomics.store(control, this.#field(first, STATE), CHUNK_SEALED);
      const offset = first * this.chunkBytes;
      this.#words[(offset >>> 2) + 1] = size;
      this.#words[offset >>> 2] = ENTRY_LIVE;
      return offset;
    }
    return -1;
  }

  /** Stops allocating in this thread's open chunk (it is retired once its entries are freed). */
  #seal(): void {
    const chunk = this.#chunk;
    if (chunk < 0) return;
    this.#chunk = -1;
    const control = this.#control;
    const fill = this.#bump - chunk * this.chunkBytes;
    Atomics.store(control, this.#field(chunk, FILL), fill);
    Atomics.store(control, this.#field(chunk, STATE), CHUNK_SEALED);
    const unused = this.chunkBytes - fill + 1;
    if (Atomics.sub(control, this.#field(chunk, CHARGE), unused) === unused) this.#retire(chunk);
  }

  #retire(chunk: number): void {
    const control = this.#control;
    const length = Atomics.load(control, this.#field(chunk, RUN));
    const epoch = this.#epochs.bump();
    for (let i = 0; i < length; i++) {
      Atomics.store(control, this.#field(chunk + i, RETIRED_AT), epoch);
      Atomics.store(control, this.#field(chunk + i, STATE), CHUNK_RETIRED);
    }
  }

  /**
   * Copies the live entries of the emptiest sealed chunks into this thread's chunk, until a chunk
   * is freed for `size` bytes. Returns whether any chunk was freed.
   */
  #compact(size: number, onMove: MoveListener): boolean {
    const control = this.#control;
    const candidates: number[] = [];
    for (let chunk = 0; chunk < this.chunkCount; chunk++) {
      if (
        Atomics.load(control, this.#field(chunk, STATE)) === CHUNK_SEALED &&
        Atomics.load(control, this.#field(chunk, RUN)) === 1
      ) {
        candidates.push(chunk);
      }
    }
    const liveOf = (chunk: number) => Atomics.load(control, this.#field(chunk, CHARGE));
    candidates.sort((a, b) => liveOf(a) - liveOf(b));
    let freed = 0;
    const needed = Math.ceil(size / this.chunkBytes);
    for (const chunk of candidates) {
      const at = this.#field(chunk, STATE);
      if (Atomics.compareExchange(control, at, CHUNK_SEALED, CHUNK_COMPACTING) !== CHUNK_SEALED) {
        continue;
      }
      const start = chunk * this.chunkBytes;
      const end = start + Atomics.load(control, this.#field(chunk, FILL));
      let moved = true;
      for (let offset = start; offset < end && moved;) {
        const entrySize = this.#words[(offset >>> 2) + 1];
        if (Atomics.load(this.#words, offset >>> 2) === ENTRY_LIVE) {
          moved = this.#move(offset, onMove);
        }
        offset += entrySize;
      }
      // A chunk emptied meanwhile was retired by the thread that freed its last entry.
      Atomics.compareExchange(control, at, CHUNK_COMPACTING, CHUNK_SEALED);
      if (Atomics.load(control, at) === CHUNK_RETIRED) freed++;
      if (!moved || freed >= needed) break;
    }
    return freed > 0;
  }

  /** Copies one entry to this thread's chunk and moves its slot word; false if out of room. */
  #move(offset: number, onMove: MoveListener): boolean {
    const size = this.#words[(offset >>> 2) + 1];
    // Compaction reads the chunks it empties, so they must not be reused under it.
    const copy = this.#allocate(size, true);
    if (copy < 0) return false;
    this.#bytes.copyWithin(copy + 8, offset + 8, offset + size);
    if (onMove(this.slotAt(offset), offset, copy)) this.free(offset);
    else this.free(copy);
    return true;
  }

  /** Frees the entry at `offset` (exactly once, by whoever unlinked it from its slot word). */
  free(offset: number): void {
    const w = offset >>> 2;
    const words = this.#words;
    const size = words[w + 1];
    const charge = this.#field(Math.floor(offset / this.chunkBytes), CHARGE);
    let left: number;
    if (this.#epochs.solo) {
      // No other thread can see the region: plain stores, no fence per free.
      if (words[w] !== ENTRY_LIVE) this.#notLive(offset);
      words[w] = ENTRY_FREED;
      left = this.#control[charge] -= size;
    } else {
      if (Atomics.compareExchange(words, w, ENTRY_LIVE, ENTRY_FREED) !== ENTRY_LIVE) {
        this.#notLive(offset);
      }
      left = Atomics.sub(this.#control, charge, size) - size;
    }
    if (left === 0) this.#retire(Math.floor(offset / this.chunkBytes));
  }

  #notLive(offset: number): never {
    throw new Error(`assertion failed: freeing region entry ${offset} that is not live`);
  }

  /** Ends this thread's allocation (its open chunk is sealed). */
  detach(): void {
    this.#seal();
  }

  /** Slot of the entry at `offset`. */
  slotAt(offset: number): number {
    return this.#floats[(offset >>> 3) + 1];
  }
  /** Ballot round of the entry at `offset`. */
  roundAt(offset: number): number {
    return this.#floats[(offset >>> 3) + 2];
  }
  /** Ballot node of the entry at `offset`. */
  nodeAt(offset: number): number {
    return this.#words[(offset >>> 2) + 6] >>> 0;
  }
  /** Accept sequence number of the entry at `offset` (orders entries by accept). */
  sequenceAt(offset: number): number {
    return this.#floats[(offset >>> 3) + 4];
  }
  /** Bytes of the value of the entry at `offset`. */
  valueLengthAt(offset: number): number {
    return this.#words[(offset >>> 2) + 7];
  }
  /**
   * Copies the value of the entry at `offset` to byte `at` of `bytes` (`words`: the same buffer
   * as 32-bit words). A short value is copied word by word, which makes no view: a commit copies
   * every value once, and a view per value was most of the garbage of a commit (and slower).
   */
  copyValueTo(offset: number, bytes: Uint8Array, words: Uint32Array, at: number): void {
    const length = this.#words[(offset >>> 2) + 7];
    const from = offset + REGION_ENTRY_HEADER_BYTES;
    if (length > COPY_BY_WORDS_BYTES_MAX || (at & 3) !== 0) {
      bytes.set(this.#bytes.subarray(from, from + length), at);
      return;
    }
    const source = this.#words;
    let i = from >>> 2;
    let j = at >>> 2;
    for (const end = i + (length >>> 2); i < end;) words[j++] = source[i++];
    const sourceBytes = this.#bytes;
    for (let k = length & ~3; k < length; k++) bytes[at + k] = sourceBytes[from + k];
  }
  /** A view of the value of the entry at `offset` (valid until the entry is freed). */
  valueAt(offset: number): Uint8Array {
    const start = offset + REGION_ENTRY_HEADER_BYTES;
    return this.#bytes.subarray(start, start + this.#words[(offset >>> 2) + 7]);
  }
}
