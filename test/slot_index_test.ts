/**
 * The slot index's walks over a reopened log's checkpoint (its base) that take no leaf from it:
 * the counts, and the load of a slot range.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { CHUNK_PAIRS, readIndexCheckpoint, writeIndexCheckpoint } from "../src/index_checkpoint.ts";
import type { DeviceFile } from "../src/device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { acceptedWord, LEAF_SLOTS, PAIRS_STEP_LEAVES, SlotIndex } from "../src/slot_index.ts";
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
describe("slot index with a base", () => {
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
