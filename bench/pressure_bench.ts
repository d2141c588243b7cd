/**
 * The log under sustained pressure, for the two targets of issue 7 that are not per-operation
 * timings (so no mitata here; everything is hand-timed with `performance.now()`):
 *
 * 1. **Timer lag under durable commits** (target 8: p99 ≤ 1 ms). A chain of `setTimeout(…, 2)`
 *    runs while a workload commits for `LAG_SECONDS`; each timer records how late it fired:
 *    `lag = max(0, fired − due)`, `due` = when it was armed + 2 ms. Workloads (100 B values,
 *    durability `"data"`): nothing (the idle baseline, before and after the others), `AppendLog`
 *    `enqueue` + `await commit()` with 1 and with `CONCURRENT` loops in flight, `ConsensusLog`
 *    `accept` + `await commit(slot)` with 1 and `CONCURRENT` loops, and a contrast that is not the
 *    log: `writeSync` of 120 B + `native.fdatasync` (the FFI call, synchronous, on the JS thread)
 *    per commit, one event-loop turn (`setImmediate`) between commits — what a log that synced on
 *    the JS thread would do to the timers. The log's syncs run on the runtime's worker pool
 *    (`fs.fdatasync` with a callback, src/fs_device.ts).
 *
 *    Why 2 ms and not 1 ms: Deno 2.9 fires every timer shorter than 2 ms at about 2.1 ms
 *    (measured on an idle loop: `setTimeout(…, 0)`, `(…, 1)` and `(…, 2)` all fire at p50 2.1 ms
 *    after being armed), so a 1 ms chain reads 1.1 ms of "lag" that is only the runtime's timer
 *    granularity. At 2 ms the idle lag is the loop's own in both runtimes (p50 ≈ 0.1 ms), and the
 *    baseline rows show what is left of it.
 *
 * 2. **Memory over 10M entries** (target 9: JS heap flat, RSS bounded). `AppendLog`: 10M
 *    `enqueue`s of 100 B, `await commit()` every `COMMIT_EVERY`, then `truncateUntil` the
 *    committed address; `ConsensusLog`: 10M `accept`s in batches of `COMMIT_EVERY`, each batch
 *    `commitMany` then `truncatePrefix`. Every `SAMPLE_EVERY` entries a forced full GC (Bun:
 *    `Bun.gc(true)`; Deno: `gc()`, which scripts/bench.mjs exposes with `--v8-flags=--expose-gc`
 *    for this file), then `process.memoryUsage()`; RSS is also sampled every `RSS_EVERY` entries
 *    and read from the kernel's peak (`VmHWM` of /proc/self/status, reset through
 *    /proc/self/clear_refs at the start of each run where allowed). The file records the heap at
 *    every sample, the RSS at the start (after GC, before the log is opened), the configured sizes
 *    (staging buffer; for `ConsensusLog` also the mutable region and the slot index) and the most
 *    segment bytes mapped; `scripts/bench_check.mjs` holds the bounds it checks them against.
 *
 *    10M × 120 B is 1.2 GB of records: the run truncates after every commit, so at most a few
 *    64 MiB segments exist at once (the largest on-disk size seen is recorded), and it refuses to
 *    start with less than `FREE_DISK_BYTES_MIN` free in the temp directory.
 *
 * It prints markdown tables and writes them to `bench/results/<runtime>-pressure.json`.
 * `HYBRIDLOG_PRESSURE_ENTRIES` (environment) runs fewer entries for a quick look; bench:check
 * counts only a run of 10M.
 *
 *   npm run bench -- bench/pressure_bench.ts      (Bun, then Deno, as scripts/bench.mjs runs all)
 *   bun bench/pressure_bench.ts
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys \
 *     --v8-flags=--expose-gc bench/pressure_bench.ts
 *
 * @module
 */
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { setImmediate } from "node:timers";
import { native } from "../ffi/mod.ts";
import { AppendLog } from "../src/append_log.ts";
import { ConsensusLog } from "../src/consensus_log.ts";
import { BUFFER_SIZE_BYTES_DEFAULT } from "../src/constants.ts";
import {
  makeTempDir,
  removeTempDir,
  RunStamp,
  runtime,
  runtimeVersion,
  writeResults,
} from "./_shared.ts";

/** Bytes of every value. */
const VALUE_BYTES = 100;
/** What a 100 B entry occupies in an `AppendLog` segment (16 B header + 100 B, aligned to 8). */
const RECORD_BYTES = 120;
/** The timer chain's delay (see the module comment for why not 1 ms). */
const TIMER_MS = 2;
/** How long each timer-lag workload runs, timed. */
const LAG_SECONDS = 3;
/** Untimed run of the same workload before its timed run (JIT, first segment, page cache). */
const WARMUP_SECONDS = 0.5;
/** Commit loops in flight in the concurrent rows. */
const CONCURRENT = 16;
/** Entries of a memory run. */
const MEMORY_ENTRIES = Number(process.env.HYBRIDLOG_PRESSURE_ENTRIES ?? 10_000_000);
/** Entries per commit (and per `commitMany` batch) in the memory runs. */
const COMMIT_EVERY = 10_000;
/** Entries between heap samples (each after a forced GC). */
const SAMPLE_EVERY = 1_000_000;
/** Entries between plain RSS samples. */
const RSS_EVERY = 100_000;
/** Staging buffer of every log (the default, stated so the RSS bound can name it). */
const BUFFER_SIZE_BYTES = BUFFER_SIZE_BYTES_DEFAULT;
/** Mutable region of the consensus logs (the default, stated for the same reason). */
const MUTABLE_SIZE_BYTES = 64 * 1024 * 1024;
/** The memory runs need a few segments at once; refuse to start with less free. */
const FREE_DISK_BYTES_MIN = 1024 * 1024 * 1024;
/** Size of the floor's preallocated file; its writes wrap around inside it. */
const FLOOR_FILE_BYTES = 64 * 1024 * 1024;

const value = new Uint8Array(VALUE_BYTES).map((_, i) => i);
const BALLOT = { round: 1, node: 1 };

// ---- helpers -------------------------------------------------------------------------------

type GlobalWithGc = { Bun?: { gc(force: boolean): void }; gc?: () => void };
const g = globalThis as unknown as GlobalWithGc;
/** A forced full GC, where the runtime offers one. */
const gcNow: { how: string; run(): void } | undefined = g.Bun !== undefined
  ? { how: "Bun.gc(true)", run: () => g.Bun!.gc(true) }
  : typeof g.gc === "function"
  ? { how: "gc() (--expose-gc)", run: () => g.gc!() }
  : undefined;

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const MiB = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
const ms = (value: number) => value.toFixed(3);
const thousands = (value: number) => Math.round(value).toLocaleString("en-US");

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** The kernel's peak RSS of this process (VmHWM), or undefined where it cannot be read. */
function peakRss(): number | undefined {
  try {
    const kb = fs.readFileSync("/proc/self/status", "utf8").match(/^VmHWM:\s+(\d+) kB/m)?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

/** RSS by kind (anonymous, file-backed: mapped segments, shared memory), where readable. */
function rssByKind(): { rssByKind?: Record<string, number> } {
  try {
    const status = fs.readFileSync("/proc/self/status", "utf8");
    const kinds: Record<string, number> = {};
    for (const [, kind, kb] of status.matchAll(/^Rss(Anon|File|Shmem):\s+(\d+) kB/gm)) {
      kinds[kind.toLowerCase()] = Number(kb) * 1024;
    }
    return Object.keys(kinds).length ? { rssByKind: kinds } : {};
  } catch {
    return {};
  }
}

/** Resets the kernel's peak RSS to the current RSS; false where not allowed. */
function resetPeakRss(): boolean {
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

/**
 * The JS heap in bytes. Bun's `heapUsed` includes every ArrayBuffer's backing store (JSC's
 * "extra memory"; measured: a 100 MB ArrayBuffer adds 100 MB to `heapUsed` and to `external`),
 * here the mapped segments and the mutable region; V8's (Deno) does not. So: `heapUsed −
 * external` in Bun, `heapUsed` in Deno; both are recorded.
 */
function jsHeapBytes(usage: { heapUsed: number; external: number }): number {
  return runtime === "bun" ? usage.heapUsed - usage.external : usage.heapUsed;
}

/** Bytes of the files directly in `dir` (the segments, checkpoint, index …). */
function dirBytes(dir: string): number {
  let bytes = 0;
  for (const name of fs.readdirSync(dir)) {
    const stat = fs.statSync(join(dir, name));
    if (stat.isFile()) bytes += stat.size;
  }
  return bytes;
}

// ---- 1. timer lag ----------------------------------------------------------------------------

/**
 * The JS thread's scheduler counters (/proc/thread-self/schedstat): ns on a CPU and ns waiting
 * on a run queue (runnable, but the CPU was given to another thread or process); undefined where
 * not readable.
 */
function schedstat(): [number, number] | undefined {
  try {
    const [onCpu, waiting] = fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ");
    return [Number(onCpu), Number(waiting)];
  } catch {
    return undefined;
  }
}

/**
 * Where the intervals of the late timers (lag > 1 ms) went, from the JS thread's scheduler
 * counters between arming and firing: `onCpuMs` = the thread ran (JS work, system calls that
 * compute), `runQueueMs` = it was runnable but had no CPU (another thread or process had it: the
 * machine, not the log's JS work), `blockedMs` = the rest, asleep (in a blocking system call such
 * as a synchronous fdatasync, or in the event loop's own poll). Bun only: Deno 2.9 refuses to
 * read /proc/<pid>/task/… (or /proc/thread-self) without --allow-all, which the bench does not get.
 */
interface LateTimers {
  count: number;
  lagMs: number;
  intervalMs: number;
  onCpuMs: number;
  runQueueMs: number;
  blockedMs: number;
}

/** Starts the timer chain; the returned function stops it and hands back every lag, in ms. */
function startTimerChain(): () => { lags: number[]; late?: LateTimers } {
  const lags: number[] = [];
  let due = 0;
  let armedAt = 0;
  let armedStat = schedstat();
  const late: LateTimers | undefined = armedStat === undefined ? undefined : {
    count: 0,
    lagMs: 0,
    intervalMs: 0,
    onCpuMs: 0,
    runQueueMs: 0,
    blockedMs: 0,
  };
  let handle: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const arm = () => {
    armedStat = late && schedstat();
    armedAt = performance.now();
    due = armedAt + TIMER_MS;
    handle = setTimeout(fire, TIMER_MS);
  };
  const fire = () => {
    const now = performance.now();
    const lag = Math.max(0, now - due);
    lags.push(lag);
    if (late && lag > 1 && armedStat) {
      const stat = schedstat();
      if (stat) {
        const interval = now - armedAt;
        const onCpu = (stat[0] - armedStat[0]) / 1e6;
        const runQueue = (stat[1] - armedStat[1]) / 1e6;
        late.count++;
        late.lagMs += lag;
        late.intervalMs += interval;
        late.onCpuMs += onCpu;
        late.runQueueMs += runQueue;
        late.blockedMs += Math.max(0, interval - onCpu - runQueue);
      }
    }
    if (!stopped) arm();
  };
  arm();
  return () => {
    stopped = true;
    clearTimeout(handle);
    return { lags, late };
  };
}

type LagKind = "baseline" | "hybridlog" | "floor";

interface LagRow {
  workload: string;
  kind: LagKind;
  log?: "AppendLog" | "ConsensusLog";
  committers: number;
  seconds: number;
  timers: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Timers that fired more than 1 ms late. */
  over1Ms: number;
  commits: number;
  commitsPerSecond: number;
  /** Where the late timers' time went (JS thread's scheduler counters); see `LateTimers`. */
  late?: LateTimers;
  /** Group commits (`stats().commits`) and syncs the log issued during the timed run. */
  groupCommits?: number;
  syncs?: number;
  checkpoints?: number;
}

/**
 * A workload for the timer chain: `run(stop)` commits until `stop()` says so and resolves with
 * the commits it made; `stats()` (logs only) gives counters before and after.
 */
interface LagWorkload {
  workload: string;
  kind: LagKind;
  log?: "AppendLog" | "ConsensusLog";
  committers: number;
  open(): Promise<{
    run(stop: () => boolean): Promise<number>;
    stats?(): { commits: number; syncs: number; checkpoints: number };
    close(): Promise<void>;
  }>;
}

/** Runs `committers` loops of `once()` until `stop()`; resolves with the loops' total. */
async function loops(committers: number, stop: () => boolean, once: () => Promise<unknown>) {
  let count = 0;
  await Promise.all(
    Array.from({ length: committers }, async () => {
      while (!stop()) {
        await once();
        count++;
      }
    }),
  );
  return count;
}

const baseline = (when: string): LagWorkload => ({
  workload: `no commits (idle baseline, ${when})`,
  kind: "baseline",
  committers: 0,
  open: () =>
    Promise.resolve({
      async run(stop: () => boolean) {
        while (!stop()) await sleep(50);
        return 0;
      },
      close: () => Promise.resolve(),
    }),
});

const appendLogLag = (committers: number): LagWorkload => ({
  workload: `AppendLog: enqueue 100 B + await commit(), ${committers} in flight`,
  kind: "hybridlog",
  log: "AppendLog",
  committers,
  async open() {
    const dir = makeTempDir();
    const log = await AppendLog.open({
      dir,
      durability: "data",
      bufferSizeBytes: BUFFER_SIZE_BYTES,
    });
    return {
      run: (stop: () => boolean) =>
        loops(committers, stop, () => {
          log.enqueue(value);
          return log.commit();
        }),
      stats: () => log.stats(),
      async close() {
        await log.close();
        removeTempDir(dir);
      },
    };
  },
});

const consensusLogLag = (committers: number): LagWorkload => ({
  workload: `ConsensusLog: accept 100 B + await commit(slot), ${committers} in flight`,
  kind: "hybridlog",
  log: "ConsensusLog",
  committers,
  async open() {
    const dir = makeTempDir();
    const log = await ConsensusLog.open({
      dir,
      durability: "data",
      bufferSizeBytes: BUFFER_SIZE_BYTES,
      mutableSizeBytes: MUTABLE_SIZE_BYTES,
    });
    let slot = 0;
    return {
      run: (stop: () => boolean) =>
        loops(committers, stop, () => {
          const s = slot++;
          log.accept(s, BALLOT, value);
          return log.commit(s);
        }),
      stats: () => log.stats(),
      async close() {
        await log.close();
        removeTempDir(dir);
      },
    };
  },
});

const floorLag: LagWorkload = {
  workload: "floor: writeSync 120 B + native.fdatasync on the JS thread, 1 turn between",
  kind: "floor",
  committers: 1,
  open() {
    const dir = makeTempDir();
    const fd = fs.openSync(join(dir, "floor"), "w+", 0o600);
    native.allocate(fd, 0, FLOOR_FILE_BYTES);
    native.fdatasync(fd);
    const bytes = new Uint8Array(RECORD_BYTES).fill(7);
    let position = 0;
    return Promise.resolve({
      run: (stop: () => boolean) =>
        loops(1, stop, () => {
          fs.writeSync(fd, bytes, 0, bytes.length, position);
          native.fdatasync(fd);
          position = (position + bytes.length) % (FLOOR_FILE_BYTES - bytes.length);
          return turn();
        }),
      close() {
        fs.closeSync(fd);
        removeTempDir(dir);
        return Promise.resolve();
      },
    });
  },
};

async function lagRow(w: LagWorkload): Promise<LagRow> {
  const subject = await w.open();
  try {
    const warmupEnd = performance.now() + WARMUP_SECONDS * 1000;
    await subject.run(() => performance.now() >= warmupEnd);
    await sleep(50);
    const before = subject.stats?.();
    const stopChain = startTimerChain();
    const started = performance.now();
    const end = started + LAG_SECONDS * 1000;
    const commits = await subject.run(() => performance.now() >= end);
    const seconds = (performance.now() - started) / 1000;
    const chain = stopChain();
    const lags = chain.lags.sort((a, b) => a - b);
    const after = subject.stats?.();
    return {
      workload: w.workload,
      kind: w.kind,
      ...(w.log ? { log: w.log } : {}),
      committers: w.committers,
      seconds,
      timers: lags.length,
      p50Ms: percentile(lags, 0.5),
      p99Ms: percentile(lags, 0.99),
      maxMs: lags[lags.length - 1],
      over1Ms: lags.filter((lag) => lag > 1).length,
      commits,
      commitsPerSecond: commits / seconds,
      ...(chain.late ? { late: chain.late } : {}),
      ...(before && after
        ? {
          groupCommits: after.commits - before.commits,
          syncs: after.syncs - before.syncs,
          checkpoints: after.checkpoints - before.checkpoints,
        }
        : {}),
    };
  } finally {
    await subject.close();
  }
}

// ---- 2. memory over 10M entries --------------------------------------------------------------

interface MemorySample {
  entries: number;
  /** The JS heap: `heapUsed`, less `external` in Bun (see {@linkcode jsHeapBytes}). */
  jsHeapBytes: number;
  heapUsedBytes: number;
  rssBytes: number;
  externalBytes: number;
  arrayBuffersBytes?: number;
  mappedBytes: number;
  diskBytes: number;
  /** RSS by kind (/proc/self/status: RssAnon, RssFile, RssShmem), where readable. */
  rssByKind?: Record<string, number>;
}

interface MemoryRow {
  log: "AppendLog" | "ConsensusLog";
  workload: string;
  entries: number;
  seconds: number;
  entriesPerSecond: number;
  gcForced: boolean;
  /** RSS and JS heap after GC, before the log is opened. */
  rssStartBytes: number;
  heapStartBytes: number;
  /** The sizes the log was configured with, by name (bytes); `configuredBytes` is their sum. */
  configured: Record<string, number>;
  configuredBytes: number;
  mappedBytesMax: number;
  diskBytesMax: number;
  /** Largest RSS: the sampled one and the kernel's peak over the run, whichever is larger. */
  rssMaxBytes: number;
  rssMaxSampledBytes: number;
  rssPeakKernelBytes?: number;
  heapAt1MBytes?: number;
  heapAtEndBytes: number;
  /** (JS heap at the last sample − JS heap at 1M) ÷ the entries between them. */
  heapGrowthBytesPerEntry?: number;
  /** The same for `external` (ArrayBuffers outside the JS heap: staging, region, mappings). */
  externalGrowthBytesPerEntry?: number;
  samples: MemorySample[];
}

/** Runs a memory workload: `step(done)` appends and commits up to `done` entries in total. */
async function memoryRow(
  log: "AppendLog" | "ConsensusLog",
  workload: string,
  open: (dir: string) => Promise<{
    step(until: number): Promise<void>;
    mappedBytes(): number;
    configured(): Record<string, number>;
    close(): Promise<void>;
  }>,
): Promise<MemoryRow> {
  const dir = makeTempDir();
  gcNow?.run();
  const start = process.memoryUsage();
  const startJsHeap = jsHeapBytes(start);
  const kernelPeak = resetPeakRss();
  const subject = await open(dir);
  const samples: MemorySample[] = [];
  let rssMaxSampled = start.rss;
  let mappedBytesMax = 0;
  let diskBytesMax = 0;
  let configured: Record<string, number> = {};
  const sample = (entries: number) => {
    gcNow?.run();
    const usage = process.memoryUsage();
    const mappedBytes = subject.mappedBytes();
    const diskBytes = dirBytes(dir);
    diskBytesMax = Math.max(diskBytesMax, diskBytes);
    rssMaxSampled = Math.max(rssMaxSampled, usage.rss);
    samples.push({
      entries,
      jsHeapBytes: jsHeapBytes(usage),
      heapUsedBytes: usage.heapUsed,
      rssBytes: usage.rss,
      externalBytes: usage.external,
      ...(typeof usage.arrayBuffers === "number" ? { arrayBuffersBytes: usage.arrayBuffers } : {}),
      mappedBytes,
      diskBytes,
      ...rssByKind(),
    });
    const now = subject.configured();
    for (const [key, bytes] of Object.entries(now)) {
      configured[key] = Math.max(configured[key] ?? 0, bytes);
    }
  };
  const started = performance.now();
  try {
    configured = subject.configured();
    sample(0);
    for (let done = 0; done < MEMORY_ENTRIES;) {
      done = Math.min(MEMORY_ENTRIES, done + RSS_EVERY);
      await subject.step(done);
      rssMaxSampled = Math.max(rssMaxSampled, process.memoryUsage.rss());
      mappedBytesMax = Math.max(mappedBytesMax, subject.mappedBytes());
      if (done % SAMPLE_EVERY === 0 || done === MEMORY_ENTRIES) sample(done);
    }
  } finally {
    await subject.close();
    removeTempDir(dir);
  }
  const seconds = (performance.now() - started) / 1000;
  const peak = kernelPeak ? peakRss() : undefined;
  const at1M = samples.find((s) => s.entries === SAMPLE_EVERY);
  const last = samples[samples.length - 1];
  for (const s of samples) mappedBytesMax = Math.max(mappedBytesMax, s.mappedBytes);
  return {
    log,
    workload,
    entries: MEMORY_ENTRIES,
    seconds,
    entriesPerSecond: MEMORY_ENTRIES / seconds,
    gcForced: gcNow !== undefined,
    rssStartBytes: start.rss,
    heapStartBytes: startJsHeap,
    configured,
    configuredBytes: Object.values(configured).reduce((a, b) => a + b, 0),
    mappedBytesMax,
    diskBytesMax,
    rssMaxBytes: Math.max(rssMaxSampled, peak ?? 0),
    rssMaxSampledBytes: rssMaxSampled,
    ...(peak === undefined ? {} : { rssPeakKernelBytes: peak }),
    ...(at1M === undefined ? {} : { heapAt1MBytes: at1M.jsHeapBytes }),
    heapAtEndBytes: last.jsHeapBytes,
    ...(at1M === undefined || last.entries === at1M.entries ? {} : {
      heapGrowthBytesPerEntry: (last.jsHeapBytes - at1M.jsHeapBytes) /
        (last.entries - at1M.entries),
      externalGrowthBytesPerEntry: (last.externalBytes - at1M.externalBytes) /
        (last.entries - at1M.entries),
    }),
    samples,
  };
}

const appendLogMemory = () =>
  memoryRow(
    "AppendLog",
    `AppendLog: enqueue 100 B, await commit() + truncateUntil every ${thousands(COMMIT_EVERY)}`,
    async (dir) => {
      const log = await AppendLog.open({
        dir,
        durability: "data",
        bufferSizeBytes: BUFFER_SIZE_BYTES,
      });
      let appended = 0;
      return {
        async step(until: number) {
          while (appended < until) {
            const batchEnd = Math.min(until, appended + COMMIT_EVERY);
            for (; appended < batchEnd; appended++) log.enqueue(value);
            await log.commit();
            log.truncateUntil(log.committedUntilAddress);
          }
        },
        mappedBytes: () => log.stats().mappedBytes,
        configured: () => ({ bufferSizeBytes: BUFFER_SIZE_BYTES }),
        close: () => log.close(),
      };
    },
  );

const consensusLogMemory = () =>
  memoryRow(
    "ConsensusLog",
    `ConsensusLog: accept 100 B, commitMany + truncatePrefix every ${thousands(COMMIT_EVERY)}`,
    async (dir) => {
      const log = await ConsensusLog.open({
        dir,
        durability: "data",
        bufferSizeBytes: BUFFER_SIZE_BYTES,
        mutableSizeBytes: MUTABLE_SIZE_BYTES,
      });
      const slots: number[] = new Array(COMMIT_EVERY);
      let accepted = 0;
      return {
        async step(until: number) {
          while (accepted < until) {
            const batchEnd = Math.min(until, accepted + COMMIT_EVERY);
            slots.length = batchEnd - accepted;
            for (let i = 0; accepted < batchEnd; accepted++, i++) {
              log.accept(accepted, BALLOT, value);
              slots[i] = accepted;
            }
            await log.commitMany(slots);
            await log.truncatePrefix(accepted - 1);
          }
        },
        mappedBytes: () => log.mappedBytes,
        configured: () => {
          const stats = log.stats();
          return {
            bufferSizeBytes: BUFFER_SIZE_BYTES,
            regionCapacityBytes: stats.regionCapacityBytes,
            indexBytes: stats.indexBytes,
          };
        },
        close: () => log.close(),
      };
    },
  );

// ---- run and report --------------------------------------------------------------------------

const stamp = new RunStamp();
const { cores, cpu, loadAtStart } = stamp;
console.log(`The log under pressure — ${runtime} ${runtimeVersion}, ${cores} cores (${cpu})`);
console.log(`Load average (1 min) at the start: ${loadAtStart.toFixed(2)}`);

let freeDiskBytes: number | undefined;
try {
  const stat = fs.statfsSync(tmpdir());
  freeDiskBytes = stat.bavail * stat.bsize;
} catch {
  freeDiskBytes = undefined; // statfs not offered: the runs still truncate as they go
}
if (freeDiskBytes !== undefined && freeDiskBytes < FREE_DISK_BYTES_MIN) {
  throw new Error(
    `pressure bench: ${MiB(freeDiskBytes)} free in ${tmpdir()}, it needs ${
      MiB(FREE_DISK_BYTES_MIN)
    }`,
  );
}

const lagRows: LagRow[] = [];
for (
  const w of [
    baseline("before"),
    appendLogLag(1),
    appendLogLag(CONCURRENT),
    consensusLogLag(1),
    consensusLogLag(CONCURRENT),
    floorLag,
    baseline("after"),
  ]
) {
  const row = await lagRow(w);
  lagRows.push(row);
  console.log(
    `  ${row.workload}: p99 ${ms(row.p99Ms)} ms, ${thousands(row.commitsPerSecond)} commits/s`,
  );
}

const memoryRows: MemoryRow[] = [];
for (const run of [appendLogMemory, consensusLogMemory]) {
  const row = await run();
  memoryRows.push(row);
  console.log(`  ${row.workload}: ${row.seconds.toFixed(1)} s`);
}
stamp.end();

const runtimeName = runtime === "bun" ? "Bun" : "Deno";
/** Late timers' intervals split by where the JS thread was (see `LateTimers`). */
const lateText = (late?: LateTimers) =>
  late === undefined || late.count === 0
    ? "—"
    : `${thousands(late.intervalMs)}: ${thousands(late.onCpuMs)} / ${
      thousands(late.runQueueMs)
    } / ${thousands(late.blockedMs)}`;
console.log(
  `\n### Timer lag under durable commits — ${runtimeName} ${runtimeVersion}, ${cores} cores\n`,
);
console.log(
  `A setTimeout(…, ${TIMER_MS}) chain for ${LAG_SECONDS} s per row; lag = fired − due, in ms ` +
    `(negative clamped to 0). 100 B values, durability "data".\n`,
);
console.log(
  "| workload | timers | lag p50 | lag p99 | lag max | > 1 ms | commits/s | group commits | syncs " +
    "| late timers: interval ms on CPU / run queue / asleep |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
);
for (const row of lagRows) {
  console.log(
    `| ${row.workload} | ${row.timers} | ${ms(row.p50Ms)} | ${ms(row.p99Ms)} | ${
      ms(row.maxMs)
    } | ${row.over1Ms} | ${row.kind === "baseline" ? "—" : thousands(row.commitsPerSecond)} | ${
      row.groupCommits === undefined ? "—" : thousands(row.groupCommits)
    } | ${row.syncs === undefined ? "—" : thousands(row.syncs)} | ${lateText(row.late)} |`,
  );
}

console.log(
  `\n### Memory over ${thousands(MEMORY_ENTRIES)} entries — ${runtimeName} ${runtimeVersion}\n`,
);
console.log(
  `Heap after a forced GC (${gcNow?.how ?? "NOT FORCED: no GC exposed"}) every ` +
    `${thousands(SAMPLE_EVERY)} entries; RSS also every ${thousands(RSS_EVERY)} and the kernel's ` +
    `peak (VmHWM). Segments are truncated after every commit.\n`,
);
console.log(
  "| workload | s | heap at 1M | heap at end | heap growth, B/entry | RSS at start | RSS max " +
    "| configured | mapped max | disk max |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
);
for (const row of memoryRows) {
  console.log(
    `| ${row.workload} | ${row.seconds.toFixed(1)} | ${
      row.heapAt1MBytes === undefined ? "—" : MiB(row.heapAt1MBytes)
    } | ${MiB(row.heapAtEndBytes)} | ${row.heapGrowthBytesPerEntry?.toFixed(4) ?? "—"} | ${
      MiB(row.rssStartBytes)
    } | ${MiB(row.rssMaxBytes)} | ${MiB(row.configuredBytes)} | ${MiB(row.mappedBytesMax)} | ${
      MiB(row.diskBytesMax)
    } |`,
  );
}
console.log("\nJS heap (and RSS) at each sample, after GC:\n");
console.log(`| entries | ${memoryRows.map((row) => row.log).join(" | ")} |`);
console.log(`|---:|${memoryRows.map(() => "---:").join("|")}|`);
for (let i = 0; i < memoryRows[0].samples.length; i++) {
  console.log(
    `| ${thousands(memoryRows[0].samples[i].entries)} | ${
      memoryRows.map((row) => {
        const s = row.samples[i];
        return s ? `${MiB(s.jsHeapBytes)} (RSS ${MiB(s.rssBytes)})` : "—";
      }).join(" | ")
    } |`,
  );
}
stamp.printEnd();

writeResults(`${runtime}-pressure.json`, {
  ...stamp.header(),
  valueBytes: VALUE_BYTES,
  freeDiskBytesAtStart: freeDiskBytes,
  timerLag: {
    timerMs: TIMER_MS,
    seconds: LAG_SECONDS,
    durability: "data",
    concurrent: CONCURRENT,
    rows: lagRows,
  },
  memory: {
    entries: MEMORY_ENTRIES,
    commitEvery: COMMIT_EVERY,
    sampleEvery: SAMPLE_EVERY,
    gc: gcNow?.how ?? null,
    heap: runtime === "bun" ? "heapUsed - external" : "heapUsed",
    rows: memoryRows,
  },
});
