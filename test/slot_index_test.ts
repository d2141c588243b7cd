/**
 * The slot index's walks over a reopened log's checkpoint (its base) that take no leaf from it:
 * the merged list of committed pairs, the counts, and the load of a slot range; and truncation's
 * recycling of the nodes it empties.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CHUNK_PAIRS, readIndexCheckpoint, writeIndexCheckpoint } from "../src/index_checkpoint.ts";
import type { DeviceFile } from "../src/device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import {
  acceptedWord,
  LEAF_SLOTS,
  PAIRS_STEP_LEAVES,
  SLOT_COMMITTED,
  SLOT_EMPTY,
  SlotIndex,
} from "../src/slot_index.ts";
import { fileBytes } from "./_helpers.ts";
import { forwardingFile, WrappingDevice } from "./_wrapping_device.ts";

const INDEX_BYTES = 8 * 1024 * 1024;
/** The base's pairs below these are skipped (truncated, or below the begin address). */
const SLOT_MIN = 70;
const ADDRESS_MIN = 1000;

/**
 * A checkpoint of `slots` (in order; the address of the ith is 1000 + 10 i, but below
 * {@linkcode ADDRESS_MIN} for every third of the first 40), attached to new indexes by `attach`;
 * `chunksRead(index)` lists the chunks read for an index since it was attached or last asked.
 */
async function checkpointOf(slots: number[]) {
  const committed = new Float64Array(2 * slots.length);
  slots.forEach((slot, i) => {
    committed[2 * i] = slot;
    committed[2 * i + 1] = i < 40 && i % 3 === 1 ? 500 + i : 1000 + 10 * i;
  });
  const memory = new MemoryDevice();
  memory.makeDirectory("/log");
  await writeIndexCheckpoint(memory, "/log", 3, 1e12, committed, [], true);
  const reads = new WeakMap<SlotIndex, number[]>();
  return {
    committed,
    memory,
    chunksRead(index: SlotIndex): number[] {
      return reads.get(index)!.splice(0);
    },
    attach(
      slotMin: () => number = () => SLOT_MIN,
      damaged: () => void = () => assert.fail("no damage"),
    ) {
      const index = new SlotIndex(undefined, INDEX_BYTES);
      const read: number[] = [];
      class Counting extends WrappingDevice {
        protected override wrapFile(file: DeviceFile): DeviceFile {
          return forwardingFile(file, {
            read: (into, position) => {
              read.push(Math.floor((position - 64) / (16 * CHUNK_PAIRS)));
              return file.read(into, position);
            },
          });
        }
      }
      const pairs = readIndexCheckpoint(new Counting("counting", memory), "/log", 3)!.committed;
      read.length = 0; // the header, the journal and the directory
      reads.set(index, read);
      index.attachBase({ pairs, slotMin, addressMin: ADDRESS_MIN, damaged });
      return index;
    },
  };
}

/** Sparse leaves (one slot each) from slot 100_000. */
const SPARSE_LEAVES = 6 * PAIRS_STEP_LEAVES;

/**
 * Slots over four chunks: slots below {@linkcode SLOT_MIN} (one leaf straddles it) and a dense
 * run from 1000 fill chunks 0–2; chunk 3 holds one slot per leaf from 100_000, then huge slots.
 */
function baseSlots(): number[] {
  const slots = [0, 1, 5, 63, 64, 65, 66, 69, 70, 71, 127, 128, 130];
  for (let slot = 1000; slots.length < 3 * CHUNK_PAIRS; slot++) slots.push(slot);
  for (let leaf = 0; leaf < SPARSE_LEAVES; leaf++) slots.push(100_000 + 64 * leaf + 9);
  slots.push(2 ** 31 + 5, 2 ** 40, 2 ** 52 + 3);
  return slots;
}

/**
 * Changes after a reopen: lookups (chunks 0, 1 and 3), commits in a leaf taken from the base, in
 * one taken by the commit and in a new leaf (below and above the tests' covered address, 5e6),
 * an accepted slot and a frozen one.
 */
function touch(index: SlotIndex): void {
  for (const slot of [66, 1070, 1000 + CHUNK_PAIRS + 3, 100_000 + 64 * 50 + 9, 2 ** 40]) {
    index.wordOf(slot);
  }
  index.setCommitted(100, 2e6);
  index.setCommitted(100_000 + 64 * 7 + 10, 3e6);
  index.setCommitted(3_000_000, 6e6);
  Atomics.store(index.words, index.position(100_000 + 64 * 9 + 3, true), acceptedWord(64));
  Atomics.store(index.words, index.position(5_000_000, true), -acceptedWord(128));
}

/** The index after a whole load of its base, which is then detached. */
function loaded(index: SlotIndex): SlotIndex {
  run(index.loadBaseInSteps());
  index.detachBase();
  return index;
}

function run<T>(steps: Generator<undefined, T, undefined>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** `pairs` (slot, address, …) as sorted "slot:address" strings, for comparing sets. */
function asPairs(pairs: ArrayLike<number>): string[] {
  const list: string[] = [];
  for (let i = 0; i < pairs.length; i += 2) list.push(`${pairs[i]}:${pairs[i + 1]}`);
  return list.sort();
}

describe("slot index with a base", () => {
  test("committedPairs merges the base's untouched leaves: the list of a whole load, no leaf taken", async () => {
    const checkpoint = await checkpointOf(baseSlots());
    for (const addressEnd of [0, 950, 5e6, Infinity]) {
      const index = checkpoint.attach();
      touch(index);
      const bytes = index.sizeBytes;
      const merged = index.committedPairs(addressEnd, 64);
      assert.equal(index.sizeBytes, bytes, `below ${addressEnd}: no leaf taken`);
      assert.ok(index.base !== undefined, "the base stays attached");
      assert.equal(merged.byteOffset, 64);
      const whole = checkpoint.attach();
      touch(whole);
      const want = loaded(whole).committedPairs(addressEnd);
      assert.deepEqual([...merged], [...want], `below ${addressEnd}`);
      if (addressEnd === 5e6) {
        assert.ok(want.length > 2 * 3 * CHUNK_PAIRS);
        assert.equal(merged.buffer.byteLength, 64 + merged.byteLength, "counted exactly");
      }
    }
  });

  test("the merged walk pauses between leaves; lookups, accepts, commits and a truncation between its steps leave the right pairs", async () => {
    const checkpoint = await checkpointOf(baseSlots());
    const addressEnd = 5e6;
    let truncatedBelow = SLOT_MIN;
    const index = checkpoint.attach(() => truncatedBelow);
    touch(index);
    const steps = index.committedPairsInSteps(addressEnd, 0, () => truncatedBelow);
    const sparse = (leaf: number) => 100_000 + 64 * leaf + 9;
    let pauses = 0;
    let step = steps.next();
    for (; !step.done; step = steps.next()) {
      pauses++;
      if (pauses === 2) {
        // Leaves taken from the base by lookups, in every chunk, behind the walk and ahead.
        for (let k = 0; k < 3; k++) index.wordOf(1000 + k * CHUNK_PAIRS + 300);
        index.wordOf(sparse(PAIRS_STEP_LEAVES + 30));
        index.wordOf(sparse(5 * PAIRS_STEP_LEAVES));
        // Commits at or past the covered address, in a new leaf and in one just taken.
        index.setCommitted(7_000_000, addressEnd + 1);
        index.setCommitted(sparse(PAIRS_STEP_LEAVES + 30) + 1, addressEnd + 2);
      }
      if (pauses === 3) {
        // A truncation ahead of the walk: slots below emptied, leaves wholly below unlinked and
        // reused for other slots, with commits the walk would list if it read them as the old.
        truncatedBelow = sparse(4 * PAIRS_STEP_LEAVES) + 1; // cuts that leaf
        index.forEach((slot, word, position) => {
          if (slot < truncatedBelow && word === SLOT_COMMITTED) {
            Atomics.store(index.words, position, SLOT_EMPTY);
          }
        });
        const unlinked = index.unlinkBelow(truncatedBelow);
        assert.ok(unlinked.leaves.length > 5, `${unlinked.leaves.length} leaves unlinked`);
        index.recycle(unlinked, () => {});
        for (let k = 0; k < unlinked.leaves.length; k++) index.setCommitted(2 ** 45 + k * 64, 5);
      }
    }
    assert.ok(pauses >= 6, `${pauses} pauses`);
    // Every pair at or above the truncated slot a whole load gives, and some below it.
    const whole = checkpoint.attach();
    touch(whole);
    const want = [...loaded(whole).committedPairs(addressEnd)];
    const pairs = [...step.value];
    for (let i = 2; i < pairs.length; i += 2) assert.ok(pairs[i] > pairs[i - 2], "slot order");
    const kept = pairs.filter((_, i, all) => all[i - (i % 2)] >= truncatedBelow);
    assert.deepEqual(kept, want.filter((_, i, all) => all[i - (i % 2)] >= truncatedBelow));
    assert.ok(kept.length > 0 && pairs.length > kept.length);
    // Below it, pairs the walk had listed before the truncation: none of slots it reached later.
    const all = new Set(asPairs(want));
    const listed = pairs.slice(0, pairs.length - kept.length);
    for (const pair of asPairs(listed)) {
      assert.ok(all.has(pair), `${pair}, below the truncation, is a committed pair`);
    }
    assert.ok(listed[listed.length - 2] < sparse(2 * PAIRS_STEP_LEAVES), `${listed.at(-2)} listed`);
  });

  test("a damaged chunk met by the merged walk is replaced, and the walk lists every slot from the index", async () => {
    const checkpoint = await checkpointOf(baseSlots());
    const whole = checkpoint.attach();
    touch(whole);
    const want = loaded(whole).committedPairs(5e6);
    const file = fileBytes(checkpoint.memory, "/log/index");
    file[64 + 16 * (2 * CHUNK_PAIRS + 5)] ^= 1; // chunk 2, which touch() does not read
    checkpoint.memory.remove("/log/index");
    const handle = checkpoint.memory.open("/log/index", { create: true });
    handle.write(file, 0);
    handle.close();
    let calls = 0;
    const index: SlotIndex = checkpoint.attach(undefined, () => {
      // As the log does: the base's slots go into the leaves not taken, found elsewhere.
      calls++;
      index.detachBase();
      const committed = checkpoint.committed;
      const missing = new Map<number, boolean>();
      for (let i = 0; i < committed.length; i += 2) {
        const slot = committed[i];
        if (slot < SLOT_MIN || committed[i + 1] < ADDRESS_MIN) continue;
        const leaf = slot - (slot % LEAF_SLOTS);
        if (!missing.has(leaf)) missing.set(leaf, index.position(slot, false) < 0);
        if (missing.get(leaf)) index.setCommitted(slot, committed[i + 1]);
      }
    });
    touch(index);
    const merged = index.committedPairs(5e6);
    assert.equal(calls, 1);
    assert.equal(index.base, undefined);
    assert.deepEqual([...merged], [...want]);
  });

  test("counts() agrees with a whole load and reads only the chunks touched or cut by the minimums", async () => {
    const checkpoint = await checkpointOf(baseSlots());
    const whole = loaded(checkpoint.attach()).counts();
    const index = checkpoint.attach();
    const bytes = index.sizeBytes;
    assert.deepEqual(index.counts(), whole);
    assert.deepEqual(checkpoint.chunksRead(index), [0], "only chunk 0, with skipped pairs");
    assert.equal(index.sizeBytes, bytes, "no leaf taken");
    // Touched leaves, accepted and frozen slots, new commits. Chunk 2 is read by no lookup.
    const other = checkpoint.attach();
    touch(other);
    const want = loaded(other).counts();
    assert.equal(want.accepted, 2);
    assert.equal(want.committed, whole.committed + 3);
    touch(index);
    assert.ok(checkpoint.chunksRead(index).includes(1));
    assert.deepEqual(index.counts(), want);
    assert.ok(!checkpoint.chunksRead(index).includes(2), "an untouched chunk is not read");
    // A truncation: the chunks wholly below it are neither read nor counted.
    let truncatedBelow = 1000 + 2 * CHUNK_PAIRS + 20;
    const wantTruncated = loaded(checkpoint.attach(() => truncatedBelow)).counts();
    const truncated = checkpoint.attach(() => truncatedBelow);
    assert.deepEqual(truncated.counts(), wantTruncated);
    assert.deepEqual(checkpoint.chunksRead(truncated), [2], "only the chunk the truncation cuts");
    truncatedBelow = 2 ** 40;
    assert.deepEqual(truncated.counts(), { committed: 2, accepted: 0 });
  });

  test("loadBaseInSteps(from, to) takes only the leaves holding a slot of the range; the base serves the rest", async () => {
    const slots = baseSlots();
    const checkpoint = await checkpointOf(slots);
    const whole = loaded(checkpoint.attach());
    for (
      const [from, to] of [
        [66, 67],
        [1000 + CHUNK_PAIRS - 3, 1000 + 2 * CHUNK_PAIRS + 70],
        [100_000 + 64 * 100, 100_000 + 64 * 100 + 9],
        [100_000 + 64 * 100, 100_000 + 64 * 100 + 10],
        [100_000 + 64 * 100 + 10, 100_000 + 64 * 300],
        [2 ** 40, Infinity],
      ]
    ) {
      const index = checkpoint.attach();
      let pauses = 0;
      const steps = index.loadBaseInSteps(from, to);
      while (!steps.next().done) pauses++;
      assert.ok(index.base !== undefined, "the base stays attached");
      const taken: number[] = [];
      index.forEachLeaf((firstSlot) => taken.push(firstSlot));
      const want = new Set<number>();
      for (const slot of slots) {
        const first = slot - (slot % LEAF_SLOTS);
        if (first + LEAF_SLOTS > from && first < to && whole.position(slot, false) >= 0) {
          want.add(first);
        }
      }
      assert.deepEqual(taken, [...want], `[${from}, ${to})`);
      assert.equal(pauses, Math.floor(want.size / PAIRS_STEP_LEAVES), `[${from}, ${to})`);
      // The taken leaves hold what a whole load gives them, and every other slot reads the same.
      index.forEach((slot, word, position) => {
        assert.equal(word, whole.wordOf(slot), `slot ${slot}`);
        assert.equal(index.addressAt(position), whole.addressAt(whole.position(slot, false)));
      });
      for (const slot of slots) assert.equal(index.wordOf(slot), whole.wordOf(slot), `${slot}`);
    }
  });
});

/** Truncates `index` below `slot` as the log does: empties committed words, unlinks, recycles. */
function truncate(index: SlotIndex, slot: number, onAccepted: (word: number) => void = () => {}) {
  index.forEach((entrySlot, word, position) => {
    if (entrySlot < slot && word === SLOT_COMMITTED) {
      Atomics.store(index.words, position, SLOT_EMPTY);
    }
  });
  const unlinked = index.unlinkBelow(slot);
  index.recycle(unlinked, onAccepted);
  return unlinked;
}

describe("slot index truncation", () => {
  test("the inner nodes a truncation empties are recycled: sparse slots never fill the index", () => {
    // One slot per 16k: each takes a leaf and a node above it (1 KiB), and every 256th a node
    // of the level above too. 20k of them would need 35 MiB of a 1 MiB index if kept.
    const index = new SlotIndex(undefined, 1024 * 1024);
    const stride = 256 * LEAF_SLOTS;
    let inner = 0;
    for (let i = 0; i < 20_000; i++) {
      index.setCommitted(i * stride, 100 + i);
      if (i % 10 === 9) inner += truncate(index, (i - 9) * stride).inner.length / 2;
    }
    assert.ok(index.sizeBytes < 64 * 1024, `index uses ${index.sizeBytes} bytes`);
    assert.ok(inner > 19_000, `${inner} inner nodes unlinked`);
    // The slots kept are all there, at their addresses; those below read empty.
    for (let i = 19_990; i < 20_000; i++) {
      const position = index.position(i * stride, false);
      assert.equal(Atomics.load(index.words, position), SLOT_COMMITTED, `slot ${i * stride}`);
      assert.equal(index.addressAt(position), 100 + i);
    }
    assert.equal(index.position(19_000 * stride, false), -1);
    const listed: number[] = [];
    index.forEach((slot) => listed.push(slot));
    assert.deepEqual(listed, Array.from({ length: 10 }, (_, k) => (19_990 + k) * stride));
  });

  test("a node linked into an unlinked inner node by a racing lookup is recycled with it", () => {
    const index = new SlotIndex(undefined, 1024 * 1024);
    const stride = 256 * LEAF_SLOTS;
    index.setCommitted(0, 1);
    index.setCommitted(3 * stride, 2);
    Atomics.store(index.words, index.position(0, false), SLOT_EMPTY);
    // A racing thread walked to the level-0 node of slot 5 before the unlink; it links a new leaf
    // there after it and accepts slot 5 into it.
    const unlinked = index.unlinkBelow(stride);
    assert.deepEqual(unlinked.leaves.length, 1);
    assert.equal(unlinked.inner.length, 2, "the level-0 node of slots 0–16383");
    const [node, level] = unlinked.inner;
    assert.equal(level, 0);
    // The racing thread's new leaf: 192 words bump-allocated (word 16 is the index's ALLOC).
    const stray = Atomics.add(index.words, 16, 192);
    Atomics.store(index.words, node, stray); // linked at digit 0 of the unlinked node
    Atomics.store(index.words, stray + 5, acceptedWord(4096));
    const freed: number[] = [];
    index.recycle(unlinked, (word) => freed.push(word));
    assert.deepEqual(freed, [acceptedWord(4096)], "the racing accept's region entry is freed");
    for (let digit = 0; digit < 256; digit++) {
      assert.equal(Atomics.load(index.words, node + digit), 0, "the node is zeroed for reuse");
    }
    // Both come back: the next new level-0 node and leaf are the recycled ones.
    const reused = index.position(7 * stride, true);
    assert.ok([stray, unlinked.leaves[0]].includes(reused), "a recycled leaf is reused");
    assert.equal(Atomics.load(index.words, index.position(3 * stride, false)), SLOT_COMMITTED);
  });
});

describe("slot index walks", () => {
  test("a walk over a slot range visits exactly the slots of the range, and reads little else", () => {
    const index = new SlotIndex(undefined, 16 * 1024 * 1024);
    const slots: number[] = [];
    for (let slot = 0; slot < 100_000; slot++) if (slot % 7 !== 3) slots.push(slot);
    slots.push(2 ** 33 + 5, 2 ** 40, 2 ** 40 + 64, 2 ** 52 + 1);
    for (const slot of slots) index.setCommitted(slot, slot + 1);
    const listed = (from?: number, to?: number) => {
      const found: number[] = [];
      index.forEach(
        (slot, word) => {
          assert.equal(word, SLOT_COMMITTED);
          found.push(slot);
        },
        from,
        to,
      );
      return found;
    };
    assert.deepEqual(listed(), slots);
    for (
      const [from, to] of [
        [0, 1],
        [63, 65],
        [5000, 5100],
        [99_990, 2 ** 33 + 6],
        [2 ** 33 + 6, 2 ** 40 + 1],
        [2 ** 40, 2 ** 53],
        [70, 70],
        [100_000, 2 ** 33],
      ]
    ) {
      const want = slots.filter((slot) => slot >= Math.floor(from / 64) * 64 && slot < to);
      // Whole leaves: a leaf overlapping the range is visited whole (callers filter the slots).
      const got = listed(from, to).filter((slot) => slot < to);
      assert.deepEqual(got, want, `[${from}, ${to})`);
    }
    // A range of 100 slots reads its leaves and the nodes above them, not the 1563 leaves.
    const load = Atomics.load;
    let loads = 0;
    Object.assign(Atomics, {
      load: ((array: Int32Array, i: number) => (loads++, load(array, i))) as typeof Atomics.load,
    });
    try {
      listed(5000, 5100);
    } finally {
      Object.assign(Atomics, { load });
    }
    assert.ok(loads < 600, `${loads} atomic loads for a range of 100 slots`);
  });
});
