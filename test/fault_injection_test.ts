// The fault matrix of AppendLog: a deterministic workload is run once to count its write-path
// calls, then once per call index with that call failing (each errno, and as a short write). Every
// error that escapes must be typed; a failed write or sync must poison the log; and after a process
// restart (or a power loss) the log must hold a prefix with every acknowledged entry and go on.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AppendLog, ClosedError, type Device, IoError, PoisonedError } from "../mod.ts";
import { type DeviceCall, type FaultErrno, FaultyDevice } from "../src/faulty_device.ts";
import { MemoryDevice, type PowerLossMode } from "../src/memory_device.ts";
import { seededRandom } from "./_helpers.ts";
import { checkRecovered, LogModel } from "./_log_model.ts";

const OPTIONS = {
  dir: "/data/log",
  segmentSizeBytes: 64 * 1024,
  bufferSizeBytes: 8 * 1024,
  checkpointIntervalBytes: 32 * 1024,
};
const ERRNOS: readonly FaultErrno[] = ["EIO", "ENOSPC", "EDQUOT", "EINTR"];
const MODES: readonly PowerLossMode[] = ["drop", "random-pages", "torn-sector"];
/** Entries of 100..1599 bytes: ~850 on average, so 24 rounds fill two 64 KiB segments. */
const sizeOf = (id: number) => 100 + (id * 389) % 1500;

type Step =
  | { kind: "enqueue"; count: number }
  | { kind: "batch"; count: number }
  | { kind: "commit" }
  | { kind: "overlapping commits" }
  | { kind: "truncate" };

/** The fixed plan: rounds of a few entries (sometimes a batch) and a commit; one truncation. */
const PLAN: Step[] = (() => {
  const random = seededRandom(4242);
  const plan: Step[] = [];
  for (let round = 0; round < 24; round++) {
    const count = 2 + Math.floor(random() * 8);
    plan.push({ kind: random() < 0.3 ? "batch" : "enqueue", count });
    plan.push({ kind: random() < 0.2 ? "overlapping commits" : "commit" });
    if (round === 18) plan.push({ kind: "truncate" });
  }
  return plan;
})();

interface Arming {
  errno: FaultErrno;
  at: number;
  shortWrite?: boolean;
  persistent?: boolean;
  /** Take a power loss of this mode the moment the first error escapes. */
  powerLoss?: { mode: PowerLossMode; seed: number };
}

interface Run {
  memory: MemoryDevice;
  faulty: FaultyDevice;
  model: LogModel;
  errors: unknown[];
  /** The injected fault, once it fired. */
  fault: DeviceCall | undefined;
  /** What the power loss left, with the model as it was at that moment. */
  lost?: { device: MemoryDevice; model: LogModel };
  /** Faults after which the log was not poisoned although the write path failed. */
  unpoisoned: DeviceCall[];
}

function assertAllowed(error: unknown, arming: Arming | undefined, where: string): void {
  const what = `${where}: ${error instanceof Error ? error.stack : error}`;
  if (arming === undefined) assert.fail(`unarmed run failed at ${what}`);
  if (error instanceof IoError) {
    assert.equal(error.code, "ERR_IO", what);
    assert.equal(error.errno, arming.errno, what);
    return;
  }
  if (error instanceof PoisonedError) {
    assert.equal(error.code, "ERR_POISONED", what);
    assert.ok(error.cause instanceof IoError, `${what}: a poisoned log names the failure`);
    return;
  }
  assert.ok(error instanceof ClosedError, `only IoError, PoisonedError, ClosedError: ${what}`);
  assert.equal(error.code, "ERR_CLOSED", what);
}

/**
 * Whether the fault left the log not knowing what reached the disk, so it must be poisoned: a
 * failed sync, or a failed write other than a new file's first (a segment header: the half-made
 * segment is removed again and nothing changed).
 */
function mustPoison(fault: DeviceCall, calls: readonly DeviceCall[]): boolean {
  if (fault.kind === "sync" || fault.kind === "syncDirectory") return true;
  if (fault.kind !== "write") return false;
  for (let i = fault.index - 2; i >= 0; i--) {
    if (calls[i].path !== fault.path) continue;
    if (calls[i].kind === "create") return false;
    if (calls[i].kind === "write") return true;
  }
  return true;
}

/** Runs the plan on a FaultyDevice over a new MemoryDevice, armed as given. */
async function runWorkload(arming?: Arming): Promise<Run> {
  const memory = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
  const faulty = new FaultyDevice(memory);
  if (arming?.shortWrite) faulty.shortWriteAt(arming.at);
  else if (arming) {
    faulty.failAt(arming.at, { errno: arming.errno, persistent: arming.persistent });
  }
  const model = new LogModel({ sizeOf });
  const run: Run = { memory, faulty, model, errors: [], fault: undefined, unpoisoned: [] };

  let log: AppendLog;
  try {
    log = await AppendLog.open({ ...OPTIONS, device: faulty });
  } catch (error) {
    assertAllowed(error, arming, "open");
    run.errors.push(error);
    run.fault = faulty.faults[0];
    return run;
  }

  /** Runs one step; on its first error checks the poison rule and cuts the power if asked. */
  const step = async (where: string, work: () => void | Promise<void>) => {
    const failedBefore = run.errors.length;
    try {
      await work();
    } catch (error) {
      assertAllowed(error, arming, where);
      run.errors.push(error);
    }
    if (run.fault !== undefined || faulty.faults.length === 0) return;
    run.fault = faulty.faults[0];
    assert.ok(run.errors.length > failedBefore, `${where}: the injected fault was swallowed`);
    if (arming?.powerLoss) {
      run.lost = { device: memory.powerLoss(arming.powerLoss), model: model.copy() };
    }
    if (where === "close" || !mustPoison(run.fault, faulty.callLog)) return;
    try {
      await log.commit();
      run.unpoisoned.push(run.fault);
      model.acked = model.entries.length;
    } catch (error) {
      assert.ok(error instanceof PoisonedError, `${where}: commit after the fault: ${error}`);
      assert.throws(() => log.enqueue(new Uint8Array(1)), PoisonedError);
    }
  };

  const enqueue = (count: number, batch: boolean) => {
    const values = Array.from({ length: count }, () => model.nextBytes());
    const tailBefore = log.tailAddress;
    try {
      const addresses = batch ? log.enqueueBatch(values) : values.map((v) => {
        const address = log.enqueue(v);
        model.enqueued([address], [v]);
        return address;
      });
      if (batch) model.enqueued(addresses, values);
    } catch (error) {
      // A batch that failed half-way placed some entries: only a poisoned log may have done that.
      if (batch && log.tailAddress !== tailBefore) {
        assert.throws(() => log.enqueue(new Uint8Array(1)), PoisonedError, "half a batch");
      }
      throw error;
    }
  };

  const commit = async () => {
    const upTo = model.entries.length;
    await log.commit();
    model.acked = Math.max(model.acked, upTo);
  };

  for (const [i, planned] of PLAN.entries()) {
    const where = `step ${i} (${planned.kind})`;
    if (planned.kind === "enqueue" || planned.kind === "batch") {
      await step(where, () => enqueue(planned.count, planned.kind === "batch"));
    } else if (planned.kind === "commit") {
      await step(where, commit);
    } else if (planned.kind === "overlapping commits") {
      await step(where, async () => {
        // Two commits in flight at once, with an entry enqueued between them: one group commit.
        const results = await Promise.allSettled([
          commit(),
          Promise.resolve().then(() => enqueue(1, false)).then(commit),
        ]);
        const failure = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failure) throw failure.reason;
      });
    } else {
      await step(where, () => {
        const until = model.entries[model.acked - 1]?.address;
        if (until === undefined || log.committedUntilAddress < until) return;
        log.truncateUntil(until);
        model.truncatedUntil = until;
      });
    }
  }
  await step("close", () => log.close());
  return run;
}

/** Reopens `device`, checks the invariant against `model`, and commits one more entry. */
async function reopenAndCheck(device: MemoryDevice, model: LogModel, context: string) {
  const log = await AppendLog.open({ ...OPTIONS, device });
  const verdict = checkRecovered(log, model);
  assert.deepEqual(verdict.violations, [], context);
  model.recovered(verdict.recoveredCount);
  const value = model.nextBytes();
  const address = log.enqueue(value);
  await log.commit();
  model.enqueued([address], [value]);
  model.acked = model.entries.length;
  assert.deepEqual(log.read(address), value, `${context}: the reopened log takes new commits`);
  return log;
}

/** After the run: restart the process (the page cache survives), check, and commit. */
async function checkAfterRestart(run: Run, context: string): Promise<MemoryDevice> {
  const restarted = run.memory.crash();
  const log = await reopenAndCheck(restarted, run.model, `${context}, after restart`);
  await log.close();
  return restarted;
}

/**
 * After the run: restart, commit one entry, then cut the power while the restarted log runs.
 * What it acknowledged must survive, so its recovery must have made durable everything it
 * adopted from the page cache (files, their bytes, their directory entries).
 */
async function checkRestartThenPowerLoss(run: Run, context: string): Promise<string[]> {
  const restarted = run.memory.crash();
  const log = await reopenAndCheck(restarted, run.model, `${context}, after restart`);
  const lost = restarted.powerLoss({ mode: "drop" });
  await log.close();
  try {
    const again = await AppendLog.open({ ...OPTIONS, device: lost });
    const { violations } = checkRecovered(again, run.model);
    await again.close();
    return violations;
  } catch (error) {
    return [`reopen failed: ${error}`];
  }
}

/** Runs `check`, adding its failure (one line) to `failures` instead of stopping the matrix. */
async function collect(failures: string[], context: string, check: () => Promise<unknown>) {
  try {
    await check();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    failures.push(`${context}: ${message.split("\n").slice(0, 3).join(" ")}`);
  }
}

let unarmedCallsMemo: DeviceCall[] | undefined;
/** The write-path calls of the unarmed workload, in order. */
async function unarmedCalls(): Promise<DeviceCall[]> {
  unarmedCallsMemo ??= (await runWorkload()).faulty.callLog.slice();
  return unarmedCallsMemo;
}

describe("fault injection (AppendLog on FaultyDevice(MemoryDevice))", () => {
  test("the unarmed workload succeeds, rolls segments, and counts its write-path calls", async () => {
    const run = await runWorkload();
    const calls = await unarmedCalls();
    assert.deepEqual(run.faulty.callLog, calls, "the workload is deterministic");
    assert.deepEqual(run.errors, []);
    const kinds = new Set(calls.map((call) => call.kind));
    for (const kind of ["create", "write", "allocate", "sync", "syncDirectory", "rename"]) {
      assert.ok(kinds.has(kind as DeviceCall["kind"]), `the workload exercises ${kind}`);
    }
    assert.ok(calls.some((c) => c.kind === "remove" && c.path.endsWith(".hlog")), "truncated");
    assert.ok(calls.filter((c) => c.kind === "create").length >= 4, "segments rolled");
    await checkAfterRestart(run, "unarmed");
  });

  for (const errno of ERRNOS) {
    test(
      `an ${errno} at every write-path call index is typed, poisons on write/sync, and recovers`,
      {
        timeout: 120_000,
      },
      async () => {
        const calls = await unarmedCalls();
        assert.ok(calls.length > 50, `counted ${calls.length} calls`);
        const unpoisoned = new Set<string>();
        const failures: string[] = [];
        for (let at = 1; at <= calls.length; at++) {
          const run = await runWorkload({ errno, at });
          const context = `${errno} at call ${at} (${calls[at - 1].kind})`;
          assert.ok(run.fault !== undefined, `${context}: fired`);
          for (const call of run.unpoisoned) {
            unpoisoned.add(`${call.kind} ${call.path.replace(/.*\//, "")} (call ${at})`);
          }
          await collect(failures, context, () => checkAfterRestart(run, context));
        }
        assert.deepEqual(failures, []);
        assert.deepEqual([...unpoisoned], [], "a failed write or sync left the log writable");
      },
    );
  }

  test("a persistent ENOSPC from every call index on is typed and recovers", {
    timeout: 120_000,
  }, async () => {
    const calls = await unarmedCalls();
    const failures: string[] = [];
    for (let at = 1; at <= calls.length; at++) {
      const context = `persistent ENOSPC from call ${at} (${calls[at - 1].kind})`;
      await collect(failures, context, async () => {
        const run = await runWorkload({ errno: "ENOSPC", at, persistent: true });
        await checkAfterRestart(run, context);
      });
    }
    assert.deepEqual(failures, []);
  });

  test("a short write at every write index poisons the log and recovers", async () => {
    const writes = (await unarmedCalls()).filter((call) => call.kind === "write").length;
    assert.ok(writes > 10);
    for (let at = 1; at <= writes; at++) {
      const run = await runWorkload({ errno: "EIO", at, shortWrite: true });
      assert.equal(run.fault?.fault, "short-write");
      assert.deepEqual(run.unpoisoned, [], `short write ${at}`);
      await checkAfterRestart(run, `short write ${at}`);
    }
  });

  test("a power loss (each mode) the moment an EIO hits any call keeps what was acknowledged", {
    timeout: 120_000,
  }, async () => {
    const calls = await unarmedCalls();
    const random = seededRandom(99);
    const failures: string[] = [];
    let checked = 0;
    for (let at = 1; at <= calls.length; at++) {
      for (const mode of MODES) {
        const seed = Math.floor(random() * 2 ** 31);
        const context = `EIO at call ${at}, power loss ${mode} seed ${seed}`;
        await collect(failures, context, async () => {
          const run = await runWorkload({ errno: "EIO", at, powerLoss: { mode, seed } });
          if (run.lost === undefined) return; // the fault hit open: nothing was acknowledged
          const log = await reopenAndCheck(run.lost.device, run.lost.model, context);
          await log.close();
          checked++;
        });
      }
    }
    assert.deepEqual(failures, []);
    assert.ok(checked > calls.length, `${checked} power losses checked`);
  });
});

describe("fault injection, then restart, then power loss", () => {
  test("what a log restarted after an EIO at any call commits survives a power loss", async () => {
    const calls = await unarmedCalls();
    const failures: string[] = [];
    for (let at = 1; at <= calls.length; at++) {
      const run = await runWorkload({ errno: "EIO", at });
      const violations = await checkRestartThenPowerLoss(run, `EIO at call ${at}`);
      if (violations.length) {
        failures.push(
          `EIO at call ${at} (${calls[at - 1].kind} ${calls[at - 1].path}): ${violations[0]}`,
        );
      }
    }
    assert.deepEqual(failures, []);
  });
});

describe("regressions: bugs the fault matrix found (fixed in 726b222)", () => {
  const small = (device: Device) => ({ ...OPTIONS, device });

  test("a failed directory sync after a truncation poisons the log", async () => {
    const faulty = new FaultyDevice(new MemoryDevice());
    const log = await AppendLog.open(small(faulty));
    while (log.tailAddress < OPTIONS.segmentSizeBytes + 4096) log.enqueue(new Uint8Array(1000));
    await log.commit();
    log.truncateUntil(log.committedUntilAddress);
    faulty.failAt(1, { kinds: ["syncDirectory"] });
    await assert.rejects(log.commit(), { errno: "EIO" }, "removing segment 0 is not durable");
    assert.throws(() => log.enqueue(new Uint8Array(10)), PoisonedError);
    await assert.rejects(log.commit({ cookie: new Uint8Array(1) }), PoisonedError);
    await log.close();
  });

  test("a new log whose first segment was left half-created opens again", async () => {
    // As a kill -9 between creating segment 0 and preallocating it: the file is there, empty.
    const memory = new MemoryDevice();
    const faulty = new FaultyDevice(memory);
    faulty.failAt(2, { kinds: ["allocate"], errno: "ENOSPC" }); // 1st: the checkpoint
    faulty.failAt(2, { kinds: ["remove"] }); // 1st: the stale checkpoint.tmp
    await assert.rejects(AppendLog.open(small(faulty)), IoError);
    assert.equal(memory.exists(`${OPTIONS.dir}/segment-000000000000.hlog`), true);
    const log = await AppendLog.open(small(memory.crash()));
    await log.close();
  });

  test("a log directory whose first open failed before syncing it survives a power loss", async () => {
    const memory = new MemoryDevice();
    const faulty = new FaultyDevice(memory);
    faulty.failAt(1, { kinds: ["syncDirectoryNow"] }); // syncing "/" after creating /data
    await assert.rejects(AppendLog.open(small(faulty)), IoError);
    const restarted = memory.crash();
    const log = await AppendLog.open(small(restarted));
    const address = log.enqueue(new Uint8Array([1, 2, 3]));
    await log.commit();
    const lost = restarted.powerLoss({ mode: "drop" });
    await log.close();
    const reopened = await AppendLog.open(small(lost));
    assert.deepEqual(reopened.read(address), new Uint8Array([1, 2, 3]), "acknowledged, then lost");
    await reopened.close();
  });

  test("entries a restarted log recovered from the page cache are made durable before it commits", async () => {
    const memory = new MemoryDevice();
    const faulty = new FaultyDevice(memory);
    const log = await AppendLog.open(small(faulty));
    log.enqueue(new Uint8Array(100));
    await log.commit();
    // One commit that spans segments 0 and 1; the sync of segment 0 fails (EIO), so its bytes
    // are only in the page cache, as after a kill -9 while that sync ran.
    while (log.tailAddress < OPTIONS.segmentSizeBytes + 4096) log.enqueue(new Uint8Array(1000));
    faulty.failAt(1, { kinds: ["sync"] });
    await assert.rejects(log.commit(), { errno: "EIO" });
    await log.close();
    const restarted = memory.crash();
    const again = await AppendLog.open(small(restarted));
    const recovered = [...again.scan()].length;
    const address = again.enqueue(new Uint8Array([7]));
    await again.commit();
    const lost = restarted.powerLoss({ mode: "drop" });
    await again.close();
    const reopened = await AppendLog.open(small(lost));
    assert.deepEqual(reopened.read(address), new Uint8Array([7]), "acknowledged, then lost");
    assert.equal([...reopened.scan()].length, recovered + 1);
    await reopened.close();
  });
});

describe("FaultyDevice", () => {
  const setup = () => {
    const memory = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
    const faulty = new FaultyDevice(memory);
    faulty.makeDirectory("/d");
    return { memory, faulty };
  };

  test("counts write-path calls in one sequence and logs their kinds", async () => {
    const { faulty } = setup();
    const file = faulty.open("/d/a", { create: true });
    file.allocate(0, 100);
    file.write(new Uint8Array(4), 0);
    file.read(new Uint8Array(4), 0);
    file.truncate(50);
    await file.sync("data");
    file.syncNow("full");
    faulty.rename("/d/a", "/d/b");
    await faulty.syncDirectory("/d");
    faulty.syncDirectoryNow("/d");
    faulty.remove("/d/b");
    faulty.open("/d/c", { create: true }).close();
    faulty.lock("/d").release();
    assert.equal(faulty.calls, 11);
    assert.deepEqual(faulty.callLog.map((call) => call.kind), [
      "create",
      "allocate",
      "write",
      "truncate",
      "sync",
      "syncNow",
      "rename",
      "syncDirectory",
      "syncDirectoryNow",
      "remove",
      "create",
    ]);
    assert.deepEqual(faulty.callLog.map((call) => call.index), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  });

  test("failAt fails the n-th matching call without performing it, once or persistently", async () => {
    const { memory, faulty } = setup();
    faulty.failAt(2, { errno: "ENOSPC", kinds: ["write"] });
    const file = faulty.open("/d/a", { create: true });
    file.write(new Uint8Array([1]), 0);
    assert.throws(() => file.write(new Uint8Array([2]), 1), (error: unknown) => {
      assert.ok(error instanceof IoError);
      assert.equal(error.errno, "ENOSPC");
      assert.equal(error.syscall, "write");
      assert.equal(error.path, "/d/a");
      return true;
    });
    assert.equal(memory.open("/d/a").sizeBytes(), 1, "the failed write stored nothing");
    file.write(new Uint8Array([3]), 1);
    faulty.failAt(1, { errno: "EDQUOT", persistent: true, kinds: ["sync", "syncDirectory"] });
    file.syncNow("data");
    await assert.rejects(file.sync("full"), { errno: "EDQUOT", syscall: "fsync" });
    await assert.rejects(file.sync("data"), { errno: "EDQUOT", syscall: "fdatasync" });
    await assert.rejects(faulty.syncDirectory("/d"), { errno: "EDQUOT" });
    faulty.disarm();
    await file.sync("data");
    assert.deepEqual(faulty.faults.map((call) => call.fault), [
      "ENOSPC",
      "EDQUOT",
      "EDQUOT",
      "EDQUOT",
    ]);
    assert.throws(() => faulty.failAt(0), /positive integer/);
  });

  test("shortWriteAt stores half the bytes, then throws EIO", () => {
    const { memory, faulty } = setup();
    faulty.shortWriteAt(1);
    const file = faulty.open("/d/a", { create: true });
    assert.throws(() => file.write(new Uint8Array(10).fill(7), 0), { errno: "EIO" });
    assert.equal(memory.open("/d/a").sizeBytes(), 5);
  });

  test("liesAboutSync acknowledges syncs that make nothing durable", async () => {
    const { memory, faulty } = setup();
    faulty.syncDirectoryNow("/");
    faulty.liesAboutSync = true;
    const file = faulty.open("/d/a", { create: true });
    file.write(new Uint8Array([1]), 0);
    await file.sync("full");
    file.syncNow("full");
    await faulty.syncDirectory("/d");
    assert.equal(memory.powerLoss({ mode: "drop" }).exists("/d"), true);
    assert.equal(memory.powerLoss({ mode: "drop" }).exists("/d/a"), false);
    assert.equal(memory.stats().unsyncedPages, 1);
  });
});
