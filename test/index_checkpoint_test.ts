/**
 * The slot index's bulk walk for the index checkpoint (`committedPairs`), and the checkpoint
 * file written from pairs in place (after room for its header) or copied.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { checksum } from "../src/checksum.ts";
import {
  CHUNK_PAIRS,
  INDEX_CHECKPOINT_HEADER_BYTES,
  readIndexCheckpoint,
  writeIndexCheckpoint,
} from "../src/index_checkpoint.ts";
import type { DeviceFile } from "../src/device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { fsDevice } from "../src/fs_device.ts";
import { fileBytes, tempDir } from "./_helpers.ts";
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
    assert.equal(unlinked.leaves.length, below / LEAF_SLOTS);
    index.recycle(unlinked, () => assert.fail("no accepted entry was left"));
    for (let k = 0; k < unlinked.leaves.length; k++) {
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
    // Three chunks (the last one short), and journaled accepts after them.
    const count = 2 * CHUNK_PAIRS + 100;
    const pairs: number[] = [];
    for (let i = 0; i < count; i++) {
      pairs.push(i === count - 1 ? 2 ** 52 : 3 * i, 1000 + 7 * (i ^ 5));
    }
    const journal = [5, -41, 2 ** 40, -99];
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
    for (const [name, committed] of cases) {
      const device = new MemoryDevice();
      device.makeDirectory("/log");
      await writeIndexCheckpoint(device, "/log", 7, 12_345, committed, journal, true);
      files.push(fileBytes(device, "/log/index"));
      assert.deepEqual(files[files.length - 1], files[0], `${name}: the same bytes as in place`);
      const read = readIndexCheckpoint(device, "/log", 7);
      assert.ok(read, `${name}: the checkpoint validates`);
      assert.equal(read.coveredAddress, 12_345);
      assert.equal(read.committed.count, count);
      assert.equal(read.committed.firstSlot, 0);
      assert.equal(read.committed.lastSlot, 2 ** 52);
      assert.ok(read.committed.verify(0, count), `${name}: every chunk is intact`);
      assert.deepEqual([...(read.committed.all() ?? [])], pairs, name);
      assert.deepEqual([...read.journal], journal, name);
      assert.equal(readIndexCheckpoint(device, "/log", 8), undefined, "another log's id fails");
    }
    assert.deepEqual(files[0].subarray(56, headerBytes), new Uint8Array(8), "reserved bytes are 0");
    // An empty checkpoint is valid too.
    const device = new MemoryDevice();
    device.makeDirectory("/log");
    await writeIndexCheckpoint(device, "/log", 7, 64, new Float64Array(0), [], false);
    const empty = readIndexCheckpoint(device, "/log", 7);
    assert.ok(empty);
    assert.equal(empty.committed.count, 0);
    assert.equal(empty.committed.lastSlot, -1);
    assert.equal(empty.journal.length, 0);
  });

  test("on the file system only the header, journal and directory are read at open; each chunk once, when first used; the file is open until release", async () => {
    using dir = tempDir("hybridlog-index-");
    const committed = new Float64Array(2 * (2 * CHUNK_PAIRS + 10));
    for (let i = 0; i < committed.length; i += 2) {
      [committed[i], committed[i + 1]] = [i * 3, i * 64];
    }
    const journal = [1, -5, 7, -9];
    await writeIndexCheckpoint(fsDevice, dir.path, 9, 777, committed, journal, true);
    const reads: number[] = [];
    let closes = 0;
    class Counting extends WrappingDevice {
      protected override wrapFile(file: DeviceFile): DeviceFile {
        return forwardingFile(file, {
          read: (into, position) => {
            reads.push(position);
            return file.read(into, position);
          },
          view: () => assert.fail("the checkpoint is never mapped"),
          close: () => {
            closes++;
            file.close();
          },
        });
      }
    }
    const read = readIndexCheckpoint(new Counting("counting", fsDevice), dir.path, 9);
    assert.ok(read);
    const chunkAt = (chunk: number) => INDEX_CHECKPOINT_HEADER_BYTES + 16 * CHUNK_PAIRS * chunk;
    const restAt = chunkAt(0) + committed.byteLength;
    assert.deepEqual(reads, [0, restAt], "the header, then the journal and directory");
    assert.equal(read.coveredAddress, 777);
    assert.deepEqual([...read.journal], journal);
    assert.equal(read.committed.lowerBound(3 * 2 * (CHUNK_PAIRS + 5)), CHUNK_PAIRS + 5);
    assert.deepEqual(reads.slice(2), [chunkAt(1)], "one chunk, the one searched");
    assert.deepEqual(read.committed.all(), committed);
    assert.deepEqual(reads.slice(3), [chunkAt(0), chunkAt(2)], "each chunk read once");
    assert.equal(closes, 0);
    read.release();
    assert.equal(closes, 1);
    // A damaged byte of a chunk fails that chunk; of the journal, the whole file.
    const path = `${dir.path}/index`;
    for (const [at, whole] of [[100, false], [restAt + 3, true]] as const) {
      const bytes = fs.readFileSync(path);
      bytes[at] ^= 1;
      fs.writeFileSync(path, bytes);
      const damaged = readIndexCheckpoint(fsDevice, dir.path, 9);
      if (whole) assert.equal(damaged, undefined, `byte ${at}`);
      else {
        assert.ok(damaged, `byte ${at}: only its chunk is damaged`);
        assert.equal(damaged.committed.verify(0, damaged.committed.count), false);
        assert.ok(damaged.committed.verify(CHUNK_PAIRS, damaged.committed.count));
        damaged.release();
      }
      bytes[at] ^= 1;
      fs.writeFileSync(path, bytes);
    }
  });

  test("a damaged chunk fails only the lookups that read it; a damaged directory or header fails the file", async () => {
    const count = 3 * CHUNK_PAIRS;
    const committed = new Float64Array(2 * count);
    for (let i = 0; i < count; i++) [committed[2 * i], committed[2 * i + 1]] = [2 * i, 10 * i];
    const device = new MemoryDevice();
    device.makeDirectory("/log");
    await writeIndexCheckpoint(device, "/log", 3, 99, committed, [], true);
    const original = fileBytes(device, "/log/index");
    const damage = (at: number) => {
      const bytes = original.slice();
      bytes[at] ^= 0x10;
      writeWhole(device, "/log/index", bytes);
      return readIndexCheckpoint(device, "/log", 3);
    };
    // A byte of the second chunk's pairs.
    const read = damage(INDEX_CHECKPOINT_HEADER_BYTES + 16 * (CHUNK_PAIRS + 10) + 2);
    assert.ok(read, "the header and directory are intact");
    const pairs = read.committed;
    assert.equal(pairs.lowerBound(2 * 17), 17, "the first chunk serves");
    assert.equal(
      pairs.lowerBound(2 * (2 * CHUNK_PAIRS + 5)),
      2 * CHUNK_PAIRS + 5,
      "so does the third",
    );
    assert.ok(pairs.verify(0, CHUNK_PAIRS) && pairs.verify(2 * CHUNK_PAIRS, count));
    assert.equal(pairs.lowerBound(2 * (CHUNK_PAIRS + 1)), -1, "a search in the second fails");
    assert.equal(pairs.verify(CHUNK_PAIRS - 1, CHUNK_PAIRS + 1), false);
    assert.equal(pairs.leastAddressFrom(CHUNK_PAIRS + 3, 0), -1, "reading it fails");
    // Whole chunks after `from` are answered by the directory: no read of the damaged one.
    assert.equal(pairs.leastAddressFrom(2 * CHUNK_PAIRS, 0), 10 * 2 * CHUNK_PAIRS);
    // The header, the directory and the CRC itself are checked at open.
    const directoryAt = INDEX_CHECKPOINT_HEADER_BYTES + 16 * count;
    for (const at of [0, 20, 40, 50, directoryAt, directoryAt + 24 + 16, original.length - 5]) {
      assert.equal(damage(at), undefined, `byte ${at}`);
    }
  });

  test("leastAddressFrom gives the least address at or over the minimum from a pair on", async () => {
    const count = 2 * CHUNK_PAIRS + 333;
    const committed = new Float64Array(2 * count);
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < count; i++) {
      committed[2 * i] = i;
      committed[2 * i + 1] = Math.floor(random() * 1e6);
    }
    const device = new MemoryDevice();
    device.makeDirectory("/log");
    await writeIndexCheckpoint(device, "/log", 3, 1e6, committed, [], true);
    const pairs = readIndexCheckpoint(device, "/log", 3)!.committed;
    for (
      const from of [
        0,
        1,
        CHUNK_PAIRS - 1,
        CHUNK_PAIRS,
        CHUNK_PAIRS + 9,
        2 * CHUNK_PAIRS,
        count - 1,
        count,
      ]
    ) {
      for (const addressMin of [0, 1000, 500_000, 999_999, 2e6]) {
        let least = Infinity;
        for (let i = from; i < count; i++) {
          const address = committed[2 * i + 1];
          if (address >= addressMin && address < least) least = address;
        }
        assert.equal(
          pairs.leastAddressFrom(from, addressMin),
          least,
          `from ${from}, over ${addressMin}`,
        );
      }
    }
  });

  test("a checkpoint of version 1 (one checksum, pairs then journal) is still read", () => {
    const committed = [1, 640, 2, 700, 64, 800, 5000, 900];
    const journal = [3, -11, 4, -13];
    const all = new Float64Array([...committed, ...journal]);
    const bytes = new Uint8Array(INDEX_CHECKPOINT_HEADER_BYTES + all.byteLength);
    bytes.set(new Uint8Array(all.buffer), INDEX_CHECKPOINT_HEADER_BYTES);
    const view = new DataView(bytes.buffer);
    view.setUint32(4, 0x5849_4c48, true);
    view.setUint32(8, 1, true);
    view.setUint32(12, 6, true);
    view.setFloat64(16, 5555, true);
    view.setFloat64(24, all.length / 2, true);
    view.setUint32(0, checksum(bytes.subarray(4), 0), true);
    const device = new MemoryDevice();
    device.makeDirectory("/log");
    writeWhole(device, "/log/index", bytes);
    const read = readIndexCheckpoint(device, "/log", 6);
    assert.ok(read);
    assert.equal(read.coveredAddress, 5555);
    assert.deepEqual([...(read.committed.all() ?? [])], committed);
    assert.deepEqual([...read.journal], journal);
    assert.equal(read.committed.lastSlot, 5000);
    assert.equal(read.committed.lowerBound(3), 2);
    assert.equal(read.committed.leastAddressFrom(1, 650), 700);
    bytes[80] ^= 1;
    writeWhole(device, "/log/index", bytes);
    assert.equal(readIndexCheckpoint(device, "/log", 6), undefined, "its checksum still counts");
  });

  test("an attached base gives the index setCommitted would, each leaf taken as first looked up", async () => {
    // Dense runs, leaf boundaries, sparse and huge slots, more than one chunk, and pairs below
    // the minimums, which are skipped.
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
    // Ten chunks: lookups in a shuffled order read and drop chunks (four are kept at once).
    for (let slot = 100_000; slot < 100_000 + 9 * CHUNK_PAIRS + 500; slot++) slots.push(slot);
    for (let leaf = 0; leaf < PAIRS_STEP_LEAVES + 10; leaf++) slots.push(200_000 + 64 * leaf + 5);
    slots.sort((a, b) => a - b);
    const committed = new Float64Array(2 * slots.length);
    slots.forEach((slot, i) => [committed[2 * i], committed[2 * i + 1]] = [slot, 100 + i * 10]);
    const slotMin = 2;
    const addressMin = 130;
    const expected = new SlotIndex(undefined, 4 * 1024 * 1024);
    for (let i = 0; i < committed.length; i += 2) {
      if (committed[i] >= slotMin && committed[i + 1] >= addressMin) {
        expected.setCommitted(committed[i], committed[i + 1]);
      }
    }
    const device = new MemoryDevice();
    device.makeDirectory("/log");
    await writeIndexCheckpoint(device, "/log", 3, 1e9, committed, [], true);
    const attach = (damaged: () => void = () => assert.fail("no chunk is damaged")) => {
      const index = new SlotIndex(undefined, 4 * 1024 * 1024);
      const pairs = readIndexCheckpoint(device, "/log", 3)!.committed;
      index.attachBase({ pairs, slotMin: () => slotMin, addressMin, damaged });
      return index;
    };
    const index = attach();
    const empty = index.sizeBytes;
    // One lookup takes one leaf (and the inner nodes above it), not the others.
    assert.equal(index.wordOf(100_010), SLOT_COMMITTED);
    assert.equal(
      index.addressAt(index.position(100_010, false)),
      expected.addressAt(expected.position(100_010, false)),
    );
    const oneLeaf = index.sizeBytes - empty;
    assert.ok(oneLeaf < 16 * 1024, `${oneLeaf} bytes after one lookup`);
    const leafFirst = 100_010 - (100_010 % LEAF_SLOTS);
    assert.deepEqual(
      expectedPairs(index, Infinity),
      expectedPairs(expected, Infinity).filter((_, i, all) => {
        const slot = all[i - (i % 2)];
        return slot >= leafFirst && slot < leafFirst + LEAF_SLOTS;
      }),
      "the walk sees only that leaf",
    );
    // Slots below the minimums, or absent, read empty and make no leaf.
    for (const slot of [0, 1, 3, 66, 200, 5000]) {
      assert.equal(index.wordOf(slot), SLOT_EMPTY, `${slot}`);
    }
    assert.equal(index.position(5000, false), -1);
    // A new slot's leaf (create) is made even with no pair in it.
    assert.ok(index.position(5001, true) >= 0);
    // Every slot, in a shuffled order, reads as in the index built slot by slot.
    const order = slots.map((_, i) => slots[(i * 7919) % slots.length]);
    for (const slot of order) {
      assert.equal(index.wordOf(slot), expected.wordOf(slot), `slot ${slot}`);
    }
    assert.deepEqual(expectedPairs(index, Infinity), expectedPairs(expected, Infinity));
    // loadBaseInSteps takes the leaves no lookup reached, pausing every PAIRS_STEP_LEAVES.
    const loaded = attach();
    loaded.wordOf(130);
    const steps = loaded.loadBaseInSteps();
    let pauses = 0;
    while (!steps.next().done) pauses++;
    assert.ok(pauses >= 1, `${pauses} pauses`);
    assert.deepEqual(expectedPairs(loaded, Infinity), expectedPairs(expected, Infinity));
    // Between its steps: lookups that read other chunks, and a truncation that empties slots,
    // unlinks leaves wholly below it and reuses them for other slots. The load goes on from the
    // next leaf with the new minimum, and never writes into a reused leaf.
    let truncatedBelow = slotMin;
    const racing = new SlotIndex(undefined, 4 * 1024 * 1024);
    const racingPairs = readIndexCheckpoint(device, "/log", 3)!.committed;
    racing.attachBase({
      pairs: racingPairs,
      slotMin: () => truncatedBelow,
      addressMin,
      damaged: () => assert.fail("no chunk is damaged"),
    });
    const racingSteps = racing.loadBaseInSteps();
    assert.equal(racingSteps.next().done, false);
    let loadedUntil = -1;
    racing.forEach((slot) => loadedUntil = Math.max(loadedUntil, slot + 1));
    // The first step ends inside the fourth chunk; these read four others, so it is read again.
    for (let k = 5; k <= 8; k++) {
      const slot = 100_000 + k * CHUNK_PAIRS + 100;
      assert.equal(racing.wordOf(slot), expected.wordOf(slot), `slot ${slot}`);
    }
    // Past the slots the first step loaded: the rest of its leaf and later ones are dropped.
    truncatedBelow = 100_000 + 4 * CHUNK_PAIRS + 7;
    assert.ok(loadedUntil < truncatedBelow - LEAF_SLOTS, `the first step loaded to ${loadedUntil}`);
    racing.forEach((slot, _word, position) => {
      if (slot < truncatedBelow) Atomics.store(racing.words, position, SLOT_EMPTY);
    });
    const unlinked = racing.unlinkBelow(truncatedBelow);
    assert.ok(unlinked.leaves.length > 0);
    racing.recycle(unlinked, () => assert.fail("no accepted entry was left"));
    for (let k = 0; k < unlinked.leaves.length; k++) {
      racing.setCommitted(2 ** 45 + k * LEAF_SLOTS, 5);
    }
    while (!racingSteps.next().done);
    const want: number[] = [];
    for (let i = 0; i < committed.length; i += 2) {
      if (committed[i] >= truncatedBelow && committed[i + 1] >= addressMin) {
        want.push(committed[i], committed[i + 1]);
      }
    }
    for (let k = 0; k < unlinked.leaves.length; k++) want.push(2 ** 45 + k * LEAF_SLOTS, 5);
    const asPairs = (list: number[]) => {
      const pairs: string[] = [];
      for (let i = 0; i < list.length; i += 2) pairs.push(`${list[i]}:${list[i + 1]}`);
      return pairs.sort();
    };
    assert.deepEqual(asPairs(expectedPairs(racing, Infinity)), asPairs(want));
    // A damaged chunk calls `damaged` on the lookup that needs it; after it detaches the base,
    // the lookup goes on in the index alone.
    const bytes = fileBytes(device, "/log/index");
    bytes[INDEX_CHECKPOINT_HEADER_BYTES + 16 * (CHUNK_PAIRS + 20)] ^= 4;
    writeWhole(device, "/log/index", bytes);
    let calls = 0;
    const damagedIndex: SlotIndex = attach(() => {
      calls++;
      damagedIndex.detachBase();
      damagedIndex.setCommitted(slots[CHUNK_PAIRS + 20], 1);
    });
    assert.equal(damagedIndex.wordOf(64), SLOT_COMMITTED, "an intact chunk serves");
    assert.equal(calls, 0);
    assert.equal(damagedIndex.wordOf(slots[CHUNK_PAIRS + 20]), SLOT_COMMITTED);
    assert.equal(calls, 1);
    assert.equal(damagedIndex.base, undefined);
  });
});

function writeWhole(device: MemoryDevice, path: string, bytes: Uint8Array): void {
  if (device.exists(path)) device.remove(path);
  const file = device.open(path, { create: true });
  file.write(bytes, 0);
  file.close();
}
