// Fault injection and power loss for ConsensusLog (with and without durable accepts), its
// promised-ballot / hard-state record, and snapshots with truncation. One checker compares a
// reopened log with what the workload saw acknowledged.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  ClosedError,
  ConsensusLog,
  IoError,
  PoisonedError,
  recover,
  SnapshotStore,
} from "../mod.ts";
import type { Device } from "../src/device.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { entryBytes, sameBytes, seededRandom } from "./_helpers.ts";

const OPTIONS = {
  dir: "/data/log",
  segmentSizeBytes: 64 * 1024,
  bufferSizeBytes: 8 * 1024,
  mutableSizeBytes: 256 * 1024,
};
const value = (slot: number, round: number) =>
  entryBytes(slot * 1000 + round, 200 + (slot % 7) * 100);

/** What the workload saw acknowledged. */
interface Acks {
  committed: Map<number, number>; // slot → round
  accepted: Map<number, number>; // slot → highest acknowledged durable accept round
  promised: number; // highest acknowledged promise round
  term: number;
  /** Highest slot passed to truncatePrefix (acknowledged or not: a failed one may still land). */
  truncatedBelow: number;
  snapshotSlot: number; // highest acknowledged snapshot slot (-1: none)
}

const newAcks = (): Acks => ({
  committed: new Map(),
  accepted: new Map(),
  promised: -1,
  term: 0,
  truncatedBelow: 0,
  snapshotSlot: -1,
});

function expectedError(error: unknown): void {
  const ok = error instanceof IoError || error instanceof PoisonedError ||
    error instanceof ClosedError;
  assert.ok(ok, `unexpected error: ${(error as Error)?.stack ?? error}`);
}

/** Accepts, commits, promises, terms, a snapshot and a truncation; stops at the first failure. */
async function workload(device: Device, durableAccepts: boolean, acks: Acks): Promise<unknown> {
  let log: ConsensusLog | undefined;
  let snapshots: SnapshotStore | undefined;
  try {
    log = await ConsensusLog.open({ ...OPTIONS, device, durableAccepts });
    snapshots = await SnapshotStore.open({ dir: "/data/snapshots", device });
    for (let round = 1; round <= 6; round++) {
      await log.promise({ round, node: 1 });
      acks.promised = round;
      await log.setHardState({ term: round, vote: 1 });
      acks.term = round;
      const base = (round - 1) * 40;
      for (let slot = base; slot < base + 40; slot++) {
        const pending = log.accept(slot, { round, node: 1 }, value(slot, round));
        if (pending) {
          await pending;
          acks.accepted.set(slot, round);
        }
      }
      const slots = Array.from({ length: 30 }, (_, i) => base + i);
      await log.commitMany(slots);
      for (const slot of slots) acks.committed.set(slot, round);
      if (round === 3) {
        await snapshots.create(base + 29, value(999, round));
        acks.snapshotSlot = base + 29;
        acks.truncatedBelow = base + 29; // requested after the snapshot that covers it was durable
        await log.truncatePrefix(base + 29);
      }
    }
    await log.close();
    await snapshots.close();
    return undefined;
  } catch (error) {
    await log?.close().catch(() => {});
    await snapshots?.close().catch(() => {});
    return error;
  }
}

/** Reopens on `device` and checks every acknowledged fact; returns violations. */
async function check(device: Device, acks: Acks): Promise<string[]> {
  const violations: string[] = [];
  const log = await ConsensusLog.open({ ...OPTIONS, device });
  const snapshots = await SnapshotStore.open({ dir: "/data/snapshots", device });
  try {
    for (const [slot, round] of acks.committed) {
      if (slot < acks.truncatedBelow) continue;
      const entry = log.read(slot);
      if (!entry?.committed) violations.push(`committed slot ${slot} lost`);
      else if (entry.ballot.round !== round) {
        violations.push(`slot ${slot} has round ${entry.ballot.round}`);
      } else if (!sameBytes(entry.value, value(slot, round))) {
        violations.push(`slot ${slot} bytes differ`);
      }
    }
    for (const [slot, round] of acks.accepted) {
      if (acks.committed.has(slot) || slot < acks.truncatedBelow) continue;
      const entry = log.read(slot);
      if (!entry) violations.push(`durable accept of slot ${slot} lost`);
      else if (entry.ballot.round < round) {
        violations.push(`slot ${slot} went back to round ${entry.ballot.round}`);
      }
    }
    if ((log.promised?.round ?? -1) < acks.promised) {
      violations.push(`promise went back to ${log.promised?.round}`);
    }
    if (log.hardState.term < acks.term) violations.push(`term went back to ${log.hardState.term}`);
    const latest = await snapshots.latest();
    if ((latest?.slot ?? -1) < acks.snapshotSlot) {
      violations.push(`snapshot ${acks.snapshotSlot} lost`);
    }
    // Recovery from snapshot + log replays a gap-free sequence after the snapshot.
    let expected = latest ? latest.slot + 1 : 0;
    await recover({
      log,
      snapshots,
      onEntry: (entry) => {
        if (entry.slot !== expected && acks.committed.has(expected)) {
          violations.push(`replay skipped slot ${expected}`);
        }
        expected = entry.slot + 1;
      },
    });
  } finally {
    await log.close();
    await snapshots.close();
  }
  return violations;
}

async function countCalls(durableAccepts: boolean): Promise<number> {
  const faulty = new FaultyDevice(new MemoryDevice());
  const error = await workload(faulty, durableAccepts, newAcks());
  assert.equal(error, undefined, `the unarmed workload fails: ${error}`);
  return faulty.calls;
}

describe("ConsensusLog under injected faults", () => {
  for (const durableAccepts of [false, true]) {
    test(
      `an EIO at every write-path call, then a restart and a power loss, keeps every acknowledged fact (durableAccepts ${durableAccepts})`,
      {
        timeout: 600_000,
      },
      async () => {
        const calls = await countCalls(durableAccepts);
        assert.ok(calls > 50, `the workload makes ${calls} write-path calls`);
        const failures: string[] = [];
        for (let at = 1; at <= calls; at++) {
          const memory = new MemoryDevice();
          const faulty = new FaultyDevice(memory);
          faulty.failAt(at, { errno: "EIO" });
          const acks = newAcks();
          const error = await workload(faulty, durableAccepts, acks);
          if (error !== undefined) expectedError(error);
          const restarted = memory.crash();
          for (const v of await check(restarted, acks)) failures.push(`EIO at call ${at}: ${v}`);
          const lost = restarted.powerLoss({ mode: "drop" });
          for (const v of await check(lost, acks)) {
            failures.push(`EIO at call ${at}, then power loss: ${v}`);
          }
        }
        assert.deepEqual(failures.slice(0, 10), []);
      },
    );
  }

  test("ENOSPC, EDQUOT and EINTR at a seeded sample of calls keep every acknowledged fact", {
    timeout: 600_000,
  }, async () => {
    const calls = await countCalls(true);
    const random = seededRandom(11);
    const failures: string[] = [];
    for (const errno of ["ENOSPC", "EDQUOT", "EINTR"] as const) {
      for (let k = 0; k < 40; k++) {
        const at = 1 + Math.floor(random() * calls);
        const memory = new MemoryDevice();
        const faulty = new FaultyDevice(memory);
        faulty.failAt(at, { errno, persistent: k % 2 === 0 });
        const acks = newAcks();
        const error = await workload(faulty, true, acks);
        if (error !== undefined) {
          expectedError(error);
          if (error instanceof IoError) assert.equal(error.errno, errno);
        }
        for (const v of await check(memory.crash(), acks)) {
          failures.push(`${errno} at call ${at}: ${v}`);
        }
      }
    }
    assert.deepEqual(failures.slice(0, 10), []);
  });

  test("power loss at seeded moments (every mode) keeps every acknowledged fact", {
    timeout: 600_000,
  }, async () => {
    const calls = await countCalls(true);
    const random = seededRandom(23);
    const failures: string[] = [];
    for (let cycle = 0; cycle < 30; cycle++) {
      const at = 1 + Math.floor(random() * calls);
      const memory = new MemoryDevice();
      const faulty = new FaultyDevice(memory);
      // Freeze the disk at call `at`: the power fails there, whatever was in flight.
      const mode = (["drop", "random-pages", "torn-sector"] as const)[cycle % 3];
      faulty.failAt(at, { errno: "EIO", persistent: true });
      const acks = newAcks();
      const snapshotAcks = (): Acks => ({
        ...acks,
        committed: new Map(acks.committed),
        accepted: new Map(acks.accepted),
      });
      const error = await workload(faulty, true, acks);
      if (error !== undefined) expectedError(error);
      const image = memory.powerLoss({ mode, seed: cycle });
      for (const v of await check(image, snapshotAcks())) {
        failures.push(`cycle ${cycle} (${mode} at call ${at}): ${v}`);
      }
    }
    assert.deepEqual(failures.slice(0, 10), []);
  });
});
