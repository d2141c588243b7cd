/**
 * The commit path of `ConsensusLog`: records assembled in place in the staging buffer (values
 * copied straight from the region, word by word when short), records too large for the staging
 * buffer, batches larger than the scratch the log keeps, a batch whose segment cannot be created,
 * and ballots read once.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BallotError, ConsensusLog, IoError } from "../mod.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { entryBytes } from "./_helpers.ts";

const BALLOT = { round: 1, node: 1 };
/** Small segments (roll-overs every few hundred records) and the smallest staging buffer. */
const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 4096 };

function open(device: MemoryDevice | FaultyDevice, options: object = {}): Promise<ConsensusLog> {
  return ConsensusLog.open({ dir: "/log", device, durability: "data", ...SMALL, ...options });
}

/** Asserts `slot` is committed with `entryBytes(slot, length)` under `ballot`. */
function assertCommitted(log: ConsensusLog, slot: number, length: number, ballot = BALLOT): void {
  assert.deepEqual(
    log.readCommitted(slot),
    { slot, ballot, committed: true, value: entryBytes(slot, length) },
    `slot ${slot}`,
  );
}

describe("ConsensusLog commit path", () => {
  test("values of every length from 0 to 300 bytes commit byte for byte and survive a reopen", async () => {
    // Lengths around 4-byte words and the word-copy limit (256 B), one by one and in a batch.
    const device = new MemoryDevice();
    {
      const log = await open(device);
      for (let length = 0; length <= 300; length++) {
        log.accept(length, { round: length, node: 7 }, entryBytes(length, length));
        log.accept(1000 + length, BALLOT, entryBytes(1000 + length, length));
      }
      for (let length = 0; length <= 300; length++) await log.commit(length);
      await log.commitMany(Array.from({ length: 301 }, (_, i) => 1000 + i));
      for (let length = 0; length <= 300; length++) {
        assertCommitted(log, length, length, { round: length, node: 7 });
        assertCommitted(log, 1000 + length, length);
      }
      await log.close();
    }
    const log = await open(device);
    for (let length = 0; length <= 300; length++) {
      assertCommitted(log, length, length, { round: length, node: 7 });
      assertCommitted(log, 1000 + length, length);
    }
    await log.close();
  });

  test("a record larger than the staging buffer is committed (and journaled) straight to its segment", async () => {
    const device = new MemoryDevice();
    const length = 10_000; // the staging buffer holds 4096 bytes
    {
      const log = await open(device, { durableAccepts: true });
      await log.accept(1, BALLOT, entryBytes(1, length));
      await log.accept(2, BALLOT, entryBytes(2, 100));
      await log.accept(3, BALLOT, entryBytes(3, length));
      await log.commit(1);
      await log.commitMany([2, 3]);
      await log.accept(4, BALLOT, entryBytes(4, length)); // journaled only
      for (const slot of [1, 3]) assertCommitted(log, slot, length);
      assertCommitted(log, 2, 100);
      await log.close();
    }
    // A crash (no clean close) makes the reopen replay the records themselves.
    const log = await open(device.crash(), { durableAccepts: true });
    for (const slot of [1, 3]) assertCommitted(log, slot, length);
    assertCommitted(log, 2, 100);
    assert.deepEqual(log.read(4), {
      slot: 4,
      ballot: BALLOT,
      committed: false,
      value: entryBytes(4, length),
    });
    await log.close();
  });

  test("batches larger than the scratch the log keeps commit every slot, and so do small ones after", async () => {
    const device = new MemoryDevice();
    const log = await open(device, { segmentSizeBytes: 1024 * 1024, bufferSizeBytes: 64 * 1024 });
    // 40,000 slots: past the batch scratch kept (16 Ki slots) and the frozen queue kept (32 Ki).
    const big = Array.from({ length: 40_000 }, (_, i) => i);
    for (const slot of big) log.accept(slot, BALLOT, entryBytes(slot, 16));
    await log.commitMany(big);
    for (let round = 0; round < 3; round++) {
      const small = Array.from({ length: 50 }, (_, i) => 100_000 + round * 50 + i);
      for (const slot of small) log.accept(slot, BALLOT, entryBytes(slot, 16));
      await log.commitMany(small);
      for (const slot of small) assertCommitted(log, slot, 16);
    }
    for (const slot of big) assertCommitted(log, slot, 16);
    assert.equal(log.stats().committedCount, 40_150);
    await log.close();
    const reopened = await open(device, {
      segmentSizeBytes: 1024 * 1024,
      bufferSizeBytes: 64 * 1024,
    });
    assertCommitted(reopened, 39_999, 16);
    assertCommitted(reopened, 100_149, 16);
    await reopened.close();
  });

  test("a batch whose new segment cannot be created changes nothing; it commits once the disk has room", async () => {
    const faulty = new FaultyDevice(new MemoryDevice());
    const log = await open(faulty);
    // 64 KiB segments hold about 400 records of 140 B: 1,000 slots need new segments.
    const slots = Array.from({ length: 1000 }, (_, i) => i);
    for (const slot of slots) log.accept(slot, BALLOT, entryBytes(slot, 100));
    faulty.failAt(1, { errno: "ENOSPC", kinds: ["create", "allocate"] });
    await assert.rejects(log.commitMany(slots), (error) => error instanceof IoError);
    for (const slot of [0, 500, 999]) {
      assert.equal(log.read(slot)?.committed, false, `slot ${slot} is still only accepted`);
    }
    // Still accepted, not frozen: a higher ballot may replace an entry.
    log.accept(999, { round: 2, node: 1 }, entryBytes(999, 100));
    await log.commitMany(slots);
    for (const slot of [0, 500]) assertCommitted(log, slot, 100);
    assertCommitted(log, 999, 100, { round: 2, node: 1 });
    await log.close();
  });

  test("truncating more index leaves at once than the free ring holds (960) reuses every one", async () => {
    // 1 MiB of index holds about 1,300 leaves of 64 slots: each round fills 1,200 of them, and
    // a leaf dropped instead of recycled would fill the index by the third round.
    const log = await open(new MemoryDevice(), { indexSizeBytes: 1024 * 1024, durability: "none" });
    const value = new Uint8Array(8);
    const slots = new Array<number>(1200 * 64);
    let next = 0;
    const sizes: number[] = [];
    for (let round = 0; round < 5; round++) {
      for (let i = 0; i < slots.length; i++, next++) {
        log.accept(next, BALLOT, value);
        slots[i] = next;
      }
      await log.commitMany(slots);
      await log.truncatePrefix(next);
      sizes.push(log.stats().indexBytes);
    }
    // Only inner nodes for the new slot ranges are added (about 5 KiB a round), no leaves.
    for (let round = 1; round < sizes.length; round++) {
      assert.ok(sizes[round] - sizes[round - 1] < 8 * 1024, `round ${round}: ${sizes}`);
    }
    assert.equal(log.stats().committedCount, 0);
    await log.close();
  });

  test("accept reads a ballot's round and node once: a getter cannot slip a value past the checks", async () => {
    const log = await open(new MemoryDevice());
    let reads = 0;
    const shifty = {
      get round() {
        return reads++ === 0 ? 5 : -1; // valid when checked, invalid if read again
      },
      get node() {
        return reads++ === 1 ? 3 : 2 ** 40;
      },
    };
    log.accept(1, shifty, entryBytes(1, 8));
    assert.equal(reads, 2, "each field is read once");
    assert.deepEqual(log.read(1)?.ballot, { round: 5, node: 3 });
    await log.commit(1);
    assertCommitted(log, 1, 8, { round: 5, node: 3 });
    await log.close();
  });

  test("the promised ballot bounds accepts by round, then by node", async () => {
    const log = await open(new MemoryDevice());
    await log.promise({ round: 5, node: 2 });
    for (const lower of [{ round: 5, node: 1 }, { round: 4, node: 9 }]) {
      assert.throws(() => log.accept(1, lower, entryBytes(1, 8)), BallotError);
    }
    assert.equal(log.read(1), undefined, "a refused accept stores nothing");
    for (
      const [slot, ballot] of [[1, { round: 5, node: 2 }], [2, { round: 5, node: 3 }], [3, {
        round: 6,
        node: 0,
      }]] as const
    ) {
      log.accept(slot, ballot, entryBytes(slot, 8));
      assert.deepEqual(log.read(slot)?.ballot, ballot);
    }
    await log.close();
  });
});
