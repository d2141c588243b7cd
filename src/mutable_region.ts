/**
 * The mutable region: a ring of bytes in a `SharedArrayBuffer` holding accepted, uncommitted
 * entries. Writers reserve space (advancing the tail), write the entry, then publish it by storing
 * its state with `Atomics.store`; a reader checks the state first, so it never sees a half-written
 * entry. Space is reclaimed from the head as entries are freed (committed or superseded); when
 * free space is fragmented, live entries are compacted to the start. A region whose live entries
 * leave no room is full: backpressure, never loss.
 *
 * Entry layout (8-byte aligned):
 *
 * | offset | size | field                                                   |
 * |-------:|-----:|---------------------------------------------------------|
 * |      0 |    4 | state: 0 writing, 1 published, 2 freed, 3 wrap padding  |
 * |      4 |    4 | total entry size in bytes                               |
 * |      8 |    8 | slot (float64)                                          |
 * |     16 |    8 | ballot round (float64)                                  |
 * |     24 |    4 | ballot node                                             |
 * |     28 |    4 | value length                                            |
 * |     32 |    8 | address of its durable-accept journal record, or -1     |
 * |     40 |    … | value                                                   |
 *
 * @module
 */

const STATE_WRITING = 0;
const STATE_PUBLISHED = 1;
const STATE_FREED = 2;
const STATE_WRAP = 3;

/** Bytes of an entry header in the region. */
export const REGION_ENTRY_HEADER_BYTES = 40;

// Control words (Int32Array over their own SharedArrayBuffer).
const HEAD = 0;
const TAIL = 1;
const USED = 2; // bytes between head and tail, wrap padding included
const LIVE = 3; // bytes of published or writing entries
const CONTROL_WORDS = 4;

/** Total bytes an entry with `valueBytes` occupies in the region. */
export function regionEntrySize(valueBytes: number): number {
  return (REGION_ENTRY_HEADER_BYTES + valueBytes + 7) & ~7;
}

/** The buffers of a region, structured-cloneable for a Worker. */
export interface RegionBuffers {
  data: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

/** An entry moved by compaction. */
export type MoveListener = (slot: number, from: number, to: number) => void;

/** A ring of accepted entries in shared memory. */
export class MutableRegion {
  readonly capacityBytes: number;
  #bytes: Uint8Array;
  #words: Int32Array;
  #floats: Float64Array;
  #control: Int32Array;

  /** @param capacityBytes Size of the ring; a multiple of 8. */
  constructor(capacityBytes: number) {
    if (capacityBytes % 8 !== 0 || capacityBytes < 64) {
      throw new Error(`assertion failed: region capacity ${capacityBytes}`);
    }
    this.capacityBytes = capacityBytes;
    const data = new SharedArrayBuffer(capacityBytes);
    this.#bytes = new Uint8Array(data);
    this.#words = new Int32Array(data);
    this.#floats = new Float64Array(data);
    this.#control = new Int32Array(new SharedArrayBuffer(CONTROL_WORDS * 4));
  }

  /** The shared buffers. */
  get buffers(): RegionBuffers {
    return {
      data: this.#bytes.buffer as SharedArrayBuffer,
      control: this.#control.buffer as SharedArrayBuffer,
    };
  }

  /** Bytes held by live entries. */
  get liveBytes(): number {
    return Atomics.load(this.#control, LIVE);
  }

  /** Bytes between head and tail (live entries, freed entries not yet reclaimed, padding). */
  get usedBytes(): number {
    return Atomics.load(this.#control, USED);
  }

  /** Whether an entry of `valueBytes` could ever fit next to what is live now. */
  fits(valueBytes: number): boolean {
    return this.liveBytes + regionEntrySize(valueBytes) <= this.capacityBytes;
  }

  /**
   * Reserves and writes an entry, then publishes it. Returns its offset, or -1 if the region is
   * full. Reclaims freed space and compacts as needed (`onMove` reports moved entries).
   */
  put(
    slot: number,
    round: number,
    node: number,
    value: Uint8Array,
    journalAddress: number,
    onMove: MoveListener,
  ): number {
    const size = regionEntrySize(value.length);
    if (this.liveBytes + size > this.capacityBytes) return -1;
    let offset = this.#place(size);
    if (offset < 0) {
      this.#reclaimHead();
      offset = this.#place(size);
    }
    if (offset < 0) {
      this.#compact(onMove);
      offset = this.#place(size);
    }
    if (offset < 0) {
      throw new Error("assertion failed: compaction left no room for a fitting entry");
    }
    this.#write(offset, size, slot, round, node, value, journalAddress);
    return offset;
  }

  #write(
    offset: number,
    size: number,
    slot: number,
    round: number,
    node: number,
    value: Uint8Array,
    journalAddress: number,
  ): void {
    const w = offset >>> 2;
    const f = offset >>> 3;
    if (this.#words[w + 1] !== size) throw new Error("assertion failed: entry size changed");
    this.#floats[f + 1] = slot;
    this.#floats[f + 2] = round;
    this.#words[w + 6] = node;
    this.#words[w + 7] = value.length;
    this.#floats[f + 4] = journalAddress;
    this.#bytes.set(value, offset + REGION_ENTRY_HEADER_BYTES);
    Atomics.store(this.#words, w, STATE_PUBLISHED);
  }

  /** Finds contiguous room for `size` bytes at the tail (wrapping once), or returns -1. */
  #place(size: number): number {
    const control = this.#control;
    const capacity = this.capacityBytes;
    let used = control[USED];
    if (used === 0) control[HEAD] = control[TAIL] = 0;
    const head = control[HEAD];
    let tail = control[TAIL];
    if (used > 0 && head === tail) return -1; // no free byte at all
    if (tail >= head) {
      if (capacity - tail < size) {
        if (head < size) return -1;
        // Pad to the end and continue at 0.
        const pad = capacity - tail;
        if (pad > 0) {
          this.#words[(tail >>> 2) + 1] = pad;
          Atomics.store(this.#words, tail >>> 2, STATE_WRAP);
          used += pad;
        }
        tail = 0;
      }
    } else if (head - tail < size) {
      return -1;
    }
    this.#words[(tail >>> 2) + 1] = size;
    Atomics.store(this.#words, tail >>> 2, STATE_WRITING);
    Atomics.store(control, TAIL, (tail + size) % capacity);
    Atomics.store(control, USED, used + size);
    Atomics.add(control, LIVE, size);
    return tail;
  }

  /** Advances the head past freed entries and padding. */
  #reclaimHead(): void {
    const control = this.#control;
    while (control[USED] > 0) {
      const head = control[HEAD];
      const state = Atomics.load(this.#words, head >>> 2);
      if (state !== STATE_FREED && state !== STATE_WRAP) break;
      const size = this.#words[(head >>> 2) + 1];
      Atomics.store(control, HEAD, (head + size) % this.capacityBytes);
      Atomics.sub(control, USED, size);
    }
  }

  /** Moves every live entry to the start of the ring, in ring order. */
  #compact(onMove: MoveListener): void {
    const live: Array<{ offset: number; copy: Uint8Array }> = [];
    for (const offset of this.offsets()) {
      const size = this.#words[(offset >>> 2) + 1];
      live.push({ offset, copy: this.#bytes.slice(offset, offset + size) });
    }
    const control = this.#control;
    Atomics.store(control, USED, 0);
    Atomics.store(control, LIVE, 0);
    Atomics.store(control, HEAD, 0);
    Atomics.store(control, TAIL, 0);
    let at = 0;
    for (const { offset, copy } of live) {
      this.#bytes.set(copy, at);
      onMove(this.slotAt(at), offset, at);
      at += copy.length;
    }
    this.#bytes.fill(0, at, Math.min(at + 8, this.capacityBytes));
    Atomics.store(control, TAIL, at % this.capacityBytes);
    Atomics.store(control, USED, at);
    Atomics.store(control, LIVE, at);
  }

  /** Marks the entry at `offset` freed; its space is reclaimed when the head reaches it. */
  free(offset: number): void {
    const w = offset >>> 2;
    if (Atomics.compareExchange(this.#words, w, STATE_PUBLISHED, STATE_FREED) !== STATE_PUBLISHED) {
      throw new Error(`assertion failed: freeing region entry ${offset} that is not published`);
    }
    Atomics.sub(this.#control, LIVE, this.#words[w + 1]);
    this.#reclaimHead();
  }

  /** Offsets of published entries from head to tail (ring order = accept order). */
  *offsets(): Generator<number> {
    const control = this.#control;
    let offset = control[HEAD];
    let remaining = control[USED];
    while (remaining > 0) {
      const state = Atomics.load(this.#words, offset >>> 2);
      const size = this.#words[(offset >>> 2) + 1];
      if (size <= 0) {
        throw new Error(`assertion failed: region entry at ${offset} has size ${size}`);
      }
      if (state === STATE_PUBLISHED) yield offset;
      offset = (offset + size) % this.capacityBytes;
      remaining -= size;
    }
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
  /** Journal address of the entry at `offset` (-1: not journaled). */
  journalAt(offset: number): number {
    return this.#floats[(offset >>> 3) + 4];
  }
  /** A view of the value of the entry at `offset` (valid until the entry is freed). */
  valueAt(offset: number): Uint8Array {
    const start = offset + REGION_ENTRY_HEADER_BYTES;
    return this.#bytes.subarray(start, start + this.#words[(offset >>> 2) + 7]);
  }
}
