/**
 * `inlineSync`: commits sync on the JS thread (`syncNow`) instead of the worker pool (`sync`).
 * The same promises hold: a commit resolves only once durable, a failed sync rejects it and
 * poisons the log and is never retried. Power-loss cycles with the option are in
 * power_loss_test.ts.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AppendLog, ConsensusLog, IoError, LogManager, PoisonedError } from "../mod.ts";
import type { DeviceCallKind } from "../src/faulty_device.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { assertBooleanOptionRefused, tempDir } from "./_helpers.ts";

const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 16 * 1024 };
const SYNCS: readonly DeviceCallKind[] = ["sync", "syncNow", "syncDirectory", "syncDirectoryNow"];

/** The sync calls made by `work`, by kind. */
async function syncsOf(device: FaultyDevice, work: () => Promise<unknown>) {
  const before = device.calls;
  await work();
  const counts: Partial<Record<DeviceCallKind, number>> = {};
  for (const call of device.callLog.slice(before)) {
    if (SYNCS.includes(call.kind)) counts[call.kind] = (counts[call.kind] ?? 0) + 1;
  }
  return counts;
}

const bytes = (text: string) => new TextEncoder().encode(text);

describe("inlineSync", () => {
  test("AppendLog: commits sync with syncNow, never on the pool; the default syncs on the pool", async () => {
    // A new segment is synced in full, with its directory, in the same way.
    const fresh = new FaultyDevice(new MemoryDevice());
    {
      await using log = await AppendLog.open({
        dir: "/fresh",
        ...SMALL,
        device: fresh,
        inlineSync: true,
      });
      const crossing = await syncsOf(fresh, async () => {
        for (let i = 0; i < 10; i++) log.enqueue(new Uint8Array(10_000));
        await log.commit();
      });
      assert.equal(crossing.sync, undefined, JSON.stringify(crossing));
      assert.equal(crossing.syncDirectory, undefined, JSON.stringify(crossing));
      assert.ok((crossing.syncDirectoryNow ?? 0) >= 1, JSON.stringify(crossing));
    }
    for (const inlineSync of [true, false]) {
      const device = new FaultyDevice(new MemoryDevice());
      await using log = await AppendLog.open({ dir: "/log", ...SMALL, device, inlineSync });
      // The first commit after open (it also marks the checkpoint unclean, always with syncNow).
      const first = await syncsOf(device, async () => {
        log.enqueue(bytes("first"));
        await log.commit();
      });
      // Later commits: one segment sync each.
      const later = await syncsOf(device, async () => {
        for (let i = 0; i < 5; i++) {
          log.enqueue(bytes(`entry ${i}`));
          await log.commit();
        }
      });
      if (inlineSync) {
        assert.equal(first.sync, undefined, JSON.stringify(first));
        assert.equal(first.syncDirectory, undefined, JSON.stringify(first));
        assert.deepEqual(later, { syncNow: 5 });
      } else {
        assert.equal(first.sync, 1, JSON.stringify(first));
        assert.deepEqual(later, { sync: 5 });
      }
      assert.equal(log.stats().commitNumber, 6);
    }
  });

  test("the sync is done when commit() resolves: nothing unsynced at that point", async () => {
    const memory = new MemoryDevice();
    await using log = await AppendLog.open({
      dir: "/log",
      ...SMALL,
      device: memory,
      inlineSync: true,
    });
    for (let i = 0; i < 20; i++) {
      log.enqueue(bytes(`entry ${i}`));
      const committed = log.commit();
      await committed;
      // A power loss now keeps every committed entry.
      const survivor = memory.powerLoss({ mode: "drop", seed: i });
      await using reopened = await AppendLog.open({ dir: "/log", ...SMALL, device: survivor });
      const values = [...reopened.scan()].map((entry) => new TextDecoder().decode(entry.value));
      assert.deepEqual(values, Array.from({ length: i + 1 }, (_, k) => `entry ${k}`));
    }
  });

  test("a failed inline sync rejects the commit with IoError, poisons the log, and is not retried", async () => {
    const device = new FaultyDevice(new MemoryDevice());
    const log = await AppendLog.open({ dir: "/log", ...SMALL, device, inlineSync: true });
    log.enqueue(bytes("kept"));
    await log.commit();
    log.enqueue(bytes("lost"));
    device.failAt(1, { errno: "EIO", kinds: ["syncNow"] });
    const failed = await syncsOf(device, async () => {
      await assert.rejects(log.commit(), (error: unknown) => {
        assert.ok(error instanceof IoError);
        assert.equal(error.code, "ERR_IO");
        assert.match(error.message, /EIO/);
        return true;
      });
    });
    assert.deepEqual(failed, { syncNow: 1 }, "one sync, failed, never retried");
    assert.equal(device.faults.length, 1);
    await assert.rejects(log.commit(), PoisonedError);
    assert.throws(() => log.enqueue(bytes("after")), PoisonedError);
    await log.close().catch(() => {});
    await using reopened = await AppendLog.open({ dir: "/log", ...SMALL, device: device.inner });
    assert.equal(reopened.stats().committedUntilAddress > 0, true);
    assert.deepEqual(
      [...reopened.scan()].map((entry) => new TextDecoder().decode(entry.value)).slice(0, 1),
      ["kept"],
    );
  });

  test("ConsensusLog and LogManager pass it through: commit(slot) syncs inline", async () => {
    const device = new FaultyDevice(new MemoryDevice());
    await using log = await ConsensusLog.open({ dir: "/c", ...SMALL, device, inlineSync: true });
    log.accept(1, { round: 1, node: 1 }, bytes("one"));
    await log.commit(1);
    const later = await syncsOf(device, async () => {
      for (let slot = 2; slot < 6; slot++) {
        log.accept(slot, { round: 1, node: 1 }, bytes(`slot ${slot}`));
        await log.commit(slot);
      }
    });
    assert.equal(later.sync, undefined, JSON.stringify(later));
    assert.ok((later.syncNow ?? 0) >= 4, JSON.stringify(later));
    assert.equal(log.readCommitted(5)?.committed, true);

    using dir = tempDir();
    const managed = new FaultyDevice(new MemoryDevice());
    await using manager = new LogManager({
      dir: dir.path,
      device: managed,
      inlineSync: true,
      ...SMALL,
    });
    await using lease = await manager.acquire("orders");
    lease.log.accept(1, { round: 1, node: 1 }, bytes("x"));
    await lease.log.commit(1);
    const managedLater = await syncsOf(managed, async () => {
      lease.log.accept(2, { round: 1, node: 1 }, bytes("y"));
      await lease.log.commit(2);
    });
    assert.equal(managedLater.sync, undefined, JSON.stringify(managedLater));
    assert.equal(managedLater.syncNow, 1, JSON.stringify(managedLater));
  });

  test("a non-boolean inlineSync is refused with ERR_INVALID_ARGUMENT and creates nothing", async () => {
    await assertBooleanOptionRefused("inlineSync");
  });
});
