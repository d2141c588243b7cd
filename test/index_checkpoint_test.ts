/**
 * The slot index's bulk walk for the index checkpoint (`committedPairs`), and the checkpoint
 * file written from pairs in place (after room for its header) or copied.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import {
  INDEX_CHECKPOINT_HEADER_BYTES,
  readIndexCheckpoint,
  writeIndexCheckpoint,
} from "../src/index_checkpoint.ts";
import type { DeviceFile } from "../src/device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { fsDevice } from "../src/fs_device.ts";
import { IoError } from "../src/errors.ts";
import { tempDir } from "./_helpers.ts";
import { forwardingFile, WrappingDevice } from "./_wrapping_device.ts";
import {
  acceptedWord,
  LEAF_SLOTS,
  PAIRS_STEP_LEAVES,
  SLOT_COMMITTED,
  SLOT_EMPTY,
  SlotIndex,
} from "../src/slot_index.ts";

/** The pairs `committedPairs` should give, found the slow way (`forEach`). */
function expectedPairs(index: SlotIndex, addressEnd: number): number[] {
  const pairs: number[] = [];
  index.forEach((slot, word, position) => {
    const address = index.addressAt(position);
    if (word === SLOT_COMMITTED && address < addressEnd) pairs.push(slot, address);
  });
  return pairs;
}

describe("index checkpoint", () => {
  test("committedPairs lists committed slots below the address in slot order, nothing else", () => {
    const index = new SlotIndex(undefined, 1024 * 1024);
    // Dense runs, one slot per leaf, huge slots, and accepted or frozen words between them.
    const slots = [0, 1, 2, 63, 64, 65, 130, 4096, 70_000, 2 ** 31 + 5, 2 ** 40, 2 ** 52 + 3];
    for (let slot = 1000; slot < 1200; slot++) slots.push(slot);
    for (const [i, slot] of slots.entries()) index.setCommitted(slot, i * 1000);
    for (const slot of [3, 66, 1200, 70_001]) {
      const position = index.position(slot, true);
      Atomics.store(index.words, position, slot === 66 ? -acceptedWord(64) : acceptedWord(8));
    }
    for (const addressEnd of [0, 5000, 150_000, Infinity]) {
      const pairs = index.committedPairs(addressEnd);
      assert.deepEqual([...pairs], expectedPairs(index, addressEnd), `below ${addressEnd}`);
      assert.equal(pairs.byteOffset, 0);
      assert.equal(pairs.buffer.byteLength, pairs.byteLength, "the buffer is exactly the pairs");
    }
    assert.equal(index.committedPairs(Infinity).length, slots.length * 2);
    const placed = index.committedPairs(Infinity, INDEX_CHECKPOINT_HEADER_BYTES);
    assert.equal(placed.byteOffset, INDEX_CHECKPOINT_HEADER_BYTES);
    assert.deepEqual([...placed], expectedPairs(index, Infinity));
  });

  test("committedPairsInSteps pauses between steps; commits and a truncation with recycled leaves between them are handled", () => {
    const index = new SlotIndex(undefined, 4 * 1024 * 1024);
    const leaves = 3 * PAIRS_STEP_LEAVES;
    const slots = leaves * LEAF_SLOTS;
    const addressEnd = 10 * slots;
    for (let slot = 0; slot < slots; slot++) index.setCommitted(slot, 3 * slot + 1);
    let below = 0;
    const steps = index.committedPairsInSteps(addressEnd, 0, () => below);
    // Counting takes three steps, listing three more, with a pause between each two: run until
    // the first listing step is done.
    let pauses = 0;
    while (pauses < 4) {
      assert.equal(steps.next().done, false, `pause ${pauses + 1}`);
      pauses++;
    }
    // Between steps: commits at or past the covered address (as every later commit is)...
    for (let slot = slots; slot < slots + 100; slot++) index.setCommitted(slot, addressEnd + slot);
    // ...and a truncation: slots emptied, leaves wholly below unlinked and recycled, then reused
    // for other slots whose words would be listed under the old slots if the walk read them.
    below = (PAIRS_STEP_LEAVES + 44) * LEAF_SLOTS;
    for (let slot = 0; slot < below; slot++) {
      Atomics.store(index.words, index.position(slot, false), SLOT_EMPTY);
    }
    const unlinked = index.unlinkBelow(below);
    assert.equal(unlinked.length, below / LEAF_SLOTS);
    index.recycle(unlinked, () => assert.fail("no accepted entry was left"));
    for (let k = 0; k < unlinked.length; k++) {
      index.setCommitted(2 ** 40 + k * LEAF_SLOTS, 5); // each takes a recycled leaf
    }
    let step = steps.next();
    for (; !step.done; step = steps.next()) pauses++;
    assert.equal(pauses, 5, "six steps: three counting, three listing");
    // Listed: the first step's slots (before the truncation), then those from `below` on.
    const expected: number[] = [];
    for (let slot = 0; slot < slots; slot++) {
      if (slot < PAIRS_STEP_LEAVES * LEAF_SLOTS || slot >= below) expected.push(slot, 3 * slot + 1);
    }
    const pairs = step.value;
    assert.equal(pairs.length, expected.length);
    assert.deepEqual([...pairs], expected);
    // Uninterrupted, the same walk lists exactly what the slow way finds.
    assert.deepEqual([...index.committedPairs(addressEnd)], expectedPairs(index, addressEnd));
  });

  test("a checkpoint written from pairs in place or from a plain array reads back the same", async () => {
    const pairs = [5, 100, 6, 200, 2 ** 52, 300, 7, -41];
    const headerBytes = INDEX_CHECKPOINT_HEADER_BYTES;
    const room = new Uint8Array(headerBytes + pairs.length * 8).fill(0xff); // garbage header room
    const inPlace = new Float64Array(room.buffer, headerBytes);
    inPlace.set(pairs);
    const cases: Array<[string, Float64Array]> = [
      ["in place", inPlace],
      ["copied", new Float64Array(pairs)],
      ["copied from a view", new Float64Array([0, 0, ...pairs]).subarray(2)],
    ];
    const files: Uint8Array[] = [];
    for (const [name, entries] of cases) {
      const device = new MemoryDevice();
      device.makeDirectory("/log");
      await writeIndexCheckpoint(device, "/log", 7, 12_345, entries, true);
      const file = device.open("/log/index", { readOnly: true });
      const bytes = new Uint8Array(file.sizeBytes());
      file.read(bytes, 0);
      file.close();
      files.push(bytes);
      assert.deepEqual(files[files.length - 1], files[0], `${name}: the same bytes as in place`);
      const read = readIndexCheckpoint(device, "/log", 7);
      assert.ok(read, `${name}: the checkpoint validates`);
      assert.equal(read.coveredAddress, 12_345);
      assert.deepEqual([...read.entries], pairs, name);
      assert.equal(readIndexCheckpoint(device, "/log", 8), undefined, "another log's id fails");
    }
    assert.deepEqual(
      files[0].subarray(32, headerBytes),
      new Uint8Array(32),
      "reserved bytes are 0",
    );
  });

  test("on the file system the checkpoint is read through a mapping, released after; a device that maps nothing reads it", async () => {
    using dir = tempDir("hybridlog-index-");
    const pairs = new Float64Array(3000);
    for (let i = 0; i < pairs.length; i += 2) {
      [pairs[i], pairs[i + 1]] = [i * 3, i % 10 ? i * 64 : -i];
    }
    await writeIndexCheckpoint(fsDevice, dir.path, 9, 777, pairs, true);
    const mapped = readIndexCheckpoint(fsDevice, dir.path, 9);
    assert.ok(mapped);
    assert.equal(mapped.coveredAddress, 777);
    assert.deepEqual(mapped.entries, pairs);
    mapped.release();
    assert.equal(mapped.entries.length, 0, "released: the view over the unmapped file is detached");
    class NoMapping extends WrappingDevice {
      protected override wrapFile(file: DeviceFile): DeviceFile {
        return forwardingFile(file, {
          view: () => {
            throw new IoError("mmap", "ENODEV", file.path);
          },
        });
      }
    }
    const read = readIndexCheckpoint(new NoMapping("no-mapping", fsDevice), dir.path, 9);
    assert.ok(read);
    assert.deepEqual(read.entries, pairs);
    read.release();
    assert.deepEqual(read.entries, pairs, "a copy: release leaves it alone");
    // A damaged byte fails the checksum either way.
    const path = `${dir.path}/index`;
    const bytes = fs.readFileSync(path);
    bytes[100] ^= 1;
    fs.writeFileSync(path, bytes);
    assert.equal(readIndexCheckpoint(fsDevice, dir.path, 9), undefined);
    assert.equal(
      readIndexCheckpoint(new NoMapping("no-mapping", fsDevice), dir.path, 9),
      undefined,
    );
  });

  test("loadCommitted gives the index setCommitted would, for pairs in or out of slot order", () => {
    // Dense runs, leaf boundaries, sparse and huge slots, a journaled accept (negative address)
    // and pairs below the minimums, which are skipped.
    const slots = [
      0,
      1,
      2,
      63,
      64,
      65,
      127,
      128,
      130,
      4096,
      70_000,
      2 ** 31 + 5,
      2 ** 40,
      2 ** 52 + 3,
    ];
    for (let slot = 1000; slot < 1300; slot++) slots.push(slot);
    const pairs: number[] = [];
    for (const [i, slot] of slots.entries()) {
      pairs.push(slot, i % 17 === 5 ? -(i + 1) : 100 + i * 10);
    }
    const slotMin = 2;
    const addressMin = 130;
    const expected = new SlotIndex(undefined, 1024 * 1024);
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i] >= slotMin && pairs[i + 1] >= addressMin) {
        expected.setCommitted(pairs[i], pairs[i + 1]);
      }
    }
    const want = expectedPairs(expected, Infinity);
    assert.ok(want.length > 2 * 250, `${want.length / 2} slots`);
    // In slot order, reversed, and shuffled by a fixed permutation.
    const order = [...Array(slots.length).keys()];
    const orders = [order, [...order].reverse(), order.map((_, i) => (i * 37) % slots.length)];
    for (const permutation of orders) {
      const shuffled = new Float64Array(pairs.length);
      permutation.forEach((from, to) => {
        shuffled[2 * to] = pairs[2 * from];
        shuffled[2 * to + 1] = pairs[2 * from + 1];
      });
      const index = new SlotIndex(undefined, 1024 * 1024);
      const accepted: number[] = [];
      const negatives: number[] = [];
      index.loadCommitted(shuffled, slotMin, addressMin, (word) => accepted.push(word), negatives);
      assert.deepEqual(expectedPairs(index, Infinity), want);
      assert.deepEqual(accepted, []);
      // Every journaled accept's position, and nothing else.
      const journaled = (list: ArrayLike<number>, at: number[]) =>
        at.map((i) => `${list[i]}:${list[i + 1]}`).sort();
      const allAt = [...Array(pairs.length / 2).keys()].map((k) => 2 * k);
      assert.deepEqual(
        journaled(shuffled, negatives),
        journaled(pairs, allAt.filter((i) => pairs[i + 1] < 0)),
      );
    }
  });
});
