/**
 * The slot index: `slot → word` in shared memory, readable and writable by every thread without
 * locks. Each slot has one 32-bit word changed only with `Atomics.compareExchange`, which is what
 * makes the ballot rule hold across Workers: an accept installs its entry only if the word still
 * names the entry it compared its ballot against.
 *
 * | word            | meaning                                                           |
 * |-----------------|-------------------------------------------------------------------|
 * | 0               | empty                                                             |
 * | 1               | committed and durable: the record address is in the leaf          |
 * | 2 + offset / 8  | accepted: the entry at `offset` in the mutable region             |
 * | −(2 + offset/8) | frozen: being committed by the owner; the entry is still readable |
 *
 * The structure is a radix tree over 64-slot blocks, in one `SharedArrayBuffer`: six levels of
 * 256-way nodes, then leaves of 64 words and 64 addresses. Nodes are created with a
 * compare-and-swap of a null child and never move, and dense slot ranges read sequentially. A
 * leaf emptied by truncation is unlinked by the owner, retired through the epoch table, zeroed
 * and recycled, and so are the nodes of the two levels above leaves once truncation has emptied
 * them: a log that truncates as it goes keeps an index the size of what it holds (the nodes were
 * kept before, 1 KiB per 16k slots, and filled a 64 MiB index after about a billion slots).
 *
 * The buffer is reserved at its largest size up front rather than grown: both runtimes commit a
 * `SharedArrayBuffer`'s pages only when touched (20 × 512 MiB cost no RSS here), while every
 * access through a length-tracking view of a growable buffer reads its shared length — measured
 * at 2.36M against 3.77M accepts/s for two Deno Workers sharing one log.
 *
 * @module
 */
import { RegionFullError } from "./errors.ts";
import type { CheckpointPairs } from "./index_checkpoint.ts";

/** A slot word: see the module comment. */
export const SLOT_EMPTY = 0;
/** A slot word: committed and durable. */
export const SLOT_COMMITTED = 1;

/** The slot word of an accepted entry at region `offset`. */
export function acceptedWord(offset: number): number {
  return 2 + offset / 8;
}
/** The region offset of an accepted or frozen word. */
export function wordOffset(word: number): number {
  return ((word < 0 ? -word : word) - 2) * 8;
}

const LANE_BITS = 6;
const LANES = 1 << LANE_BITS;
/** Slots per leaf (see {@linkcode SlotIndex.forEachLeaf}). */
export const LEAF_SLOTS = LANES;
/** Leaves {@linkcode SlotIndex.committedPairsInSteps} walks per step (16k slots). */
export const PAIRS_STEP_LEAVES = 256;
const FANOUT = 256;
const LEAF_WORDS = LANES * 3; // 64 state words, then 64 float64 addresses
const INNER_WORDS = FANOUT;
const ALIGN_WORDS = 64; // every node starts on a multiple of 64 words: a position's lane is pos & 63

// Header words. Words written often (ALLOC, the free ring's counters) sit on other 64-byte lines
// than those every lookup reads (ROOT, LEAF_GENERATION), so writers do not slow lookups down.
const ROOT = 0;
const LEAF_GENERATION = 1; // bumped when a node is unlinked: invalidates cached leaves
const ALLOC = 16; // next free word
// Recycled nodes: rings pushed by the owner and popped by anyone, one for leaves, one for the
// inner nodes of the two levels above them (see FreeRing).
const LEAF_RING: FreeRing = { pushed: 32, popped: 48, ring: 64, size: 960 };
const INNER_RING: FreeRing = { pushed: 1024, popped: 1040, ring: 1056, size: 960 };
const HEADER_WORDS = 2048;
/** Inner nodes of levels below this one are recycled (the level-2 node a thread caches is not). */
const RECYCLED_LEVELS = 2;

/** A ring of recycled nodes in the header: its two counters' words, its first word, its size. */
interface FreeRing {
  pushed: number;
  popped: number;
  ring: number;
  size: number;
}

/**
 * Nodes {@linkcode SlotIndex.unlinkBelow} unlinked, for {@linkcode SlotIndex.recycle}: leaves,
 * and inner nodes as (node, level) pairs (level 0: the parent of leaves).
 */
export interface UnlinkedNodes {
  leaves: number[];
  inner: number[];
}

/**
 * The index's default reservation: 64 MiB of address space, room for about 5.5 million live
 * slots (768 B per 64-slot leaf). Pages are committed only when touched, but Bun counts the whole
 * reservation as external memory (and has paused hundreds of ms collecting right after a 512 MiB
 * one was made), so the default stays modest and the `indexSizeBytes` option raises it.
 */
export const INDEX_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Smallest `indexSizeBytes`. */
export const INDEX_SIZE_BYTES_MIN = 1024 * 1024;
/** Largest `indexSizeBytes` (about 87 million live slots). */
export const INDEX_SIZE_BYTES_MAX = 1024 * 1024 * 1024;

/**
 * Committed slots the index takes from a reopened log's checkpoint as they are first looked up
 * (see {@linkcode SlotIndex.attachBase}).
 */
export interface IndexBase {
  /** The checkpoint's committed pairs, in slot order. */
  readonly pairs: CheckpointPairs;
  /** Pairs of a lower slot are skipped (truncated): read at every use. */
  slotMin(): number;
  /** Pairs of a lower address are skipped. */
  readonly addressMin: number;
  /**
   * Called when a chunk of pairs turns out damaged: must give the index, by other means, every
   * slot the pairs would have, and detach the base; or throw (every later lookup that needs the
   * base then calls it again).
   */
  damaged(): void;
}

/** A thread's handle on the shared slot index. */
export class SlotIndex {
  readonly buffer: SharedArrayBuffer;
  /** The buffer as words, for `Atomics` on positions from {@linkcode SlotIndex.position}. */
  readonly words: Int32Array;
  #floats: Float64Array;
  // Per-thread caches: the last leaf, and the level-2 node of the last high half of a block.
  #cachedBlock = -1;
  #cachedLeaf = 0;
  #cachedGeneration = 0;
  #cachedHigh = -1;
  #cachedNode = 0;
  /**
   * Owner only: recycled leaves the free ring had no room for (a truncation can free thousands),
   * used by this thread first and offered to the ring as it drains. Before, they were dropped: a
   * log truncating 200k slots at a time filled a 16 MiB index in 9 rounds with no slot left.
   */
  #spare: number[] = [];
  /** Owner only: recycled inner nodes the inner ring had no room for. */
  #spareInner: number[] = [];
  /** Owner only, before `share()`: committed slots not taken into the index yet. */
  #base: IndexBase | undefined;
  /**
   * No other thread can see the index (the owner before `share()`): words are read with plain
   * loads (an atomic load costs 6–11 ns here, a plain one about 1).
   */
  solo = false;

  /**
   * Creates an index of `sizeBytes`, or attaches to the `buffer` of an existing one; with `create`,
   * makes a new index in `buffer`, which must be all zeros.
   */
  constructor(
    buffer?: SharedArrayBuffer,
    sizeBytes: number = INDEX_SIZE_BYTES_DEFAULT,
    create: boolean = buffer === undefined,
  ) {
    this.buffer = buffer ?? new SharedArrayBuffer(sizeBytes);
    this.words = new Int32Array(this.buffer);
    this.#floats = new Float64Array(this.buffer);
    if (create) {
      Atomics.store(this.words, ALLOC, HEADER_WORDS);
      Atomics.store(this.words, ROOT, this.#allocate(INNER_WORDS));
    }
  }

  /** Bytes of the index in use (nodes allocated so far; the rest is reserved, not touched). */
  get sizeBytes(): number {
    return Math.min(Atomics.load(this.words, ALLOC), this.words.length) * 4;
  }

  /**
   * The word at `at` (a slot's position, or a node's child): a plain load while no other thread
   * can see the index ({@linkcode SlotIndex.solo}), else an atomic one.
   */
  wordAt(at: number): number {
    return this.solo ? this.words[at] : Atomics.load(this.words, at);
  }

  #allocate(count: number): number {
    const start = Atomics.add(this.words, ALLOC, count);
    if (start + count > this.words.length) {
      throw new RegionFullError(
        `Cannot add a slot: the slot index is full at ${this.buffer.byteLength} bytes ` +
          `(truncate older slots, or open the log with a larger indexSizeBytes)`,
      );
    }
    return start;
  }

  /** A zeroed node of `size` words: a recycled one if there is one, else a new one. */
  #newNode(size: number): number {
    const leaf = size === LEAF_WORDS;
    return this.#popFree(leaf ? LEAF_RING : INNER_RING) ??
      (leaf ? this.#spare : this.#spareInner).pop() ?? this.#allocate(size);
  }

  #popFree({ pushed, popped: poppedAt, ring, size }: FreeRing): number | undefined {
    const words = this.words;
    for (;;) {
      const popped = Atomics.load(words, poppedAt);
      if (((Atomics.load(words, pushed) - popped) | 0) <= 0) return undefined;
      const node = Atomics.load(words, ring + ((popped >>> 0) % size));
      // The counters only grow, so a successful swap means no other thread took this node.
      if (Atomics.compareExchange(words, poppedAt, popped, popped + 1) === popped) return node;
    }
  }

  /** Offers the owner's spare nodes to other threads through `free`, while it has room. */
  #offerFree(spare: number[], { pushed: pushedAt, popped, ring, size }: FreeRing): void {
    const words = this.words;
    while (spare.length > 0) {
      const pushed = Atomics.load(words, pushedAt);
      if (((pushed - Atomics.load(words, popped)) | 0) >= size) break;
      Atomics.store(words, ring + ((pushed >>> 0) % size), spare.pop()!);
      Atomics.store(words, pushedAt, pushed + 1);
    }
  }

  /**
   * Owner only, on an index no other thread can see yet (before `share()`): the committed slots of
   * `base` count as set, each leaf's taken from it (and checked) when one of its slots is first
   * looked up. Reopening 1M committed slots took 13–30 ms when they were all stored at open.
   * {@linkcode SlotIndex.counts} and {@linkcode SlotIndex.committedPairsInSteps} count and list
   * the base's slots too; {@linkcode SlotIndex.forEach} and the other walks see only the leaves
   * taken so far: load the rest (or a range's) first with {@linkcode SlotIndex.loadBaseInSteps}.
   */
  attachBase(base: IndexBase): void {
    this.#base = base;
  }

  /** The attached base, if any. */
  get base(): IndexBase | undefined {
    return this.#base;
  }

  /** Detaches the base (every lookup uses the index alone from now on). */
  detachBase(): void {
    this.#base = undefined;
  }

  /**
   * Takes every leaf of the base not taken yet into the index, or those holding a slot of
   * `[from, to)`, pausing after every {@linkcode PAIRS_STEP_LEAVES} leaves; the caller detaches
   * the base after a whole load. Ends early if the base is detached meanwhile (a damaged chunk).
   * One pass over each chunk's pairs with plain stores, as recovery stored them before the base
   * existed (a lookup per leaf took 80–110 ms for 1M slots, against 10–15).
   */
  *loadBaseInSteps(from = 0, to = Infinity): Generator<undefined, void, undefined> {
    const base = this.#base;
    if (base === undefined) return;
    const checkpoint = base.pairs;
    const words = this.words;
    const floats = this.#floats;
    // Whole leaves: a leaf in the index stands for all its slots from then on.
    const start = from === 0 ? 0 : checkpoint.lowerBound(from - (from % LANES));
    if (start < 0) return base.damaged();
    let slotMin = base.slotMin();
    let leaves = 0;
    // The first slot of the current leaf, and its position (−1: taken before, left as it is).
    let first = -Infinity;
    let leaf = -1;
    const chunkPairs = checkpoint.chunkPairs;
    for (let chunk = Math.floor(start / chunkPairs); chunk < checkpoint.chunks; chunk++) {
      let pairs = checkpoint.chunk(chunk);
      if (pairs === null) return base.damaged();
      const count = checkpoint.countOf(chunk);
      for (let i = Math.max(0, start - chunk * chunkPairs); i < count; i++) {
        const slot = pairs[2 * i];
        const address = pairs[2 * i + 1];
        let lane = slot - first;
        if (!(lane >= 0 && lane < LANES)) {
          lane = slot % LANES;
          if (slot - lane >= to) return;
          // A new leaf: pauses only here, so no leaf is left half taken across a pause.
          if (++leaves % PAIRS_STEP_LEAVES === 0) {
            yield;
            if (this.#base !== base) return;
            slotMin = base.slotMin(); // a truncation may have run meanwhile
            pairs = checkpoint.chunk(chunk); // other lookups may have read other chunks
            if (pairs === null) return base.damaged();
          }
          first = slot - lane;
          leaf = this.#find(slot, false) >= 0 ? -1 : -2; // −2: not made yet
        }
        if (leaf === -1 || slot < slotMin || address < base.addressMin) continue;
        if (leaf === -2) leaf = this.#find(slot, true) - lane;
        floats[(leaf >>> 1) + (LANES >>> 1) + lane] = address;
        words[leaf + lane] = SLOT_COMMITTED;
      }
    }
  }

  /**
   * Owner only: how many slots are committed and how many accepted (or frozen), counting the
   * pairs of a base's leaves not taken yet without taking them (see
   * {@linkcode SlotIndex.attachBase}).
   */
  counts(): { committed: number; accepted: number } {
    let committed = 0;
    let accepted = 0;
    const base = this.#base;
    const leafSlots: number[] = [];
    // Alone, plain loads (here and in the walk): stats() of 1M live slots took 9.2 / 19.0 ms
    // (Bun / Deno) with atomic ones, 2.5 / 2.5 ms with plain ones. The choice is made once per
    // walk, not per word through wordAt (Deno: 4.1–6.6 ms against 2.5–3.5).
    const words = this.words;
    const solo = this.solo;
    this.forEachLeaf((firstSlot, leaf) => {
      if (base !== undefined) leafSlots.push(firstSlot);
      for (let lane = 0; lane < LANES; lane++) {
        const word = solo ? words[leaf + lane] : Atomics.load(words, leaf + lane);
        if (word === SLOT_COMMITTED) committed++;
        else if (word !== SLOT_EMPTY) accepted++;
      }
    });
    if (base === undefined) return { committed, accepted };
    const steps = this.#baseCountInSteps(base, leafSlots);
    let step = steps.next();
    while (!step.done) step = steps.next();
    // A damaged chunk: the base's slots went into the index instead.
    if (this.#base !== base) return this.counts();
    return { committed: committed + step.value, accepted };
  }

  /**
   * How many pairs of `base` stand for slots of leaves not in the index, pausing after reading
   * {@linkcode PAIRS_STEP_LEAVES} leaves' worth of pairs; −1 if the base is detached meanwhile
   * (a damaged chunk). `leafSlots` are the first slots of the index's leaves a moment ago, in
   * order: a chunk that none of them overlaps, wholly at or above both minimums, counts all its
   * pairs by the directory, unread (1M slots untouched since a reopen: no chunk read). Other
   * chunks are read, and the index asked about each of their leaves.
   */
  *#baseCountInSteps(
    base: IndexBase,
    leafSlots: readonly number[],
  ): Generator<undefined, number, undefined> {
    const checkpoint = base.pairs;
    const chunks = checkpoint.chunks;
    let slotMin = base.slotMin();
    let count = 0;
    let read = 0;
    let next = 0; // the first of leafSlots that may overlap this chunk or a later one
    for (let chunk = 0; chunk < chunks; chunk++) {
      const firstSlot = checkpoint.firstSlotOf(chunk);
      const end = chunk + 1 < chunks ? checkpoint.firstSlotOf(chunk + 1) : checkpoint.lastSlot + 1;
      if (end <= slotMin) continue;
      while (next < leafSlots.length && leafSlots[next] + LANES <= firstSlot) next++;
      const touched = next < leafSlots.length && leafSlots[next] < end;
      if (
        !touched && firstSlot >= slotMin && checkpoint.leastAddressOf(chunk) >= base.addressMin
      ) {
        count += checkpoint.countOf(chunk);
        continue;
      }
      if (read >= PAIRS_STEP_LEAVES * LANES) {
        yield;
        if (this.#base !== base) return -1;
        slotMin = base.slotMin();
        read = 0;
      }
      const pairs = checkpoint.chunk(chunk);
      if (pairs === null) {
        this.#damaged(base);
        return -1;
      }
      const size = checkpoint.countOf(chunk);
      read += size;
      let first = -Infinity;
      let inIndex = false;
      for (let i = 0; i < size; i++) {
        const slot = pairs[2 * i];
        if (slot - first >= LANES) {
          first = slot - (slot % LANES);
          inIndex = this.#find(slot, false) >= 0;
        }
        if (!inIndex && slot >= slotMin && pairs[2 * i + 1] >= base.addressMin) count++;
      }
    }
    return count;
  }

  /**
   * The word position of `slot` (for `Atomics` on {@linkcode SlotIndex.words}), or -1 if its leaf
   * does not exist and `create` is false. Call inside an epoch section.
   */
  position(slot: number, create: boolean): number {
    // The last leaf first: most lookups end here, with no further call.
    const lane = slot % LANES;
    if (
      (slot - lane) / LANES === this.#cachedBlock &&
      this.wordAt(LEAF_GENERATION) === this.#cachedGeneration
    ) {
      return this.#cachedLeaf + lane;
    }
    if (this.#base === undefined) return this.#find(slot, create);
    const found = this.#find(slot, false);
    return found >= 0 ? found : this.#fromBase(slot, create);
  }

  /**
   * {@linkcode SlotIndex.position} of a slot whose leaf does not exist, with a base attached:
   * makes the leaf from the base's pairs of its 64 slots (if it has any, or `create`).
   */
  #fromBase(slot: number, create: boolean): number {
    const base = this.#base!;
    const lane = slot % LANES;
    const first = slot - lane;
    const checkpoint = base.pairs;
    let from = 0;
    let to = 0;
    if (first <= checkpoint.lastSlot && first + LANES > checkpoint.firstSlot) {
      from = checkpoint.lowerBound(first);
      to = from < 0 ? -1 : checkpoint.lowerBound(first + LANES);
      if (to < 0 || !checkpoint.verify(from, to)) {
        base.damaged(); // detaches the base, or throws
        return this.position(slot, create);
      }
    }
    const slotMin = base.slotMin();
    const addressMin = base.addressMin;
    let live = create;
    for (let i = from; i < to && !live; i++) {
      live = checkpoint.slotAt(i) >= slotMin && checkpoint.addressAt(i) >= addressMin;
    }
    if (!live) return -1;
    const position = this.#find(slot, true);
    const leaf = position - lane;
    const words = this.words;
    const addresses = (leaf >>> 1) + (LANES >>> 1);
    // Plain stores: no other thread can see the index while a base is attached.
    for (let i = from; i < to; i++) {
      const pairSlot = checkpoint.slotAt(i);
      const address = checkpoint.addressAt(i);
      if (pairSlot < slotMin || address < addressMin) continue;
      this.#floats[addresses + pairSlot - first] = address;
      words[leaf + pairSlot - first] = SLOT_COMMITTED;
    }
    return position;
  }

  /**
   * The walk of {@linkcode SlotIndex.position} from the root, without the base (its callers have
   * looked at the last leaf already); caches the leaf it finds.
   */
  #find(slot: number, create: boolean): number {
    const lane = slot % LANES;
    const block = (slot - lane) / LANES;
    const generation = this.wordAt(LEAF_GENERATION);
    const high = Math.floor(block / 0x100_0000);
    const low = block - high * 0x100_0000;
    let node = this.#cachedNode;
    if (high !== this.#cachedHigh) {
      node = this.wordAt(ROOT);
      for (const digit of [high >>> 16, (high >>> 8) & 0xff, high & 0xff]) {
        node = this.#child(node, digit, create, INNER_WORDS);
        if (node === 0) return -1;
      }
      this.#cachedHigh = high;
      this.#cachedNode = node;
    }
    node = this.#child(node, low >>> 16, create, INNER_WORDS);
    if (node === 0) return -1;
    node = this.#child(node, (low >>> 8) & 0xff, create, INNER_WORDS);
    if (node === 0) return -1;
    const leaf = this.#child(node, low & 0xff, create, LEAF_WORDS);
    if (leaf === 0) return -1;
    this.#cachedBlock = block;
    this.#cachedLeaf = leaf;
    this.#cachedGeneration = generation;
    return leaf + lane;
  }

  #child(node: number, digit: number, create: boolean, size: number): number {
    const at = node + digit;
    const child = this.wordAt(at);
    if (child !== 0 || !create) return child;
    const made = this.#newNode(size);
    const found = Atomics.compareExchange(this.words, at, 0, made);
    // Lost the race: another thread linked a node first (the unused one is left behind).
    return found === 0 ? made : found;
  }

  /** The current word of `slot` (0 when absent). Call inside an epoch section. */
  wordOf(slot: number): number {
    const position = this.position(slot, false);
    return position < 0 ? SLOT_EMPTY : this.wordAt(position);
  }

  /** The durable address stored beside a committed word at `position`. */
  addressAt(position: number): number {
    const lane = position & (ALIGN_WORDS - 1);
    return this.#floats[((position - lane) >>> 1) + (LANES >>> 1) + lane];
  }

  /** Stores the address of `position` (before its word becomes {@linkcode SLOT_COMMITTED}). */
  setAddressAt(position: number, address: number): void {
    const lane = position & (ALIGN_WORDS - 1);
    this.#floats[((position - lane) >>> 1) + (LANES >>> 1) + lane] = address;
  }

  /** Sets `slot` to committed at `address` (owner only: recovery). */
  setCommitted(slot: number, address: number): number {
    const position = this.position(slot, true);
    this.setAddressAt(position, address);
    return Atomics.exchange(this.words, position, SLOT_COMMITTED);
  }

  /** Calls `visit(slot, word, position)` for every non-empty slot, in slot order. */
  forEach(
    visit: (slot: number, word: number, position: number) => void,
    from = 0,
    to = Infinity,
  ): void {
    const words = this.words;
    const solo = this.solo; // once per walk, as in counts()
    this.forEachLeaf(
      (firstSlot, leaf) => {
        for (let lane = 0; lane < LEAF_SLOTS; lane++) {
          const word = solo ? words[leaf + lane] : Atomics.load(words, leaf + lane);
          if (word !== SLOT_EMPTY) visit(firstSlot + lane, word, leaf + lane);
        }
      },
      from,
      to,
    );
  }

  /**
   * Calls `visit(firstSlot, leaf)` for every leaf, in slot order: slot `firstSlot + lane` has
   * position `leaf + lane` for lanes 0 to {@linkcode LEAF_SLOTS} − 1. With `from` and `to`, only
   * the leaves holding a slot of `[from, to)`, and only the nodes above them are walked (a range
   * of a large index no longer walks all of it).
   */
  forEachLeaf(visit: (firstSlot: number, leaf: number) => void, from = 0, to = Infinity): void {
    const fromBlock = Math.floor(from / LANES);
    const toBlock = Math.ceil(to / LANES);
    if (fromBlock >= toBlock) return;
    this.#walk(Atomics.load(this.words, ROOT), 5, 0, visit, fromBlock, toBlock);
  }

  /**
   * Owner only (the one thread that writes {@linkcode SLOT_COMMITTED}): every committed slot
   * whose address is below `addressEnd`, as pairs (slot, address) in slot order, starting
   * `offsetBytes` (a multiple of 8) into a new buffer, so a caller can put a header before them
   * without copying them. One flat loop over plain loads (no call per slot; a committed word
   * changes only in this thread) into a typed array: 1.5M slots took 20–30 ms against 85–130 ms
   * for `forEach` with a closure pushing onto an array, in both runtimes. The index checkpoint
   * uses {@linkcode SlotIndex.committedPairsInSteps} instead, so as not to hold the owner's turn
   * that long.
   */
  committedPairs(addressEnd: number, offsetBytes = 0): Float64Array {
    const steps = this.committedPairsInSteps(addressEnd, offsetBytes);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * {@linkcode SlotIndex.committedPairs} in steps: the generator pauses after every
   * {@linkcode PAIRS_STEP_LEAVES} leaves (16k slots: 0.2 ms median, 0.3 ms p90 here), so the owner can
   * run other work between steps. Two changes may happen between steps, both the owner's:
   * commits, whose addresses are at least `addressEnd` (not listed), and truncations below a
   * slot, which `slotMin()` must report before any leaf is unlinked: a leaf wholly below it is
   * skipped from then on (it may have been recycled for other slots). The pairs then lack the
   * slots a truncation emptied before they were reached, or list some emptied after; recovery
   * drops pairs below the truncated slot. The buffer may end past the pairs (by 16 B per slot
   * truncated between the count and the listing).
   *
   * With a base attached, the pairs of the leaves not taken from it are merged in from its
   * chunks rather than taken into the index (see {@linkcode SlotIndex.attachBase}): the list is
   * the one a whole load followed by this walk would give.
   */
  *committedPairsInSteps(
    addressEnd: number,
    offsetBytes = 0,
    slotMin: () => number = () => 0,
  ): Generator<undefined, Float64Array, undefined> {
    const base = this.#base;
    if (base !== undefined) {
      return yield* this.#mergedPairsInSteps(base, addressEnd, offsetBytes, slotMin);
    }
    const leaves: number[] = [];
    this.forEachLeaf((firstSlot, leaf) => {
      leaves.push(firstSlot, leaf);
    });
    const words = this.words;
    const floats = this.#floats;
    const stepNumbers = PAIRS_STEP_LEAVES * 2;
    // Counted first, so the buffer is exact (an upper bound is 64 times too large for sparse slots).
    const count = yield* this.#countCommitted(leaves, addressEnd, slotMin);
    let below = slotMin();
    const pairs = new Float64Array(new ArrayBuffer(offsetBytes + count * 16), offsetBytes);
    let at = 0;
    for (let i = 0; i < leaves.length; i += 2) {
      if (i % stepNumbers === 0) {
        yield;
        below = slotMin();
      }
      const firstSlot = leaves[i];
      if (firstSlot + LANES <= below) continue;
      const leaf = leaves[i + 1];
      const addresses = (leaf >>> 1) + (LANES >>> 1);
      for (let lane = 0; lane < LANES; lane++) {
        if (words[leaf + lane] !== SLOT_COMMITTED) continue;
        const address = floats[addresses + lane];
        if (address >= addressEnd) continue;
        if (at === pairs.length) {
          throw new Error("assertion failed: more committed slots below the address than counted");
        }
        pairs[at++] = firstSlot + lane;
        pairs[at++] = address;
      }
    }
    return at === pairs.length ? pairs : pairs.subarray(0, at);
  }

  /**
   * How many slots of `leaves` (first slot, leaf, …) are committed below `addressEnd`, leaves
   * wholly below `slotMin()` left out; pauses after every {@linkcode PAIRS_STEP_LEAVES} leaves.
   */
  *#countCommitted(
    leaves: readonly number[],
    addressEnd: number,
    slotMin: () => number,
  ): Generator<undefined, number, undefined> {
    const words = this.words;
    const floats = this.#floats;
    let count = 0;
    let below = slotMin();
    for (let i = 0; i < leaves.length; i += 2) {
      if (i !== 0 && i % (PAIRS_STEP_LEAVES * 2) === 0) {
        yield;
        below = slotMin();
      }
      if (leaves[i] + LANES <= below) continue;
      const leaf = leaves[i + 1];
      const addresses = (leaf >>> 1) + (LANES >>> 1);
      for (let lane = 0; lane < LANES; lane++) {
        if (words[leaf + lane] === SLOT_COMMITTED && floats[addresses + lane] < addressEnd) count++;
      }
    }
    return count;
  }

  /**
   * {@linkcode SlotIndex.committedPairsInSteps} with `base` attached: the index's committed pairs
   * merged, leaf by leaf in slot order, with the base's pairs of leaves the index does not hold,
   * read a chunk at a time. Whether a leaf is in the index is asked as it is listed, since
   * between steps lookups take leaves from the base and a truncation unlinks some (those wholly
   * below `slotMin()`, whose pairs are all skipped either way); either way its pairs are the
   * same, and a leaf made after the walk passed it holds only commits at `addressEnd` or later.
   * If the base is detached meanwhile (a damaged chunk replaced, or a whole load), every slot is
   * in the index: the walk starts over without it.
   */
  *#mergedPairsInSteps(
    base: IndexBase,
    addressEnd: number,
    offsetBytes: number,
    slotMin: () => number,
  ): Generator<undefined, Float64Array, undefined> {
    const checkpoint = base.pairs;
    const restart = () => this.committedPairsInSteps(addressEnd, offsetBytes, slotMin);
    const words = this.words;
    const floats = this.#floats;
    // Counted first, the base's leaves before the index's: a leaf taken from the base between
    // the two is counted twice (the buffer is an upper bound), never not at all.
    const leafSlots: number[] = [];
    this.forEachLeaf((firstSlot) => {
      leafSlots.push(firstSlot);
    });
    let count = yield* this.#baseCountInSteps(base, leafSlots);
    if (this.#base !== base) return yield* restart();
    const leaves: number[] = [];
    this.forEachLeaf((firstSlot, leaf) => {
      leaves.push(firstSlot, leaf);
    });
    count += yield* this.#countCommitted(leaves, addressEnd, slotMin);
    if (this.#base !== base) return yield* restart();
    let below = slotMin();
    const pairs = new Float64Array(new ArrayBuffer(offsetBytes + count * 16), offsetBytes);
    let at = 0;
    const overflow = (): never => {
      throw new Error("assertion failed: more committed slots below the address than counted");
    };
    // The base's cursor: pair `i` of chunk `chunk` (of `size` pairs), and the index's (`t`, into
    // the leaves found when counting: a leaf made since holds base pairs or new commits only).
    const chunks = checkpoint.chunks;
    let chunk = 0;
    let i = 0;
    let size = checkpoint.countOf(0);
    let chunkPairs = chunks === 0 ? null : checkpoint.chunk(0);
    if (chunks > 0 && chunkPairs === null) {
      this.#damaged(base);
      return yield* restart();
    }
    let t = 0;
    let walked = 0;
    let baseSlotMin = base.slotMin();
    for (;;) {
      const fromLeaves = t < leaves.length ? leaves[t] : Infinity;
      const next = chunk < chunks ? chunkPairs![2 * i] : -1;
      const first = Math.min(fromLeaves, next < 0 ? Infinity : next - (next % LANES));
      if (first === Infinity) break;
      // Pauses only between leaves, so a leaf is listed from one source.
      if (walked++ % PAIRS_STEP_LEAVES === 0) {
        yield;
        if (this.#base !== base) return yield* restart();
        below = slotMin();
        baseSlotMin = base.slotMin();
        if (chunk < chunks) {
          chunkPairs = checkpoint.chunk(chunk); // lookups may have read other chunks
          if (chunkPairs === null) {
            this.#damaged(base);
            return yield* restart();
          }
        }
      }
      if (first === fromLeaves) t += 2;
      const leaf = this.#find(first, false);
      const live = first + LANES > below;
      if (leaf >= 0 && live) {
        const addresses = (leaf >>> 1) + (LANES >>> 1);
        for (let lane = 0; lane < LANES; lane++) {
          if (words[leaf + lane] !== SLOT_COMMITTED) continue;
          const address = floats[addresses + lane];
          if (address >= addressEnd) continue;
          if (at === pairs.length) overflow();
          pairs[at++] = first + lane;
          pairs[at++] = address;
        }
      }
      // The base's pairs of this leaf: listed if the index has no leaf for them, else passed.
      while (chunk < chunks) {
        const slot = chunkPairs![2 * i];
        if (slot >= first + LANES) break;
        const address = chunkPairs![2 * i + 1];
        if (
          leaf < 0 && live && slot >= baseSlotMin && address >= base.addressMin &&
          address < addressEnd
        ) {
          if (at === pairs.length) overflow();
          pairs[at++] = slot;
          pairs[at++] = address;
        }
        if (++i < size) continue;
        i = 0;
        if (++chunk === chunks) break;
        size = checkpoint.countOf(chunk);
        chunkPairs = checkpoint.chunk(chunk);
        if (chunkPairs === null) {
          this.#damaged(base);
          return yield* restart();
        }
      }
    }
    return at === pairs.length ? pairs : pairs.subarray(0, at);
  }

  /**
   * Reports a damaged chunk of `base`, which must detach it (having put its slots in the index
   * by other means) or throw: a walk that went on with it would meet the same chunk again.
   */
  #damaged(base: IndexBase): void {
    base.damaged();
    if (this.#base === base) throw new Error("assertion failed: a damaged base is still attached");
  }

  /** Visits the leaves under `node` whose blocks (64-slot ranges) lie in `[fromBlock, toBlock)`. */
  #walk(
    node: number,
    level: number,
    prefix: number,
    visit: (firstSlot: number, leaf: number) => void,
    fromBlock: number,
    toBlock: number,
  ): void {
    // The children of `node` span FANOUT ** level blocks each, the first from prefix's.
    const span = FANOUT ** level;
    const first = prefix * FANOUT;
    const low = Math.max(0, Math.floor(fromBlock / span) - first);
    const high = Math.min(FANOUT, Math.ceil(toBlock / span) - first);
    for (let digit = low; digit < high; digit++) {
      const child = this.wordAt(node + digit);
      if (child === 0) continue;
      const block = first + digit;
      if (level > 0) this.#walk(child, level - 1, block, visit, fromBlock, toBlock);
      else visit(block * LANES, child);
    }
  }

  /**
   * Owner only, during truncation: unlinks every leaf whose slots are all below `slot` and whose
   * words are all empty, then every inner node of the two levels above leaves left with no child
   * and wholly below `slot`. Hand what it returns to {@linkcode SlotIndex.recycle} once no thread
   * can still be reading them (after an epoch drain).
   */
  unlinkBelow(slot: number): UnlinkedNodes {
    const unlinked: UnlinkedNodes = { leaves: [], inner: [] };
    const words = this.words;
    const limitBlock = Math.floor(slot / LANES); // blocks below this lie wholly under `slot`
    // Unlinks what it can under `node` (its children span FANOUT ** level blocks each); returns
    // whether `node` has no child left.
    const visit = (node: number, level: number, prefix: number): boolean => {
      const span = FANOUT ** level;
      let empty = true;
      for (let digit = 0; digit < FANOUT; digit++) {
        const block = prefix * FANOUT + digit;
        // Never met in a node wholly below the limit: only those are unlinked.
        if (block * span >= limitBlock) return false;
        const child = Atomics.load(words, node + digit);
        if (child === 0) continue;
        let unlink: boolean;
        if (level > 0) {
          // A child wholly below the limit and left empty goes too, if of a recycled level.
          unlink = visit(child, level - 1, block) && level - 1 < RECYCLED_LEVELS &&
            (block + 1) * span <= limitBlock;
        } else {
          unlink = true;
          for (let lane = 0; lane < LANES && unlink; lane++) {
            unlink = Atomics.load(words, child + lane) === SLOT_EMPTY;
          }
        }
        if (unlink && Atomics.compareExchange(words, node + digit, child, 0) === child) {
          if (level > 0) unlinked.inner.push(child, level - 1);
          else unlinked.leaves.push(child);
        } else empty = false;
      }
      return empty;
    };
    visit(Atomics.load(words, ROOT), 5, 0);
    if (unlinked.leaves.length + unlinked.inner.length > 0) {
      Atomics.add(words, LEAF_GENERATION, 1);
    }
    return unlinked;
  }

  /**
   * Owner only: zeroes unlinked nodes and offers them for reuse. `onAccepted` is called for any
   * entry a racing accept left in a leaf (its region space must be freed); a node a racing
   * lookup linked into an unlinked inner node is recycled with it.
   */
  recycle(unlinked: UnlinkedNodes, onAccepted: (word: number) => void): void {
    const words = this.words;
    const leaves = [...unlinked.leaves];
    const inner = [...unlinked.inner];
    while (inner.length > 0) {
      const level = inner.pop()!;
      const node = inner.pop()!;
      for (let digit = 0; digit < FANOUT; digit++) {
        const child = Atomics.exchange(words, node + digit, 0);
        if (child === 0) continue;
        if (level > 0) inner.push(child, level - 1);
        else leaves.push(child);
      }
      this.#spareInner.push(node);
    }
    for (const leaf of leaves) {
      for (let lane = 0; lane < LANES; lane++) {
        const word = Atomics.exchange(words, leaf + lane, SLOT_EMPTY);
        if (word >= 2) onAccepted(word);
      }
      this.#spare.push(leaf);
    }
    this.#offerFree(this.#spare, LEAF_RING);
    this.#offerFree(this.#spareInner, INNER_RING);
  }
}
