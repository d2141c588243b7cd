/**
 * The slot index: `slot → (state, location)` in shared typed arrays, an open-addressing hash table
 * with linear probing. No JS objects per entry and no garbage on the hot path; a lookup is a few
 * typed-array reads. Slots are non-negative safe integers, dense or sparse.
 *
 * The arrays live in `SharedArrayBuffer`s so Workers can read them. A key is written before its
 * state, and the state is stored last with `Atomics.store`, so a reader that sees a state also sees
 * its key and location. Growth (rehash at half load) allocates new buffers.
 *
 * @module
 */

/** State of an index entry. */
export const SlotState = {
  /** Never used. */
  empty: 0,
  /** Accepted, not committed: location is a byte offset in the mutable region. */
  accepted: 1,
  /** Committed: location is the address of its record in the durable tail. */
  committed: 2,
  /** Deleted (a tombstone, so probe chains stay intact). */
  deleted: 3,
} as const;
/** A slot state value. */
export type SlotState = typeof SlotState[keyof typeof SlotState];

/** Smallest table: 4,096 slots (96 KiB of arrays). */
const CAPACITY_MIN = 4096;

/** Slots per block: a block's slots sit side by side in the table (8 cache lines of keys). */
const BLOCK_SLOTS_LOG2 = 6;

/**
 * Table position of a 53-bit slot: blocks of 64 consecutive slots are placed by a multiplicative
 * hash of the block number, and a slot's place inside its block is kept. Dense slot ranges (the
 * usual consensus log) then touch memory sequentially instead of missing cache on every lookup,
 * while strided or sparse slots still spread over the table.
 */
function hashSlot(slot: number, mask: number): number {
  const low = slot >>> 0;
  const high = (slot / 0x1_0000_0000) >>> 0;
  const block = (low >>> BLOCK_SLOTS_LOG2) ^ Math.imul(high, 0x85eb_ca6b);
  const spread = Math.imul(block ^ (block >>> 15), 0x9e37_79b1) >>> 0;
  return ((spread << BLOCK_SLOTS_LOG2) | (low & ((1 << BLOCK_SLOTS_LOG2) - 1))) & mask;
}

/** The buffers of a slot index, structured-cloneable for a Worker. */
export interface SlotIndexBuffers {
  keys: SharedArrayBuffer;
  locations: SharedArrayBuffer;
  states: SharedArrayBuffer;
}

/** A shared-memory hash table from slot to state and location. */
export class SlotIndex {
  #keys!: Float64Array;
  #locations!: Float64Array;
  #states!: Int32Array;
  #mask = 0;
  #count = 0;
  #used = 0; // live entries plus tombstones: what probing has to walk

  /** @param capacity Initial number of table positions (rounded up to a power of two). */
  constructor(capacity = CAPACITY_MIN) {
    this.#allocate(Math.max(CAPACITY_MIN, 2 ** Math.ceil(Math.log2(capacity))));
  }

  #allocate(capacity: number): void {
    this.#keys = new Float64Array(new SharedArrayBuffer(capacity * 8));
    this.#locations = new Float64Array(new SharedArrayBuffer(capacity * 8));
    this.#states = new Int32Array(new SharedArrayBuffer(capacity * 4));
    this.#mask = capacity - 1;
    this.#used = 0;
  }

  /** Number of live entries (accepted or committed). */
  get count(): number {
    return this.#count;
  }

  /** Table positions allocated. */
  get capacity(): number {
    return this.#mask + 1;
  }

  /** The current buffers (they change when the table grows). */
  get buffers(): SlotIndexBuffers {
    return {
      keys: this.#keys.buffer as SharedArrayBuffer,
      locations: this.#locations.buffer as SharedArrayBuffer,
      states: this.#states.buffer as SharedArrayBuffer,
    };
  }

  /** The table position holding `slot`, or -1. */
  find(slot: number): number {
    const keys = this.#keys;
    const states = this.#states;
    const mask = this.#mask;
    for (let position = hashSlot(slot, mask);; position = (position + 1) & mask) {
      const state = Atomics.load(states, position);
      if (state === SlotState.empty) return -1;
      if (state !== SlotState.deleted && keys[position] === slot) return position;
    }
  }

  /** State at a position returned by {@linkcode SlotIndex.find}. */
  stateAt(position: number): SlotState {
    return Atomics.load(this.#states, position) as SlotState;
  }

  /** Location at a position returned by {@linkcode SlotIndex.find}. */
  locationAt(position: number): number {
    return this.#locations[position];
  }

  /** Slot at a position. */
  slotAt(position: number): number {
    return this.#keys[position];
  }

  /** Sets `slot` to `state` at `location`, inserting it if absent. */
  set(slot: number, state: SlotState, location: number): void {
    const found = this.find(slot);
    if (found >= 0) {
      this.#locations[found] = location;
      Atomics.store(this.#states, found, state);
      return;
    }
    if ((this.#used + 1) * 2 > this.capacity) this.#grow();
    const mask = this.#mask;
    let position = hashSlot(slot, mask);
    while (
      this.#states[position] === SlotState.accepted ||
      this.#states[position] === SlotState.committed
    ) {
      position = (position + 1) & mask;
    }
    if (this.#states[position] === SlotState.empty) this.#used++;
    this.#keys[position] = slot;
    this.#locations[position] = location;
    Atomics.store(this.#states, position, state);
    this.#count++;
  }

  /** Removes `slot`; returns whether it was present. */
  delete(slot: number): boolean {
    const position = this.find(slot);
    if (position < 0) return false;
    Atomics.store(this.#states, position, SlotState.deleted);
    this.#count--;
    return true;
  }

  /** Calls `visit(slot, state, location)` for every live entry (table order). */
  forEach(visit: (slot: number, state: SlotState, location: number) => void): void {
    const states = this.#states;
    for (let position = 0; position <= this.#mask; position++) {
      const state = states[position];
      if (state === SlotState.accepted || state === SlotState.committed) {
        visit(this.#keys[position], state as SlotState, this.#locations[position]);
      }
    }
  }

  #grow(): void {
    const keys = this.#keys;
    const locations = this.#locations;
    const states = this.#states;
    // Grow when live entries fill a quarter; otherwise the table is full of tombstones: rebuild.
    const capacity = this.#count * 4 > this.capacity ? this.capacity * 2 : this.capacity;
    this.#allocate(capacity);
    this.#count = 0;
    for (let position = 0; position < states.length; position++) {
      const state = states[position];
      if (state === SlotState.accepted || state === SlotState.committed) {
        this.set(keys[position], state as SlotState, locations[position]);
      }
    }
  }
}
