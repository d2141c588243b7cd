// LogManager under power loss and injected faults: a log whose lease saw a commit resolve keeps
// its data and its name (names() reads it back) whatever fails afterwards.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, IoError, LogManager, PoisonedError } from "../mod.ts";
import type { Device } from "../src/device.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { entryBytes, seededRandom } from "./_helpers.ts";

const OPTIONS = {
  dir: "/data/logs",
  segmentSizeBytes: 64 * 1024,
  mutableSizeBytes: 64 * 1024,
  logCountMax: 3,
};
const NAMES = ["table:users", "../escape", "emoji 🦀", "nul\0name", "orders/2026"];

/** Commits slot 0 of each name in turn (with evictions, logCountMax 3); returns acknowledged names. */
async function workload(device: Device, acknowledged: Set<string>): Promise<unknown> {
  const manager = new LogManager({ ...OPTIONS, device });
  try {
    for (let round = 0; round < 2; round++) {
      for (const [i, name] of NAMES.entries()) {
        const lease = await manager.acquire(name);
        try {
          const slot = round;
          lease.log.accept(slot, { round: 1, node: 1 }, entryBytes(i * 10 + slot));
          await lease.log.commit(slot);
          acknowledged.add(`${name}#${slot}`);
        } finally {
          lease.release();
        }
      }
    }
    await manager.closeAll({ timeoutMs: 1000 });
    return undefined;
  } catch (error) {
    await manager.closeAll({ timeoutMs: 1000 }).catch(() => {});
    return error;
  }
}

async function check(device: Device, acknowledged: Set<string>): Promise<string[]> {
  const violations: string[] = [];
  const manager = new LogManager({ ...OPTIONS, device });
  try {
    const names = new Set(manager.names());
    for (const key of acknowledged) {
      const [name, slotText] = [
        key.slice(0, key.lastIndexOf("#")),
        key.slice(key.lastIndexOf("#") + 1),
      ];
      if (!names.has(name)) violations.push(`name ${JSON.stringify(name)} not listed`);
      const lease = await manager.acquire(name);
      const slot = Number(slotText);
      const entry = lease.log.read(slot);
      const i = NAMES.indexOf(name);
      if (!entry?.committed) violations.push(`${JSON.stringify(name)} lost slot ${slot}`);
      else if (entry.value.join() !== entryBytes(i * 10 + slot).join()) {
        violations.push(`${JSON.stringify(name)} slot ${slot} bytes differ`);
      }
      lease.release();
    }
  } finally {
    await manager.closeAll({ timeoutMs: 1000 });
  }
  return violations;
}

describe("LogManager under faults and power loss", () => {
  test(
    "an EIO at every write-path call, then a restart and a power loss, keeps acknowledged logs and names",
    {
      timeout: 600_000,
    },
    async () => {
      const counter = new FaultyDevice(new MemoryDevice());
      assert.equal(await workload(counter, new Set()), undefined);
      const calls = counter.calls;
      assert.ok(calls > 50, `the workload makes ${calls} write-path calls`);
      const failures: string[] = [];
      let checked = 0;
      for (let at = 1; at <= calls; at++) {
        const memory = new MemoryDevice();
        const faulty = new FaultyDevice(memory);
        faulty.failAt(at, { errno: "EIO" });
        const acknowledged = new Set<string>();
        const error = await workload(faulty, acknowledged);
        if (error !== undefined) {
          const typed = error instanceof IoError || error instanceof PoisonedError ||
            error instanceof ClosedError;
          assert.ok(typed, `call ${at}: unexpected ${(error as Error).stack}`);
        }
        checked += acknowledged.size;
        const restarted = memory.crash();
        for (const v of await check(restarted, acknowledged)) {
          failures.push(
            `EIO at call ${at}: ${v}`,
          );
        }
        const lost = restarted.powerLoss({ mode: "drop" });
        for (const v of await check(lost, acknowledged)) {
          failures.push(
            `EIO at call ${at}, then power loss: ${v}`,
          );
        }
      }
      assert.deepEqual(failures.slice(0, 10), []);
      assert.ok(checked > calls * 2, `checked ${checked} acknowledged commits over ${calls} runs`);
    },
  );

  test("power loss in every mode at seeded moments keeps acknowledged logs and names", {
    timeout: 600_000,
  }, async () => {
    const counter = new FaultyDevice(new MemoryDevice());
    await workload(counter, new Set());
    const random = seededRandom(5);
    const failures: string[] = [];
    for (let cycle = 0; cycle < 20; cycle++) {
      const memory = new MemoryDevice();
      const faulty = new FaultyDevice(memory);
      // The power fails at this call: nothing after it reaches the disk.
      faulty.failAt(1 + Math.floor(random() * counter.calls), { errno: "EIO", persistent: true });
      const acknowledged = new Set<string>();
      await workload(faulty, acknowledged);
      const mode = (["drop", "random-pages", "torn-sector"] as const)[cycle % 3];
      for (const v of await check(memory.powerLoss({ mode, seed: cycle }), acknowledged)) {
        failures.push(`cycle ${cycle} (${mode}): ${v}`);
      }
    }
    assert.deepEqual(failures.slice(0, 10), []);
  });
});
