// Many Workers, one log: real Workers attach to a ConsensusLog shared by the test's thread, accept
// and read on shared memory, and commit through the owner's group commit.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConsensusLog, InvalidArgumentError } from "../mod.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { attemptValue, runtimeCommand, seededRandom, tempDir } from "./_helpers.ts";

const WORKER_URL = new URL("./fixtures/consensus_worker.ts", import.meta.url).href;
const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 16 * 1024 };

/** A Worker running the fixture, called like a function. */
class TestWorker {
  #worker = new Worker(WORKER_URL, { type: "module" });
  #next = 0;
  #pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  #ready: Promise<void>;

  constructor() {
    let ready!: () => void;
    this.#ready = new Promise((resolve) => (ready = resolve));
    this.#worker.onmessage = (event: MessageEvent) => {
      if (event.data.ready) return ready();
      const { id, ok, result, code, message } = event.data;
      const pending = this.#pending.get(id)!;
      this.#pending.delete(id);
      if (ok) pending.resolve(result);
      else pending.reject(Object.assign(new Error(message), { code }));
    };
    this.#worker.onerror = (event) => {
      for (const pending of this.#pending.values()) pending.reject(new Error(String(event)));
    };
  }

  // deno-lint-ignore no-explicit-any
  async call(op: string, args: Record<string, unknown> = {}): Promise<any> {
    await this.#ready;
    const id = this.#next++;
    return await new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, op, args });
    });
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

async function withWorkers(
  count: number,
  handle: unknown,
  run: (workers: TestWorker[]) => Promise<void>,
): Promise<void> {
  const workers = Array.from({ length: count }, () => new TestWorker());
  try {
    await Promise.all(workers.map((worker) => worker.call("attach", { handle })));
    await run(workers);
  } finally {
    for (const worker of workers) worker.terminate();
  }
}

type Attempt = [slot: number, round: number, node: number];
const higher = (a: Attempt, b: Attempt) => a[1] > b[1] || (a[1] === b[1] && a[2] > b[2]);

describe("ConsensusLog shared with Workers", () => {
  test("N Workers × M accepts, disjoint and overlapping, random ballots: the highest ballot wins, commits are durable", async () => {
    using dir = tempDir();
    const WORKERS = 4;
    const DISJOINT = 300;
    const OVERLAPPING = 400;
    const random = seededRandom(5);
    const attempts: Attempt[][] = [];
    for (let w = 0; w < WORKERS; w++) {
      const mine: Attempt[] = [];
      for (let i = 0; i < DISJOINT; i++) mine.push([10_000 + w * 1000 + i, 1, w + 1]);
      for (let i = 0; i < OVERLAPPING; i++) {
        // 100 shared slots, rounds 1..20, node = worker: ballots of different Workers differ.
        mine.push([Math.floor(random() * 100), 1 + Math.floor(random() * 20), w + 1]);
      }
      mine.sort(() => random() - 0.5);
      attempts.push(mine);
    }
    const winner = new Map<number, Attempt>();
    for (const attempt of attempts.flat()) {
      const held = winner.get(attempt[0]);
      if (!held || higher(attempt, held)) winner.set(attempt[0], attempt);
    }
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      const handle = log.share();
      await withWorkers(WORKERS, handle, async (workers) => {
        const results: string[][] = await Promise.all(
          workers.map((worker, w) => worker.call("accepts", { attempts: attempts[w] })),
        );
        for (let w = 0; w < WORKERS; w++) {
          attempts[w].forEach((attempt, i) => {
            const best = winner.get(attempt[0])!;
            if (results[w][i] === "ok") return;
            assert.equal(results[w][i], "ERR_BALLOT", `attempt ${attempt}`);
            assert.ok(higher(best, attempt), `attempt ${attempt} refused though highest`);
          });
        }
        for (const [slot, best] of winner) {
          const entry = log.read(slot)!;
          assert.deepEqual([entry.ballot.round, entry.ballot.node], [best[1], best[2]], `${slot}`);
          assert.deepEqual(entry.value, attemptValue(...best));
        }
        // What every Worker sees is what the owner sees.
        const sample = [...winner.keys()].filter((_, i) => i % 13 === 0);
        for (const worker of workers) {
          const seen = await worker.call("read", { slots: sample });
          for (const [slot, round, node, committed, matches] of seen) {
            const best = winner.get(slot)!;
            assert.deepEqual([round, node, committed, matches], [best[1], best[2], false, true]);
          }
        }
        // Each Worker commits its own slots and a share of the overlapping ones, all at once.
        const before = log.stats();
        const committedFlags: boolean[][] = await Promise.all(
          workers.map((worker, w) =>
            worker.call("commit", {
              slots: [...winner.keys()].filter((slot) =>
                slot >= 10_000 ? Math.floor((slot - 10_000) / 1000) === w : slot % WORKERS === w
              ),
            })
          ),
        );
        assert.ok(committedFlags.flat().every((flag) => flag === true), "durable when resolved");
        const after = log.stats();
        assert.equal(after.committedCount, winner.size);
        assert.equal(after.acceptedCount, 0);
        // One sync serves commits from every thread: far fewer group commits than commits.
        // (How many depends on when the Workers' requests arrive, so no exact count.)
        assert.ok(
          (after.commits - before.commits) * 10 < winner.size,
          `${winner.size} commits from ${WORKERS} Workers took ${
            after.commits - before.commits
          } group commits`,
        );
      });
    }
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    for (const [slot, best] of winner) {
      const entry = log.readCommitted(slot)!;
      assert.deepEqual([entry.ballot.round, entry.ballot.node], [best[1], best[2]]);
      assert.deepEqual(entry.value, attemptValue(...best));
    }
  });

  test("a Worker accepts and commits while the owner commits its own slots and truncates", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    await withWorkers(1, log.share(), async ([worker]) => {
      const running = worker.call("acceptAndCommit", { from: 0, count: 3000, node: 1 });
      let finished = false;
      running.finally(() => (finished = true)).catch(() => {});
      let truncatedBelow = 0;
      let ownSlot = 1_000_000;
      while (!finished) {
        log.accept(ownSlot, { round: 1, node: 0 }, attemptValue(ownSlot, 1, 0));
        await log.commit(ownSlot++);
        if (log.read(truncatedBelow + 200)?.committed) {
          truncatedBelow += 200;
          await log.truncatePrefix(truncatedBelow);
        }
      }
      const committed: number[] = await running;
      assert.equal(committed.length, 3000);
      assert.ok(
        truncatedBelow >= 200,
        `the owner truncated while the Worker ran (${truncatedBelow})`,
      );
      for (const slot of committed) {
        const entry = log.read(slot);
        if (slot < truncatedBelow) assert.equal(entry, undefined, `slot ${slot} was truncated`);
        else assert.deepEqual(entry?.value, attemptValue(slot, 1, 1), `slot ${slot}`);
      }
      const seen = await worker.call("read", { slots: [0, truncatedBelow - 1, 2999] });
      assert.deepEqual(seen[0], null, "a truncated slot reads as absent in the Worker");
      assert.deepEqual(seen[2], [2999, 1, 1, true, true]);
      for (let slot = 1_000_000; slot < ownSlot; slot++) {
        assert.equal(log.readCommitted(slot)?.committed, true);
      }
    });
  });

  test("accepts racing the owner's commits of the same slots: the last accepted ballot is committed", async () => {
    using dir = tempDir();
    const SLOTS = 300;
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    await withWorkers(1, log.share(), async ([worker]) => {
      const racing = worker.call("raceAccepts", { slots: SLOTS, rounds: 200, node: 3 });
      let finished = false;
      racing.finally(() => (finished = true)).catch(() => {});
      const pending = new Set(Array.from({ length: SLOTS }, (_, i) => i));
      while (!finished || pending.size) {
        for (const slot of pending) {
          if (!log.read(slot)) continue;
          await log.commit(slot);
          pending.delete(slot);
        }
        await new Promise((wake) => setTimeout(wake, 0));
      }
      const { lastOk, unexpected } = await racing;
      assert.deepEqual(unexpected, []);
      let interleaved = 0;
      for (let slot = 0; slot < SLOTS; slot++) {
        const entry = log.readCommitted(slot)!;
        // No accept succeeds once the commit froze the slot, and none is lost before it.
        assert.deepEqual(entry.ballot, { round: lastOk[slot], node: 3 }, `slot ${slot}`);
        assert.deepEqual(entry.value, attemptValue(slot, lastOk[slot], 3));
        if (lastOk[slot] < 200) interleaved++;
      }
      assert.ok(interleaved > 0, "some commits landed while the Worker was still accepting");
    });
  });

  test("four Workers churn a small region while the owner commits: no read ever sees reused memory", async () => {
    using dir = tempDir();
    const SLOTS = 400;
    await using log = await ConsensusLog.open({
      dir: dir.path,
      ...SMALL,
      mutableSizeBytes: 128 * 1024, // 16 chunks of 8 KiB: claims, retirements and compaction
    });
    await withWorkers(4, log.share(), async (workers) => {
      const churning = workers.map((worker, w) =>
        worker.call("churn", { slots: SLOTS, rounds: 20_000, node: w + 1, seed: 11 + w })
      );
      let finished = 0;
      for (const run of churning) run.finally(() => finished++).catch(() => {});
      const random = seededRandom(3);
      let ownerReads = 0;
      while (finished < workers.length) {
        for (let i = 0; i < 200; i++) {
          const slot = Math.floor(random() * SLOTS);
          const entry = log.read(slot);
          if (!entry) continue;
          ownerReads++;
          const { round, node } = entry.ballot;
          assert.deepEqual(entry.value, attemptValue(slot, round, node), `owner read ${slot}`);
        }
        const slot = Math.floor(random() * SLOTS);
        if (log.read(slot)?.committed === false) await log.commit(slot);
        else await new Promise((wake) => setTimeout(wake, 0));
      }
      const results = await Promise.all(churning);
      for (const { bad } of results) assert.deepEqual(bad, []);
      // Workers that fall behind in rounds mostly lose on ballots; together they churn a lot.
      const total = (key: "accepted" | "full" | "reads") =>
        results.reduce((sum, r) => sum + r[key], 0);
      // A region left with no free chunk cannot compact and stays full until frees empty a
      // whole chunk: such runs accepted under 4,000 (40k+ refusals); healthy ones 9,000+.
      assert.ok(total("accepted") > 5000, JSON.stringify(results));
      assert.ok(total("full") > 0, "the region filled, so chunks were retired and reused");
      assert.ok(total("reads") > 40_000, JSON.stringify(results));
      assert.ok(ownerReads > 0);
      // The region's live bytes are exactly the accepted entries it holds.
      let live = 0;
      for (const entry of log.uncommitted()) live += (40 + entry.value.length + 7) & ~7;
      assert.equal(log.stats().regionLiveBytes, live);
    });
  });

  test("zero-copy readView in the owner and in a Worker; views detach when truncation or detach unmaps", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    const slots = Array.from({ length: 2000 }, (_, i) => i);
    for (const slot of slots) log.accept(slot, { round: 1, node: 0 }, attemptValue(slot, 1, 0));
    await log.commitMany(slots);
    await withWorkers(2, log.share(), async ([a, b]) => {
      const ownerView = log.readView(5)!.value;
      assert.deepEqual(ownerView, attemptValue(5, 1, 0));
      assert.equal(ownerView.buffer.byteLength, SMALL.segmentSizeBytes, "a view of the mapping");
      const [length, mapped, matches] = await a.call("holdView", { slot: 5 });
      assert.deepEqual([length, mapped, matches], [ownerView.length, SMALL.segmentSizeBytes, true]);
      await b.call("holdView", { slot: 1900 });
      await log.truncatePrefix(1500);
      assert.equal(ownerView.byteLength, 0, "the owner's view detached with its segment");
      assert.equal(await a.call("heldViewLength", {}), length, "still mapped in the Worker");
      assert.equal(await a.call("heldViewLength", { slot: 1600 }), 0, "released below begin");
      assert.ok((await b.call("heldViewLength", {})) > 0);
      await b.call("detach");
      assert.equal(await b.call("heldViewLength", {}), 0, "detach unmaps and detaches");
    });
  });

  test("the owner closes while Workers read: every Worker gets ClosedError, never a crash", async () => {
    using dir = tempDir();
    const log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    const slots = Array.from({ length: 300 }, (_, i) => i);
    for (const slot of slots) log.accept(slot, { round: 1, node: 0 }, attemptValue(slot, 1, 0));
    await log.commitMany(slots);
    await withWorkers(3, log.share(), async (workers) => {
      const reading = workers.map((worker) => worker.call("readUntilClosed", { slots }));
      await new Promise((wake) => setTimeout(wake, 100));
      await log.close();
      for (const result of await Promise.all(reading)) {
        assert.equal(result.code, "ERR_CLOSED");
        assert.equal(result.wrong, 0, "every value read before the close was right");
        assert.ok(result.reads > 0);
      }
      assert.deepEqual(await workers[0].call("tryAfterClose", { slot: 5 }), [
        "ERR_CLOSED",
        "ERR_CLOSED",
        "ERR_CLOSED",
      ]);
    });
  });

  test("a Worker's tail follows commits made by the owner and by other Workers", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    await withWorkers(2, log.share(), async ([follower, writer]) => {
      const following = follower.call("tail", { from: 5, count: 40 });
      for (let slot = 0; slot < 25; slot++) {
        log.accept(slot, { round: 1, node: 0 }, attemptValue(slot, 1, 0));
        await log.commit(slot);
      }
      const attempts = Array.from({ length: 20 }, (_, i): Attempt => [25 + i, 1, 1]);
      await writer.call("accepts", { attempts });
      await writer.call("commit", { slots: attempts.map(([slot]) => slot) });
      assert.deepEqual(await following, Array.from({ length: 40 }, (_, i) => 5 + i));
      assert.deepEqual(
        await writer.call("uncommitted"),
        [],
        "no accepted entry is left once all are committed",
      );
    });
  });

  test("durable accepts from a Worker are journaled by the owner and survive a reopen", async () => {
    using dir = tempDir();
    const attempts = Array.from({ length: 30 }, (_, i): Attempt => [i * 3, 2 + (i % 4), 7]);
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL, durableAccepts: true });
      await withWorkers(2, log.share(), async (workers) => {
        await Promise.all([
          workers[0].call("durableAccepts", { attempts: attempts.slice(0, 15) }),
          workers[1].call("durableAccepts", { attempts: attempts.slice(15) }),
        ]);
        assert.deepEqual(
          (await workers[0].call("uncommitted")).sort((a: number, b: number) => a - b),
          attempts.map(([slot]) => slot),
        );
      });
    }
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL, durableAccepts: true });
    for (const [slot, round, node] of attempts) {
      const entry = log.read(slot)!;
      assert.deepEqual([entry.ballot, entry.committed], [{ round, node }, false]);
      assert.deepEqual(entry.value, attemptValue(slot, round, node));
    }
  });

  test("a promise made by the owner binds accepts in every Worker", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    await withWorkers(1, log.share(), async ([worker]) => {
      await log.promise({ round: 5, node: 0 });
      assert.deepEqual(
        await worker.call("accepts", { attempts: [[1, 4, 9], [2, 5, 0], [3, 6, 1]] }),
        ["ERR_BALLOT", "ok", "ok"],
      );
    });
  });

  test("a shared log closes cleanly with nothing else pending (no Worker attached)", async () => {
    const { spawnSync } = await import("node:child_process");
    const [command, args] = runtimeCommand(
      new URL("./fixtures/share_close.ts", import.meta.url).pathname,
    );
    const run = spawnSync(command, args, { encoding: "utf8" });
    assert.equal(run.stdout.trim(), "closed", run.stderr);
    assert.equal(run.status, 0);
  });

  test("bad handles and unshareable logs get InvalidArgumentError", async () => {
    for (const handle of [undefined, {}, { kind: "hybridlog/consensus-log", version: 99 }]) {
      assert.throws(
        () => ConsensusLog.attach(handle as never),
        (e: unknown) => e instanceof InvalidArgumentError && e.code === "ERR_INVALID_ARGUMENT",
      );
    }
    await using log = await ConsensusLog.open({ dir: "/mem/log", device: new MemoryDevice() });
    assert.throws(() => log.share(), InvalidArgumentError);
  });
});
