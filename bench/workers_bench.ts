/**
 * `ConsensusLog` shared with Workers (`log.share()` → `ConsensusLog.attach(handle)`): throughput
 * of accepts, reads and durable commits with 1, 2, 4 (and, for commits, 8) Workers at once,
 * against the owner thread alone. Throughput across threads is hand-timed (`performance.now()`),
 * not mitata: every timed phase starts when the owner raises a shared `GO` word (the Workers,
 * prepared and armed, block on it with `Atomics.wait`) and ends when the last Worker's "done"
 * message arrives (so a message's latency, tens of µs, is inside the timing).
 *
 * THIS MACHINE HAS 2 CORES. Every figure is a measurement on it, not a projection: with more
 * threads than cores, threads share cores, and the owner thread (which carries out every commit)
 * competes with the Workers for them. Read the scaling columns as measured, never as linear.
 * The machine is also shared and noisy: the output gives the load average before and after, and
 * the accept table the spread of its rounds; compare rows of one run, not figures across runs.
 *
 * 1. Accepts of 100 B values, durability "none": the owner alone (0 Workers), then 1, 2, 4
 *    Workers accepting disjoint, dense slot ranges at once; every thread does
 *    `ACCEPTS_PER_THREAD` timed accepts. The 64 MiB region holds about 440k entries of 100 B, so
 *    the accepts run in rounds of `ROUND_ACCEPTS` accepts of all threads together (200k × 144 B =
 *    29 MB; with 4 threads, 50k each), every round timed from `GO` to the last "done": between
 *    rounds, untimed, the owner commits the round's slots and truncates them, which empties the
 *    region. One untimed warm-up round per configuration; the region's pages are faulted in
 *    beforehand.
 * 2. Random reads of 100k committed and of 100k accepted slots (`readCommitted`, `read`), by the
 *    owner alone, then 1, 2, 4 Workers at once, `READS_PER_THREAD` each, after an untimed pass
 *    over every slot (maps the segments into the thread, warms the JIT).
 * 3. Accept + `await commit()` with durability "data" (fdatasync): `COMMIT_LANES` loops in flight
 *    per committing thread, for `COMMIT_SECONDS` (then each loop finishes the commit it awaits):
 *    the owner alone with 8, 64 and 256 loops, then 1, 2, 4, 8 Workers with 8 loops each and
 *    4 Workers with 64 each (256 committers, issue 7's target). Commits
 *    of Workers are carried out by the owner's group commit; the table shows the group commits
 *    (`stats().commits` delta) and syncs that served them.
 *
 * Before and after, a calibration times a pure arithmetic loop in 1, then 2 Workers: the speedup
 * 2 threads got without any shared memory bounds what the log's rows can show in that run.
 *
 * It prints markdown tables and writes them to `bench/results/<runtime>-workers.json`.
 *
 *   npm run bench -- bench/workers_bench.ts      (Bun, then Deno, as scripts/bench.mjs runs all)
 *   bun bench/workers_bench.ts
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys bench/workers_bench.ts
 *
 * @module
 */
import { ConsensusLog, MUTABLE_SIZE_BYTES_DEFAULT } from "../src/consensus_log.ts";
import { regionEntrySize } from "../src/mutable_region.ts";
import {
  makeTempDir,
  removeTempDir,
  RunStamp,
  runtime,
  runtimeVersion,
  writeResults,
} from "./_shared.ts";
import {
  acceptRange,
  BALLOT,
  commitLanes,
  type CommitResult,
  GO,
  rangePicks,
  readAll,
  readPicks,
  SIGNAL_WORDS,
  STOP,
  VALUE,
  VALUE_BYTES,
} from "./_workers_bench_work.ts";

/** Accepts of all threads together per round: 29 MB of the 64 MiB region. */
const ROUND_ACCEPTS = 200_000;
/** Timed accepts per thread (in `threads × ACCEPTS_PER_THREAD / ROUND_ACCEPTS` rounds). */
const ACCEPTS_PER_THREAD = 400_000;
/** Accepting threads: 0 = the owner alone. */
const ACCEPT_WORKERS = [0, 1, 2, 4] as const;
/** Committed, and separately accepted, slots of the read log. */
const READ_LOG_ENTRIES = 100_000;
/** Timed random reads per reading thread. */
const READS_PER_THREAD = 300_000;
/** Reading threads: 0 = the owner alone. */
const READ_WORKERS = [0, 1, 2, 4] as const;
/** Accept + commit loops in flight per committing thread. */
const COMMIT_LANES = 8;
/** How long each durable-commit configuration runs. */
const COMMIT_SECONDS = 2;
/** Untimed accept + commit per thread before a durable-commit configuration. */
const COMMIT_WARMUP = 100;
/** Committing configurations: Workers (0 = the owner alone) × loops in flight per thread. */
const COMMIT_CONFIGS = [
  { workers: 0, lanes: COMMIT_LANES },
  { workers: 0, lanes: 8 * COMMIT_LANES },
  { workers: 0, lanes: 32 * COMMIT_LANES }, // 256 concurrent committers (issue 7's target)
  { workers: 1, lanes: COMMIT_LANES },
  { workers: 2, lanes: COMMIT_LANES },
  { workers: 4, lanes: COMMIT_LANES },
  { workers: 4, lanes: 8 * COMMIT_LANES }, // 256 concurrent committers over 4 Workers
  { workers: 8, lanes: COMMIT_LANES },
  // The 256 again on a log with `zeroFillSegments` (segments' blocks written before use).
  { workers: 0, lanes: 32 * COMMIT_LANES, zeroFill: true },
] as const;
/** Slots committed per `commitMany` when the owner drains or builds a log. */
const BATCH_ENTRIES = 10_000;

const WORKER_URL = new URL("./_workers_bench_worker.ts", import.meta.url).href;
const WORKERS_MAX = Math.max(...COMMIT_CONFIGS.map(({ workers }) => workers));

/** The shared words Workers block on: `GO` starts a phase, `STOP` ends a timed-by-duration one. */
const signal = new Int32Array(new SharedArrayBuffer(SIGNAL_WORDS * 4));
let lastPhase = 0;

/** Raises `word` to `phase` and wakes every Worker waiting on it. */
function raise(word: number, phase: number): void {
  Atomics.store(signal, word, phase);
  Atomics.notify(signal, word);
}

const sleep = (ms: number) => new Promise((wake) => setTimeout(wake, ms));

/** A Worker running `_workers_bench_worker.ts`, called like a function. */
class BenchWorker {
  #worker = new Worker(WORKER_URL, { type: "module" });
  #next = 0;
  #pending = new Map<
    number,
    { armed(): void; resolve(value: unknown): void; reject(error: unknown): void }
  >();
  #ready: Promise<void>;

  constructor() {
    let ready!: () => void;
    this.#ready = new Promise((resolve) => (ready = resolve));
    this.#worker.onmessage = (event: MessageEvent) => {
      const data = event.data;
      if (data.ready) return ready();
      const pending = this.#pending.get(data.id)!;
      if (data.armed) return pending.armed();
      this.#pending.delete(data.id);
      if (data.ok) pending.resolve(data.result);
      else pending.reject(new Error(`Worker failed: ${data.message}`));
    };
    this.#worker.onerror = (event) => {
      const error = new Error(`Worker error: ${(event as ErrorEvent).message ?? event}`);
      for (const pending of this.#pending.values()) pending.reject(error);
    };
  }

  /** Runs `op`; `armed` resolves when a timed op waits for `GO` (or fails with it). */
  // deno-lint-ignore no-explicit-any
  run(
    op: string,
    args: Record<string, unknown> = {},
  ): { armed: Promise<void>; done: Promise<any> } {
    let armed!: () => void;
    let failArmed!: (error: unknown) => void;
    const armedPromise = new Promise<void>((resolve, reject) => {
      armed = resolve;
      failArmed = reject;
    });
    const done = new Promise((resolve, reject) => {
      this.#ready.then(() => {
        const id = this.#next++;
        this.#pending.set(id, {
          armed,
          resolve,
          reject: (error) => {
            failArmed(error);
            reject(error);
          },
        });
        this.#worker.postMessage({ id, op, args });
      });
    });
    return { armed: armedPromise, done };
  }

  // deno-lint-ignore no-explicit-any
  call(op: string, args: Record<string, unknown> = {}): Promise<any> {
    return this.run(op, args).done;
  }

  terminate(): void {
    this.#worker.terminate();
  }
}

/**
 * Starts `op` in each of `workers` with the args `argsOf(index, phase)` gives, waits until all are
 * armed, raises `GO` and times until all are done (`stopAfterMs`: raises `STOP` that long after
 * `GO`). Returns the elapsed ms and each Worker's result.
 */
async function timedInWorkers<T>(
  workers: BenchWorker[],
  op: string,
  argsOf: (index: number, phase: number) => Record<string, unknown>,
  stopAfterMs?: number,
  beforeGo?: () => void,
): Promise<{ ms: number; results: T[] }> {
  const phase = ++lastPhase;
  const runs = workers.map((worker, i) => worker.run(op, argsOf(i, phase)));
  await Promise.all(runs.map(({ armed }) => armed));
  beforeGo?.();
  const start = performance.now();
  raise(GO, phase);
  if (stopAfterMs !== undefined) {
    await sleep(stopAfterMs);
    raise(STOP, phase);
  }
  const results: T[] = await Promise.all(runs.map(({ done }) => done));
  return { ms: performance.now() - start, results };
}

/** Commits slots `[from, to)` (accepted), `BATCH_ENTRIES` per `commitMany`. */
async function commitRange(log: ConsensusLog, from: number, to: number): Promise<void> {
  for (let batch = from; batch < to; batch += BATCH_ENTRIES) {
    const slots: number[] = [];
    for (let slot = batch; slot < Math.min(to, batch + BATCH_ENTRIES); slot++) slots.push(slot);
    await log.commitMany(slots);
  }
}

const rate = (count: number, ms: number) => count / (ms / 1000);
const label = (workers: number) =>
  workers === 0 ? "owner alone (0 Workers)" : `${workers} Worker${workers > 1 ? "s" : ""}`;

// ---- calibration -----------------------------------------------------------------------------

/** Iterations of `spin` per Worker: about 0.1–0.3 s on this machine. */
const SPIN_ITERATIONS = 200_000_000;

/**
 * Integer arithmetic in 1, then 2 Workers at once (no shared memory, no allocation): how much
 * parallelism the machine gave this run at best. Returns 2 Workers' rate over 1 Worker's.
 */
async function calibrate(workers: BenchWorker[]): Promise<number> {
  const rates: number[] = [];
  for (const count of [1, 2]) {
    const { ms } = await timedInWorkers<number>(
      workers.slice(0, count),
      "spin",
      (_, phase) => ({ phase, iterations: SPIN_ITERATIONS }),
    );
    rates.push(rate(count * SPIN_ITERATIONS, ms));
  }
  return rates[1] / rates[0];
}

// ---- 1. accepts ------------------------------------------------------------------------------

interface AcceptRow {
  workers: number;
  threads: number;
  accepts: number;
  ms: number;
  acceptsPerSecond: number;
  perThreadPerSecond: number;
  nsPerAcceptPerThread: number;
  roundRates: number[];
}

async function acceptBench(workers: BenchWorker[]): Promise<AcceptRow[]> {
  const dir = makeTempDir();
  const log = await ConsensusLog.open({ dir, durability: "none" });
  const rows: AcceptRow[] = [];
  try {
    let nextSlot = 0;
    let drainedUntil = 0;
    const drain = async () => {
      await commitRange(log, drainedUntil, nextSlot);
      await log.truncatePrefix(nextSlot);
      drainedUntil = nextSlot;
    };
    // A long-running log's region has every page faulted in: fill it once, then drain it.
    const fill = Math.floor(0.9 * MUTABLE_SIZE_BYTES_DEFAULT / regionEntrySize(VALUE_BYTES));
    nextSlot += acceptRange(log, nextSlot, fill);
    await drain();
    const handle = log.share();
    const attached = workers.slice(0, Math.max(...ACCEPT_WORKERS));
    await Promise.all(attached.map((worker) => worker.call("attach", { handle })));
    for (const count of ACCEPT_WORKERS) {
      const threads = Math.max(1, count);
      const perRound = ROUND_ACCEPTS / threads;
      const rounds = ACCEPTS_PER_THREAD / perRound;
      const roundMs: number[] = [];
      for (let round = 0; round <= rounds; round++) {
        const first = nextSlot;
        let ms: number;
        if (count === 0) {
          const start = performance.now();
          acceptRange(log, first, perRound);
          ms = performance.now() - start;
        } else {
          ({ ms } = await timedInWorkers<number>(
            attached.slice(0, count),
            "accept",
            (i, phase) => ({
              phase,
              first: first + i * perRound,
              count: perRound,
            }),
          ));
        }
        nextSlot += ROUND_ACCEPTS;
        // Untimed; `commitMany` also checks that every slot of the round was accepted.
        await drain();
        if (round > 0) roundMs.push(ms);
      }
      const accepts = threads * ACCEPTS_PER_THREAD;
      const ms = roundMs.reduce((a, b) => a + b, 0);
      rows.push({
        workers: count,
        threads,
        accepts,
        ms,
        acceptsPerSecond: rate(accepts, ms),
        perThreadPerSecond: rate(accepts, ms) / threads,
        nsPerAcceptPerThread: (ms * 1e6) / (accepts / threads),
        roundRates: roundMs.map((roundTime) => rate(ROUND_ACCEPTS, roundTime)),
      });
    }
    await Promise.all(attached.map((worker) => worker.call("detach")));
  } finally {
    await log.close();
    removeTempDir(dir);
  }
  return rows;
}

// ---- 2. reads --------------------------------------------------------------------------------

interface ReadRow {
  workers: number;
  threads: number;
  committed: boolean;
  reads: number;
  ms: number;
  readsPerSecond: number;
  perThreadPerSecond: number;
}

async function readBench(workers: BenchWorker[]): Promise<ReadRow[]> {
  const dir = makeTempDir();
  const log = await ConsensusLog.open({ dir, durability: "data" });
  const rows: ReadRow[] = [];
  try {
    acceptRange(log, 0, 2 * READ_LOG_ENTRIES);
    await commitRange(log, 0, READ_LOG_ENTRIES);
    const handle = log.share();
    const attached = workers.slice(0, Math.max(...READ_WORKERS));
    await Promise.all(attached.map((worker) => worker.call("attach", { handle })));
    for (const committed of [true, false]) {
      const from = committed ? 0 : READ_LOG_ENTRIES;
      const to = from + READ_LOG_ENTRIES;
      for (const count of READ_WORKERS) {
        const threads = Math.max(1, count);
        let ms: number;
        let bytes: number;
        if (count === 0) {
          const picks = rangePicks(from, to);
          readAll(log, from, to, committed);
          readPicks(log, picks, picks.length, committed);
          const start = performance.now();
          bytes = readPicks(log, picks, READS_PER_THREAD, committed);
          ms = performance.now() - start;
        } else {
          const timed = await timedInWorkers<number>(
            attached.slice(0, count),
            "read",
            (_, phase) => ({ phase, from, to, count: READS_PER_THREAD, committed }),
          );
          ms = timed.ms;
          bytes = timed.results.reduce((a, b) => a + b, 0);
        }
        const reads = threads * READS_PER_THREAD;
        if (bytes !== reads * VALUE_BYTES) {
          throw new Error(`assertion failed: ${reads} reads returned ${bytes} bytes`);
        }
        rows.push({
          workers: count,
          threads,
          committed,
          reads,
          ms,
          readsPerSecond: rate(reads, ms),
          perThreadPerSecond: rate(reads, ms) / threads,
        });
      }
    }
    await Promise.all(attached.map((worker) => worker.call("detach")));
  } finally {
    await log.close();
    removeTempDir(dir);
  }
  return rows;
}

// ---- 3. durable commits ----------------------------------------------------------------------

interface CommitRow {
  workers: number;
  lanesPerThread: number;
  inFlight: number;
  commits: number;
  ms: number;
  /** Run on a log opened with `zeroFillSegments`. */
  zeroFillSegments: boolean;
  commitsPerSecond: number;
  groupCommits: number;
  commitsPerGroupCommit: number;
  syncs: number;
  meanLatencyMs: number;
}

async function commitBench(workers: BenchWorker[]): Promise<CommitRow[]> {
  const dir = makeTempDir();
  const shared = await ConsensusLog.open({ dir, durability: "data" });
  const zeroFillDir = makeTempDir();
  let zeroFillLog: ConsensusLog | undefined;
  const rows: CommitRow[] = [];
  try {
    const handle = shared.share();
    const attached = workers.slice(0, WORKERS_MAX);
    await Promise.all(attached.map((worker) => worker.call("attach", { handle })));
    // Disjoint slots: 100M per configuration, 10M per thread, warm-up slots first.
    const firstSlot = (config: number, thread: number) =>
      config * 100_000_000 + thread * 10_000_000 + COMMIT_WARMUP;
    for (const [config, options] of COMMIT_CONFIGS.entries()) {
      const { workers: count, lanes } = options;
      const zeroFill = "zeroFill" in options && options.zeroFill;
      if (zeroFill && count !== 0) throw new Error("assertion failed: zero-fill runs on the owner");
      const log = zeroFill
        ? zeroFillLog ??= await ConsensusLog.open({
          dir: zeroFillDir,
          durability: "data",
          zeroFillSegments: true,
        })
        : shared;
      let before = log.stats();
      let ms: number;
      let results: CommitResult[];
      if (count === 0) {
        const first = firstSlot(config, 0);
        for (let slot = first - COMMIT_WARMUP; slot < first; slot++) {
          log.accept(slot, BALLOT, VALUE);
          await log.commit(slot);
        }
        before = log.stats();
        let stop = false;
        const start = performance.now();
        const running = commitLanes(log, first, lanes, () => stop);
        await sleep(COMMIT_SECONDS * 1000);
        stop = true;
        results = [await running];
        ms = performance.now() - start;
      } else {
        ({ ms, results } = await timedInWorkers<CommitResult>(
          attached.slice(0, count),
          "commit",
          (i, phase) => ({ phase, first: firstSlot(config, i), lanes, warmup: COMMIT_WARMUP }),
          COMMIT_SECONDS * 1000,
          () => (before = log.stats()),
        ));
      }
      const after = log.stats();
      const commits = results.reduce((sum, result) => sum + result.commits, 0);
      const latencySumMs = results.reduce((sum, result) => sum + result.latencySumMs, 0);
      const groupCommits = after.commits - before.commits;
      rows.push({
        workers: count,
        lanesPerThread: lanes,
        inFlight: Math.max(1, count) * lanes,
        commits,
        ms,
        zeroFillSegments: zeroFill,
        commitsPerSecond: rate(commits, ms),
        groupCommits,
        commitsPerGroupCommit: commits / groupCommits,
        syncs: after.syncs - before.syncs,
        meanLatencyMs: latencySumMs / commits,
      });
    }
    await Promise.all(attached.map((worker) => worker.call("detach")));
  } finally {
    await shared.close();
    await zeroFillLog?.close();
    removeTempDir(dir);
    removeTempDir(zeroFillDir);
  }
  return rows;
}

// ---- run and report --------------------------------------------------------------------------

const stamp = new RunStamp();
const { cores, cpu, loadAtStart } = stamp;
const runtimeName = runtime === "bun" ? "Bun" : "Deno";
console.log(`ConsensusLog shared with Workers — ${runtime} ${runtimeVersion}`);
console.log(
  `This machine has ${cores} cores (${cpu}). With more threads than cores, threads share them ` +
    `(and with the owner, which carries out every commit): the scaling below is as measured, ` +
    `not linear.`,
);
// The machine is shared: what else ran shows in the load average, printed before and after.
console.log(`Load average (1 min) at the start: ${loadAtStart.toFixed(2)}`);

// The Workers live until every log is closed: in Deno 2.9.5, `close()` of a shared log with no
// live Worker ends the process ("Top-level await promise never resolved"): the owner awaits its
// request loop, parked in an `Atomics.waitAsync` that Deno does not count as pending work.
const workers = Array.from({ length: WORKERS_MAX }, () => new BenchWorker());
let accept: AcceptRow[];
let read: ReadRow[];
let commit: CommitRow[];
let spinBefore: number;
let spinAfter: number;
try {
  await Promise.all(workers.map((worker) => worker.call("init", { signal: signal.buffer })));
  spinBefore = await calibrate(workers);
  accept = await acceptBench(workers);
  read = await readBench(workers);
  commit = await commitBench(workers);
  spinAfter = await calibrate(workers);
} finally {
  for (const worker of workers) worker.terminate();
}

const thousands = (value: number) => Math.round(value).toLocaleString("en-US");
const figure = (value: number) =>
  value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
const baselineAccepts = accept[0].acceptsPerSecond;

console.log(
  `\nCalibration: a pure arithmetic loop (no shared memory) in 2 Workers at once ran at ` +
    `${spinBefore.toFixed(2)}× (before the benches) and ${spinAfter.toFixed(2)}× (after) the ` +
    `rate of 1 Worker: the most 2 threads could gain in this run, whatever the log does.`,
);

console.log(
  `\n### Accepts, 100 B, durability "none" — ${runtimeName} ${runtimeVersion}, ${cores} cores\n`,
);
console.log(
  `${thousands(ACCEPTS_PER_THREAD)} timed accepts per thread (disjoint slot ranges), in rounds ` +
    `of ${thousands(ROUND_ACCEPTS)} accepts of all threads together (each timed from GO to the ` +
    `last "done"); between rounds the owner commits and truncates the round's slots, untimed.\n`,
);
console.log(
  "| accepting threads | accepts/s, all threads | per thread | ns per accept, per thread " +
    "| × owner alone | rounds: n, accepts/s min–max |\n|---|---:|---:|---:|---:|---|",
);
for (const row of accept) {
  const rounds = `${row.roundRates.length}: ${thousands(Math.min(...row.roundRates))}–${
    thousands(Math.max(...row.roundRates))
  }`;
  console.log(
    `| ${label(row.workers)} | ${thousands(row.acceptsPerSecond)} | ${
      thousands(row.perThreadPerSecond)
    } | ${figure(row.nsPerAcceptPerThread)} | ${
      (row.acceptsPerSecond / baselineAccepts).toFixed(2)
    } | ${rounds} |`,
  );
}

console.log(`\n### Random reads, 100 B values, of 100k slots — ${runtimeName}, ${cores} cores\n`);
console.log(`${thousands(READS_PER_THREAD)} timed reads per thread, after an untimed pass.\n`);
console.log(
  "| reading threads | readCommitted/s, all | per thread | read (accepted)/s, all | per thread |" +
    "\n|---|---:|---:|---:|---:|",
);
for (const count of READ_WORKERS) {
  const of = (committed: boolean) =>
    read.find((row) => row.workers === count && row.committed === committed)!;
  const c = of(true);
  const a = of(false);
  console.log(
    `| ${label(count)} | ${thousands(c.readsPerSecond)} | ${thousands(c.perThreadPerSecond)} | ${
      thousands(a.readsPerSecond)
    } | ${thousands(a.perThreadPerSecond)} |`,
  );
}

console.log(
  `\n### accept + await commit(), durability "data" — ${runtimeName}, ${cores} cores\n`,
);
console.log(
  `${COMMIT_SECONDS} s per row; every commit of every thread is carried out by the owner's ` +
    `group commit (one fdatasync per group commit, plus directory and checkpoint syncs).\n`,
);
console.log(
  "| committing threads | loops in flight | commits/s | group commits | commits per group commit " +
    "| syncs | mean accept→durable, ms |\n|---|---:|---:|---:|---:|---:|---:|",
);
for (const row of commit) {
  const lanes = (row.workers === 0
    ? `${row.inFlight}`
    : `${row.workers} × ${row.lanesPerThread} = ${row.inFlight}`) +
    (row.zeroFillSegments ? " (zeroFillSegments)" : "");
  console.log(
    `| ${label(row.workers)} | ${lanes} | ${thousands(row.commitsPerSecond)} | ${
      thousands(row.groupCommits)
    } | ${figure(row.commitsPerGroupCommit)} | ${thousands(row.syncs)} | ${
      figure(row.meanLatencyMs)
    } |`,
  );
}
stamp.end();
stamp.printEnd();

writeResults(`${runtime}-workers.json`, {
  ...stamp.header(),
  spinTwoWorkersSpeedup: { before: spinBefore, after: spinAfter },
  valueBytes: VALUE_BYTES,
  accept: { acceptsPerThread: ACCEPTS_PER_THREAD, roundAccepts: ROUND_ACCEPTS, rows: accept },
  read: { entries: READ_LOG_ENTRIES, readsPerThread: READS_PER_THREAD, rows: read },
  commit: { seconds: COMMIT_SECONDS, durability: "data", rows: commit },
});
