/**
 * The index and region buffers of a closed ConsensusLog serve the next log the thread opens
 * (src/shared_buffers.ts): the next log starts empty, and nothing of the closed one reads them.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConsensusLog } from "../mod.ts";
import { ClosedError } from "../src/errors.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { KEPT_PER_SIZE, keptSharedBuffers } from "../src/shared_buffers.ts";
import { entryBytes, tempDir } from "./_helpers.ts";

// Sizes no other test in the process uses, so the kept buffers counted here are this file's.
const SIZES = { indexSizeBytes: 3 * 1024 * 1024 + 4096, mutableSizeBytes: 5 * 1024 * 1024 };
const ballot = { round: 1, node: 1 };

function openOn(device: MemoryDevice, dir: string): Promise<ConsensusLog> {
  return ConsensusLog.open({ dir, device, ...SIZES });
}

describe("shared buffers of closed consensus logs", () => {
  test("a closed log's index and region serve the next log, which starts empty; the closed one reads none of it", async () => {
    const device = new MemoryDevice();
    const before = [keptSharedBuffers("index"), keptSharedBuffers("region")];
    const a = await openOn(device, "/a");
    for (let slot = 0; slot < 100; slot++) a.accept(slot, ballot, entryBytes(slot, 120));
    await a.commitMany([...Array(50).keys()]);
    const uncommitted = a.uncommitted();
    const committed = a.committed();
    assert.equal(uncommitted.next().value?.slot, 50);
    assert.equal(committed.next().value?.slot, 0);
    await a.close();
    assert.deepEqual(
      [keptSharedBuffers("index"), keptSharedBuffers("region")],
      [before[0] + 1, before[1] + 1],
    );
    // Its levels read 0 (it holds nothing in memory now); its counters stay.
    const closedStats = a.stats();
    assert.deepEqual(
      [closedStats.acceptedCount, closedStats.committedCount, closedStats.indexBytes],
      [0, 0, 0],
    );
    assert.equal(closedStats.commits, 1);

    const b = await openOn(device, "/b");
    assert.deepEqual([keptSharedBuffers("index"), keptSharedBuffers("region")], before);
    // The index was zeroed: nothing of /a's slots shows through.
    assert.deepEqual([b.stats().acceptedCount, b.stats().committedCount], [0, 0]);
    assert.equal(b.read(0), undefined);
    assert.equal(b.read(60), undefined);
    for (let slot = 0; slot < 80; slot++) b.accept(slot, ballot, entryBytes(1000 + slot, 90));
    await b.commitMany([...Array(30).keys()]);

    // /a's suspended iterations end rather than read /b's entries at the same slots.
    assert.deepEqual([...uncommitted], []);
    assert.deepEqual([...committed], []);
    assert.deepEqual(a.stats(), closedStats);
    assert.throws(() => a.read(1), ClosedError);
    assert.throws(() => a.accept(200, ballot, entryBytes(0, 10)), ClosedError);
    await assert.rejects(a.truncatePrefix(10), ClosedError);
    for (let slot = 0; slot < 80; slot++) {
      const entry = b.read(slot);
      assert.equal(entry?.committed, slot < 30);
      assert.deepEqual(entry?.value, entryBytes(1000 + slot, 90));
    }
    await b.close();

    // /a reopens whole from its files (into /b's buffers, zeroed again).
    await using reopened = await openOn(device, "/a");
    const values = [...reopened.committed()].map((entry) => [entry.slot, entry.value]);
    assert.deepEqual(values, [...Array(50).keys()].map((slot) => [slot, entryBytes(slot, 120)]));
    assert.equal(reopened.read(60), undefined, "plain accepts are not durable");
  });

  test("at most KEPT_PER_SIZE buffers of a size are kept", async () => {
    const device = new MemoryDevice();
    const logs: ConsensusLog[] = [];
    for (let i = 0; i < KEPT_PER_SIZE + 2; i++) logs.push(await openOn(device, `/many-${i}`));
    const kept = () => keptSharedBuffers("index", SIZES.indexSizeBytes);
    assert.equal(kept(), 0, "the logs took every kept buffer of their size");
    for (const log of logs) await log.close();
    assert.equal(kept(), KEPT_PER_SIZE);
  });

  test("a log that shared its buffers with Workers never hands them on", async () => {
    using dir = tempDir("hybridlog-shared-buffers-");
    const log = await ConsensusLog.open({ dir: dir.path, ...SIZES });
    const handle = log.share();
    const before = [keptSharedBuffers("index"), keptSharedBuffers("region")];
    await log.close();
    assert.deepEqual([keptSharedBuffers("index"), keptSharedBuffers("region")], before);
    assert.equal(handle.index.byteLength, SIZES.indexSizeBytes);
  });
});
