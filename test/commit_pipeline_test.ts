/**
 * Group commit with a second cycle in flight: a commit requested while a sync runs writes and
 * starts its own sync at once, yet resolves only after that sync and every earlier cycle are done;
 * a failed sync poisons the log and rejects every waiter, also those of a later cycle whose own
 * sync succeeded. Syncs are held by the test (a device whose file syncs wait for a release).
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AppendLog, ConsensusLog, IoError, NotCommittedError, PoisonedError } from "../mod.ts";
import type { DeviceFile, SyncMode } from "../src/device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { forwardingFile, WrappingDevice } from "./_wrapping_device.ts";

interface HeldSync {
  path: string;
  release(): void;
  fail(): void;
}

/** A memory device whose file syncs wait until the test releases (or fails) them, in any order. */
class HeldSyncDevice extends WrappingDevice {
  readonly pending: HeldSync[] = [];
  /** While false, syncs complete at once (opening a log syncs too). */
  holding = false;

  constructor() {
    super("held-sync", new MemoryDevice());
  }

  protected override wrapFile(file: DeviceFile, path: string): DeviceFile {
    const sync = (mode: SyncMode): Promise<void> => {
      if (!this.holding) return file.sync(mode);
      return new Promise((resolve, reject) => {
        this.pending.push({
          path,
          release: () => file.sync(mode).then(resolve, reject),
          fail: () => reject(new IoError("fdatasync", "EIO", path)),
        });
      });
    };
    return forwardingFile(file, { sync });
  }

  /** Removes and returns the `n`th held sync (0 = oldest). */
  take(n = 0): HeldSync {
    const [held] = this.pending.splice(n, 1);
    assert.ok(held, `a sync is held (${this.pending.length} pending)`);
    return held;
  }
}

/** Lets every pending microtask and immediate run (cycles start in either). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Tracks whether a promise settled, and how. */
function watch<T>(promise: Promise<T>) {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false };
  promise.then(
    (value) => Object.assign(state, { done: true, value }),
    (error) => Object.assign(state, { done: true, error }),
  );
  return state;
}

const bytes = (text: string) => new TextEncoder().encode(text);

async function openLog(device: HeldSyncDevice): Promise<AppendLog> {
  const log = await AppendLog.open({ dir: "/log", device, durability: "data" });
  device.holding = true;
  return log;
}

describe("group commit with a cycle in flight", () => {
  test("a commit requested during a sync starts its own sync and resolves only after it", async () => {
    const device = new HeldSyncDevice();
    const log = await openLog(device);
    log.enqueue(bytes("a"));
    const first = watch(log.commit());
    await settle();
    assert.equal(device.pending.length, 1, "the first cycle's sync is in flight");
    const b = log.enqueue(bytes("b"));
    const second = watch(log.commit());
    await settle();
    assert.equal(device.pending.length, 2, "the second cycle wrote and synced without waiting");
    assert.equal(first.done || second.done, false);

    device.take(0).release();
    await settle();
    assert.equal(first.done, true);
    assert.equal(first.error, undefined);
    assert.equal(second.done, false, "the second commit waits for its own sync");
    assert.ok(log.committedUntilAddress <= b, "entry b is not committed before its sync");

    device.take(0).release();
    await settle();
    assert.equal(second.error, undefined);
    assert.equal(second.value?.commitNumber, (first.value?.commitNumber ?? 0) + 1);
    assert.ok(log.committedUntilAddress > b);
    device.holding = false;
    await log.close();
  });

  test("a later cycle whose sync ends first still completes after the earlier one", async () => {
    const device = new HeldSyncDevice();
    const log = await openLog(device);
    log.enqueue(bytes("a"));
    const order: string[] = [];
    const first = log.commit().then(() => order.push("first"));
    await settle();
    log.enqueue(bytes("b"));
    const second = log.commit().then(() => order.push("second"));
    await settle();
    assert.equal(device.pending.length, 2);
    device.take(1).release(); // the second cycle's sync ends first
    await settle();
    assert.deepEqual(order, [], "nothing completes before the earlier cycle");
    device.take(0).release();
    await Promise.all([first, second]);
    assert.deepEqual(order, ["first", "second"]);
    device.holding = false;
    await log.close();
  });

  test("commits that arrive while two cycles are in flight join a third, started after one ends", async () => {
    const device = new HeldSyncDevice();
    const log = await openLog(device);
    const waits = [];
    for (let i = 0; i < 2; i++) {
      log.enqueue(bytes(`cycle ${i}`));
      waits.push(watch(log.commit()));
      await settle();
    }
    log.enqueue(bytes("c"));
    const third = [watch(log.commit()), watch(log.commit())];
    await settle();
    assert.equal(device.pending.length, 2, "at most two cycles are in flight");
    device.take(0).release();
    await settle();
    assert.equal(device.pending.length, 2, "the third cycle starts once the first completes");
    device.take(0).release();
    device.take(0).release();
    await settle();
    for (const state of [...waits, ...third]) assert.equal(state.error, undefined);
    assert.equal(third[0].value?.commitNumber, third[1].value?.commitNumber, "one shared cycle");
    assert.equal(log.stats().commits, 3);
    device.holding = false;
    await log.close();
  });

  test("a failed sync poisons the log and rejects the waiters of every cycle after it", async () => {
    const device = new HeldSyncDevice();
    const log = await openLog(device);
    log.enqueue(bytes("a"));
    const first = watch(log.commit());
    await settle();
    log.enqueue(bytes("b"));
    const second = watch(log.commit());
    await settle();
    assert.equal(device.pending.length, 2);
    device.take(1).release(); // the later sync succeeds…
    await settle();
    device.take(0).fail(); // …but the earlier one fails: nothing after it may be acknowledged
    await settle();
    assert.ok(first.error instanceof IoError, `first: ${first.error}`);
    assert.ok(second.error instanceof IoError, `second: ${second.error}`);
    const before = log.commitNumber;
    await assert.rejects(log.commit(), PoisonedError);
    assert.throws(() => log.enqueue(bytes("c")), PoisonedError);
    assert.equal(log.commitNumber, before, "no commit point moved");
    assert.equal(device.pending.length, 0, "the failed sync is never retried");
    await log.close().catch(() => {});
  });

  test("a commit with nothing new joins the cycle in flight instead of resolving early", async () => {
    const device = new HeldSyncDevice();
    const log = await openLog(device);
    log.enqueue(bytes("a"));
    const first = watch(log.commit());
    await settle();
    const again = watch(log.commit());
    await settle();
    assert.equal(device.pending.length, 1, "no second sync for nothing new");
    assert.equal(again.done, false, "it waits for the entry's sync");
    device.take(0).release();
    await settle();
    assert.equal(again.error, undefined);
    assert.equal(again.value?.commitNumber, first.value?.commitNumber);
    device.holding = false;
    await log.close();
  });

  test("ConsensusLog: a slot reads committed exactly when its own cycle completes", async () => {
    const device = new HeldSyncDevice();
    const log = await ConsensusLog.open({ dir: "/consensus", device, durability: "data" });
    device.holding = true;
    const ballot = { round: 1, node: 1 };
    log.accept(1, ballot, bytes("one"));
    log.accept(2, ballot, bytes("two"));
    const first = watch(log.commit(1));
    await settle();
    const again = watch(log.commit(1)); // slot 1 is frozen by the first call, not committed
    const second = watch(log.commit(2));
    await settle();
    assert.equal(device.pending.length, 2);
    assert.throws(() => log.readCommitted(1), NotCommittedError);
    device.take(0).release();
    await settle();
    assert.equal(first.done && again.done, true);
    assert.equal(log.readCommitted(1)?.committed, true);
    assert.equal(second.done, false);
    assert.equal(log.read(2)?.committed, false, "slot 2 is not committed before its sync");
    device.take(0).release();
    await settle();
    assert.equal(second.error, undefined);
    assert.equal(log.readCommitted(2)?.committed, true);
    device.holding = false;
    await log.close();
  });

  for (const committers of [100, 200]) {
    test(
      `${committers} committers in lockstep: ${
        committers >= 128
          ? "the next cycle starts once half joined, the rest join another"
          : "one cycle"
      }`,
      async () => {
        const device = new HeldSyncDevice();
        const log = await openLog(device);
        const rounds: Array<Array<ReturnType<typeof watch>>> = [[], []];
        const lanes = Array.from({ length: committers }, async (_, lane) => {
          for (let round = 0; round < 2; round++) {
            log.enqueue(bytes(`lane ${lane} round ${round}`));
            const commit = log.commit();
            rounds[round].push(watch(commit));
            await commit;
          }
        });
        await settle();
        assert.equal(device.pending.length, 1, "every lane joined the first cycle");
        device.take(0).release();
        await settle();
        assert.ok(rounds[0].every((w) => w.done && w.error === undefined));
        assert.equal(rounds[1].length, committers, "every lane committed again");
        const split = committers >= 128;
        assert.equal(device.pending.length, split ? 2 : 1);
        device.take(0).release();
        await settle();
        const done = rounds[1].map((w) => w.done);
        const half = committers / 2;
        if (split) {
          assert.deepEqual(done.slice(0, half), Array(half).fill(true), "the first half's cycle");
          assert.deepEqual(done.slice(half), Array(half).fill(false), "the rest wait for theirs");
          device.take(0).release();
          await settle();
        }
        assert.ok(rounds[1].every((w) => w.done && w.error === undefined));
        await Promise.all(lanes);
        device.holding = false;
        await log.close();
      },
    );
  }

  test("ConsensusLog: more slots frozen than its queue first holds (512) all commit, each with its cycle", async () => {
    const device = new HeldSyncDevice();
    const log = await ConsensusLog.open({ dir: "/consensus", device, durability: "data" });
    device.holding = true;
    const ballot = { round: 1, node: 1 };
    const value = (slot: number) => bytes(`value of ${slot}`);
    let next = 0;
    const commitSlots = (count: number) => {
      const waits = [];
      for (let i = 0; i < count; i++, next++) {
        log.accept(next, ballot, value(next));
        waits.push(watch(log.commit(next)));
      }
      return { first: next - count, end: next, waits };
    };
    const a = commitSlots(400);
    await settle();
    const b = commitSlots(100);
    await settle();
    assert.equal(device.pending.length, 2, "cycles a and b are in flight");
    device.take(0).release();
    await settle();
    assert.ok(a.waits.every((w) => w.done && w.error === undefined));
    // 100 slots still wait at the queue's end: 200 more reach it, so the live part moves to the
    // front; 600 more after them outgrow it.
    const c = commitSlots(200);
    await settle();
    const d = commitSlots(600);
    for (let slot = b.first; slot < d.end; slot++) {
      assert.equal(log.read(slot)?.committed, false, `slot ${slot} waits for its cycle`);
    }
    for (const cycle of [b, c, d]) {
      assert.ok(cycle.waits.every((w) => !w.done));
      while (!cycle.waits.every((w) => w.done)) {
        await settle();
        device.take(0).release();
        await settle();
      }
      assert.ok(cycle.waits.every((w) => w.error === undefined));
      for (let slot = cycle.first; slot < cycle.end; slot++) {
        assert.deepEqual(log.readCommitted(slot)?.value, value(slot));
      }
      if (cycle !== d) assert.equal(log.read(cycle.end)?.committed, false);
    }
    device.holding = false;
    await log.close();
  });
});
