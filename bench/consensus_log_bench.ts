/**
 * `ConsensusLog` through the operations of the original FASTER consensus log's table, one row
 * each. There is no floor in this file: hold each figure against the BASELINES.md row named below
 * and against the floors that `append_log_bench.ts` measures in the same `scripts/bench.mjs` run
 * (the machine is shared and noisy, so a figure only means something next to its floor).
 *
 * | workload (100 B values unless noted)                | hold it against (BASELINES.md)         |
 * |-----------------------------------------------------|----------------------------------------|
 * | `accept` of 10 B, 100 B, 1 KiB, 16 KiB              | append, no sync; memcpy of the value   |
 * | `await commit()`, durability `"none"`               | append, no sync                        |
 * | `await commit()`, durability `"data"`               | durable commit per entry; write+sync   |
 * | `read` of an accepted slot, random of 100k          | random read; memcpy of 100 B           |
 * | `readCommitted`, random of 100k                     | random read of a committed entry       |
 * | `accept` + `await commit()` + `readCommitted`, data | durable commit per entry               |
 * | iterate `uncommitted()` over 1,000 accepted entries | scan, per entry                        |
 * | open + first read + close: 1k, 10k, 1M entries      | reopen 1M entries + first read         |
 * | the same, 1M entries, index checkpoint deleted      | rebuilding a 1M-entry index: ~13 ms    |
 * | `accept` + `await commit()`, data, by value size    | durable commit; 16 KiB append          |
 * | `await accept()` with `durableAccepts`, data        | durable commit per entry               |
 *
 * The recovered logs are built once, outside the timing, and closed cleanly; the 1M one is also
 * opened with only its open + first read timed (its close untimed), so the reader sees what the
 * close costs, and copied without its `index` file (deleted again before each open, as every close
 * writes one), so the reader sees what the index checkpoint saves. Benches of sub-microsecond
 * operations run many per measured call (`OPS_PER_CALL`, `acceptsPerCall`, `COMMITS_PER_CALL`);
 * the table divides by it. Whatever a call needs but does not measure (the accepts a commit bench
 * commits, draining a full region) runs in mitata's per-call setup, outside the timing.
 *
 * After mitata's output it prints a markdown table (mean per operation) and writes it with the
 * raw statistics to `bench/results/<runtime>-consensus.json`.
 *
 *   bun bench/consensus_log_bench.ts
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys bench/consensus_log_bench.ts
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { bench, do_not_optimize, group } from "mitata";
import { ConsensusLog, MUTABLE_SIZE_BYTES_DEFAULT } from "../src/consensus_log.ts";
import type { Durability } from "../src/tail.ts";
import { INDEX_FILE_NAME } from "../src/index_checkpoint.ts";
import { regionEntrySize } from "../src/mutable_region.ts";
import {
  makeTempDir,
  meanOf,
  PICKS_COUNT,
  randomPicks,
  removeTempDir,
  runAndReport,
  type RunContext,
  runtime,
  runtimeVersion,
  shared,
  type Stats,
  withSetup,
  writeResults,
} from "./_shared.ts";

/** Bytes of every value unless a bench says otherwise (BASELINES.md measures 100 B values). */
const VALUE_BYTES = 100;
/** The value sizes of the by-size benches. */
const VALUE_SIZES = [10, 100, 1024, 16 * 1024] as const;
/**
 * Operations per measured call of the sub-microsecond benches (reads). mitata times such calls
 * in batches only when its warm-up happens to see fast calls; otherwise it times each call alone
 * and the timer's own cost (and its variance, large in Deno) lands in every sample. 100
 * operations per call keep both cases honest.
 */
const OPS_PER_CALL = 100;
/**
 * Accepts per measured call. Each call must take longer than mitata's 65 µs batching threshold:
 * the setup before a call drains a full region, which a batch (4,096 setups, then 4,096 calls)
 * could not do in time. 1,000 accepts of up to 1 KiB take 0.3–1 ms; 100 of 16 KiB about as much.
 */
const acceptsPerCall = (valueBytes: number): number => valueBytes > 1024 ? 100 : 1_000;
/**
 * `await commit()` per measured call with durability "none". Its setup accepts the slots, so a
 * batch (4,096 setups first) holds 4,096 × 50 × 144 B ≈ 30 MB in the 64 MiB region: it fits.
 */
const COMMITS_PER_CALL = 50;
/** Committed (and, separately, accepted) entries of the log the read benches read. */
const READ_LOG_ENTRIES = 100_000;
/** Accepted entries that `uncommitted()` iterates. */
const SCAN_ENTRIES = 1_000;
/** Entries of the recovered logs. */
const RECOVERY_ENTRIES = [1_000, 10_000, 1_000_000] as const;
/** Slots accepted, then committed with one `commitMany`, while building fixtures. */
const BUILD_BATCH_ENTRIES = 10_000;

const ballot = { round: 1, node: 1 };
const valueOf = (bytes: number) => new Uint8Array(bytes).map((_, i) => i);
const value = valueOf(VALUE_BYTES);

const sizeLabel = (bytes: number) => bytes < 1024 ? `${bytes} B` : `${bytes / 1024} KiB`;
const countLabel = (count: number) =>
  count >= 1e6 ? `${count / 1e6}M` : count >= 1e3 ? `${count / 1e3}k` : `${count}`;

const NAMES = {
  accept: (bytes: number) => `consensus: ${acceptsPerCall(bytes)} × accept ${sizeLabel(bytes)}`,
  acceptShared: `consensus: ${acceptsPerCall(VALUE_BYTES)} × accept 100 B, after share()`,
  acceptAtomics: `floor: 1000 × a shared accept's atomics + memcpy 100 B`,
  commitNone: `consensus: ${COMMITS_PER_CALL} × await commit(), durability "none"`,
  commitData: `consensus: await commit(), durability "data"`,
  readAccepted: `consensus: ${OPS_PER_CALL} × read, accepted slot, random of 100k`,
  readCommitted: `consensus: ${OPS_PER_CALL} × readCommitted, random of 100k`,
  acceptCommitRead: `consensus: accept + await commit() + readCommitted, "data"`,
  scan: `consensus: iterate uncommitted(), ${SCAN_ENTRIES} entries`,
  recovery: (count: number) => `consensus: open ${countLabel(count)} entries + read + close`,
  recoveryNoIndex: "consensus: open 1M entries, no index checkpoint + read + close",
  openOnly: "consensus: open 1M entries + read (close untimed)",
  openOnlyNoIndex: "consensus: open 1M entries, no index checkpoint + read (close untimed)",
  acceptCommitSync: (bytes: number) =>
    `consensus: accept ${sizeLabel(bytes)} + await commit(), "data"`,
  durableAccept: `consensus: await accept() 100 B, durableAccepts, "data"`,
} as const;

function openLog(
  dir: string,
  durability: Durability,
  durableAccepts = false,
): Promise<ConsensusLog> {
  return ConsensusLog.open({ dir, durability, durableAccepts });
}

/**
 * Commits slots `[from, to)`, `BUILD_BATCH_ENTRIES` per sync, accepting each first (100 B) unless
 * `accepted` says they are.
 */
async function commitSlots(
  log: ConsensusLog,
  from: number,
  to: number,
  accepted = false,
): Promise<void> {
  for (let batchStart = from; batchStart < to; batchStart += BUILD_BATCH_ENTRIES) {
    const slots: number[] = [];
    for (let slot = batchStart; slot < Math.min(to, batchStart + BUILD_BATCH_ENTRIES); slot++) {
      if (!accepted) log.accept(slot, ballot, value);
      slots.push(slot);
    }
    await log.commitMany(slots);
  }
}

/** A log with slots `[0, 100k)` committed and `[100k, 200k)` accepted, open. */
const readLog = shared(async () => {
  const dir = makeTempDir();
  const log = await openLog(dir, "data");
  await commitSlots(log, 0, READ_LOG_ENTRIES);
  for (let slot = READ_LOG_ENTRIES; slot < 2 * READ_LOG_ENTRIES; slot++) {
    log.accept(slot, ballot, value);
  }
  // Measures reads of a warm log: fault the mapped pages in first.
  for (let slot = 0; slot < READ_LOG_ENTRIES; slot++) do_not_optimize(log.readCommitted(slot));
  return { log, dir };
}, async ({ log, dir }) => {
  await log.close();
  removeTempDir(dir);
});

/** The directory of a cleanly closed log of `count` committed entries. */
async function buildClosedLog(count: number): Promise<string> {
  const dir = makeTempDir();
  const log = await openLog(dir, "data");
  await commitSlots(log, 0, count);
  await log.close();
  return dir;
}

const recoveryLogs = new Map(
  RECOVERY_ENTRIES.map((count) => [count, shared(() => buildClosedLog(count), removeTempDir)]),
);
const millionLog = recoveryLogs.get(1_000_000)!;

/** A copy of the 1M-entry log; its index checkpoint is deleted before each open. */
const millionLogCopy = shared(async () => {
  const source = await millionLog();
  const dir = makeTempDir();
  fs.cpSync(source, dir, { recursive: true });
  return dir;
}, removeTempDir);

/**
 * Accepts of `valueBytes` with no commit in the loop; `shared`: after `share()`, when the owner
 * fences every accept for the Workers that may attach (alone, it needs no fence).
 */
function acceptBench(valueBytes: number, shared = false) {
  return async function* () {
    const dir = makeTempDir();
    const sized = valueOf(valueBytes);
    const perCall = acceptsPerCall(valueBytes);
    // 90% of the region: one chunk stays free for compaction, and chunk ends go unused.
    const callsPerRegion = Math.floor(
      0.9 * MUTABLE_SIZE_BYTES_DEFAULT / (perCall * regionEntrySize(valueBytes)),
    );
    const log = await openLog(dir, "none");
    if (shared) log.share();
    let drainedUntil = 0;
    let nextSlot = 0;
    // Empties the region: commits the accepted slots (no sync), then drops them and their
    // segments, so the disk does not fill with what a long run accepts.
    const drain = async () => {
      await commitSlots(log, drainedUntil, nextSlot, true);
      await log.truncatePrefix(nextSlot);
      drainedUntil = nextSlot;
    };
    // A long-running log's region has every page faulted in: fill it once, then drain it.
    for (; nextSlot < callsPerRegion * perCall; nextSlot++) log.accept(nextSlot, ballot, sized);
    await drain();
    yield withSetup(async () => {
      if (nextSlot + perCall - drainedUntil > callsPerRegion * perCall) await drain();
      nextSlot += perCall;
      return nextSlot - perCall;
    }, (first: number) => {
      for (let n = 0; n < perCall; n++) log.accept(first + n, ballot, sized);
    });
    await log.close();
    removeTempDir(dir);
  };
}

group("accept (no commit in the loop)", () => {
  for (const valueBytes of VALUE_SIZES) bench(NAMES.accept(valueBytes), acceptBench(valueBytes));
  bench(NAMES.acceptShared, acceptBench(VALUE_BYTES, true));
});

/**
 * The floor of a lock-free accept in shared memory (a Worker's, or the owner's once it shared the
 * log; alone, the owner makes none of these), with no log: the atomics every accept makes
 * (announce the epoch: a load and a sequentially consistent store; read the index generation, the
 * slot word and the promise flag: three loads; install the entry: one compare-and-swap; leave the
 * epoch: one store) and the copy of the value into a shared buffer.
 */
group("floor of an accept: its atomics and the copy", () => {
  bench(NAMES.acceptAtomics, function* () {
    const words = new Int32Array(new SharedArrayBuffer(1 << 20));
    const bytes = new Uint8Array(words.buffer);
    const GLOBAL = 0, MINE = 16, GENERATION = 32, PROMISE = 48, SLOTS = 1024;
    let at = 8192;
    yield () => {
      for (let n = 0; n < 1000; n++) {
        Atomics.store(words, MINE, Atomics.load(words, GLOBAL) + 1);
        const position = SLOTS + (n & 1023) + Atomics.load(words, GENERATION);
        const word = Atomics.load(words, position);
        if (Atomics.load(words, PROMISE) !== 0) throw new Error("unreachable");
        bytes.set(value, at);
        Atomics.compareExchange(words, position, word, at);
        Atomics.store(words, MINE, 0);
        at = at + 144 > bytes.length ? 8192 : at + 144;
      }
    };
  });
});

/** One accepted slot per commit, accepted in the setup; the call awaits `perCall` commits. */
function commitBench(durability: Durability, perCall: number) {
  return async function* () {
    const dir = makeTempDir();
    const log = await openLog(dir, durability);
    let nextSlot = 0;
    yield withSetup(() => {
      const first = nextSlot;
      for (let n = 0; n < perCall; n++) log.accept(nextSlot++, ballot, value);
      return first;
    }, async (first: number) => {
      for (let n = 0; n < perCall; n++) await log.commit(first + n);
    }, { allowBatching: true });
    await log.close();
    removeTempDir(dir);
  };
}

group("commit of an accepted slot", () => {
  bench(NAMES.commitNone, commitBench("none", COMMITS_PER_CALL));
  bench(NAMES.commitData, commitBench("data", 1));
});

group("random read (100k committed and 100k accepted slots)", () => {
  bench(NAMES.readAccepted, async function* () {
    const { log } = await readLog();
    const picks = randomPicks(Array.from({ length: READ_LOG_ENTRIES }, (_, i) => i + 100_000));
    let i = 0;
    yield () => {
      for (let n = 0; n < OPS_PER_CALL; n++) {
        do_not_optimize(log.read(picks[i]));
        i = (i + 1) & (PICKS_COUNT - 1);
      }
    };
  });
  bench(NAMES.readCommitted, async function* () {
    const { log } = await readLog();
    const picks = randomPicks(Array.from({ length: READ_LOG_ENTRIES }, (_, i) => i));
    let i = 0;
    yield () => {
      for (let n = 0; n < OPS_PER_CALL; n++) {
        do_not_optimize(log.readCommitted(picks[i]));
        i = (i + 1) & (PICKS_COUNT - 1);
      }
    };
  });
});

/** `accept` then `await commit()` of a new slot per call, durability "data". */
function acceptCommitBench(valueBytes: number, readBack: boolean) {
  return async function* () {
    const dir = makeTempDir();
    const sized = valueOf(valueBytes);
    const log = await openLog(dir, "data");
    let nextSlot = 0;
    yield async () => {
      const slot = nextSlot++;
      log.accept(slot, ballot, sized);
      await log.commit(slot);
      if (readBack) do_not_optimize(log.readCommitted(slot));
    };
    await log.close();
    removeTempDir(dir);
  };
}

group("accept + commit + read", () => {
  bench(NAMES.acceptCommitRead, acceptCommitBench(VALUE_BYTES, true));
});

group(`scan of ${SCAN_ENTRIES} uncommitted entries`, () => {
  bench(NAMES.scan, async function* () {
    const dir = makeTempDir();
    const log = await openLog(dir, "data");
    for (let slot = 0; slot < SCAN_ENTRIES; slot++) log.accept(slot, ballot, value);
    const count = [...log.uncommitted()].length;
    if (count !== SCAN_ENTRIES) throw new Error(`assertion failed: ${count} uncommitted entries`);
    yield () => {
      let bytes = 0;
      for (const entry of log.uncommitted()) bytes += entry.value.length;
      do_not_optimize(bytes);
    };
    await log.close();
    removeTempDir(dir);
  });
});

group("accept + durable commit, by value size", () => {
  for (const valueBytes of VALUE_SIZES) {
    bench(NAMES.acceptCommitSync(valueBytes), acceptCommitBench(valueBytes, false));
  }
});

group("durable accepts", () => {
  bench(NAMES.durableAccept, async function* () {
    const dir = makeTempDir();
    const log = await openLog(dir, "data", true);
    let nextSlot = 0;
    yield async () => {
      await log.accept(nextSlot++, ballot, value);
    };
    await log.close();
    removeTempDir(dir);
  });
});

/**
 * Opens the log in the fixture's directory and reads its first slot; closes it inside the timing
 * (`timeClose`) or in the next call's setup. `dropIndex` deletes the index checkpoint first.
 */
function reopenBench(
  fixture: () => Promise<string>,
  { dropIndex, timeClose }: { dropIndex: boolean; timeClose: boolean },
) {
  return async function* () {
    const dir = await fixture();
    let open: ConsensusLog | undefined;
    const setup = async () => {
      await open?.close();
      open = undefined;
      if (dropIndex) fs.rmSync(join(dir, INDEX_FILE_NAME), { force: true });
    };
    yield withSetup(setup, async () => {
      const log = await openLog(dir, "data");
      do_not_optimize(log.readCommitted(0));
      if (timeClose) await log.close();
      else open = log;
    }, { allowBatching: !dropIndex && timeClose });
    await setup();
  };
}

group("recovery: open + first read + close of a cleanly closed log", () => {
  for (const count of RECOVERY_ENTRIES) {
    const fixture = recoveryLogs.get(count)!;
    bench(NAMES.recovery(count), reopenBench(fixture, { dropIndex: false, timeClose: true }));
  }
  bench(NAMES.recoveryNoIndex, reopenBench(millionLogCopy, { dropIndex: true, timeClose: true }));
  bench(NAMES.openOnly, reopenBench(millionLog, { dropIndex: false, timeClose: false }));
  bench(
    NAMES.openOnlyNoIndex,
    reopenBench(millionLogCopy, { dropIndex: true, timeClose: false }),
  );
});

await runAndReport(report);

function report(results: Map<string, Stats>, context: RunContext): void {
  type Unit = "ns" | "µs" | "ms";
  const scale: Record<Unit, number> = { ns: 1, "µs": 1e3, ms: 1e6 };
  const row = (workload: string, name: string, per: number, unit: Unit) => {
    const ns = meanOf(results, name) / per;
    return { workload, value: ns / scale[unit], unit, ns, p50Ns: results.get(name)!.p50 / per };
  };
  const rows = [
    ...VALUE_SIZES.map((bytes) =>
      row(`accept ${sizeLabel(bytes)}`, NAMES.accept(bytes), acceptsPerCall(bytes), "ns")
    ),
    row("accept 100 B, after share()", NAMES.acceptShared, acceptsPerCall(VALUE_BYTES), "ns"),
    row("floor: a shared accept's atomics + memcpy 100 B", NAMES.acceptAtomics, 1000, "ns"),
    row(`commit, no sync ("none")`, NAMES.commitNone, COMMITS_PER_CALL, "µs"),
    row(`commit with sync ("data")`, NAMES.commitData, 1, "µs"),
    row("read uncommitted (random of 100k)", NAMES.readAccepted, OPS_PER_CALL, "ns"),
    row("read committed (random of 100k)", NAMES.readCommitted, OPS_PER_CALL, "ns"),
    row(`accept + commit + read ("data")`, NAMES.acceptCommitRead, 1, "µs"),
    row(`scanUncommitted, ${SCAN_ENTRIES} entries (whole scan)`, NAMES.scan, 1, "µs"),
    ...RECOVERY_ENTRIES.map((count) =>
      row(`recovery, ${countLabel(count)} entries`, NAMES.recovery(count), 1, "ms")
    ),
    row("recovery, 1M entries, no index checkpoint", NAMES.recoveryNoIndex, 1, "ms"),
    row("open + first read only, 1M entries", NAMES.openOnly, 1, "ms"),
    row("open + first read only, 1M, no index checkpoint", NAMES.openOnlyNoIndex, 1, "ms"),
    ...VALUE_SIZES.map((bytes) =>
      row(`accept + commit(sync), ${sizeLabel(bytes)}`, NAMES.acceptCommitSync(bytes), 1, "µs")
    ),
    row(`durable accept ("data"), await accept()`, NAMES.durableAccept, 1, "µs"),
  ];
  const figure = (value: number) =>
    value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  const runtimeName = runtime === "bun" ? "Bun" : "Deno";
  console.log(`\n### ConsensusLog — ${runtime} ${runtimeVersion} (mean per operation)\n`);
  console.log(`| workload | ${runtimeName} | unit |\n|---|---:|---|`);
  for (const { workload, value, unit } of rows) {
    console.log(`| ${workload} | ${figure(value)} | ${unit} |`);
  }
  const json = {
    runtime,
    version: runtimeVersion,
    date: new Date().toISOString(),
    unit: "ns",
    context,
    table: rows,
    raw: Object.fromEntries(results),
  };
  writeResults(`${runtime}-consensus.json`, json);
}
