/**
 * Helpers shared by the mitata benches of this folder (not a bench: `scripts/bench.mjs` runs only
 * `*_bench.ts`): temporary directories, fixtures built once and disposed after the run, random
 * picks precomputed outside the timing, per-call setup outside the timing, and the extraction,
 * formatting and writing of the results.
 *
 * @module
 */
import * as fs from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { do_not_optimize, run } from "mitata";
import { AppendLog } from "../src/append_log.ts";

/** The runtime the bench runs in. */
export const runtime: "bun" | "deno" = "Bun" in globalThis ? "bun" : "deno";
/** Its version. */
export const runtimeVersion: string | undefined = process.versions.bun ?? process.versions.deno;

/** Random picks precomputed per read bench (a power of two, indexed with a mask). */
export const PICKS_COUNT = 1 << 16;

const tempDirs = new Set<string>();
const disposers: Array<() => Promise<void> | void> = [];

/** A new empty directory under the system temp dir, removed after the run at the latest. */
export function makeTempDir(): string {
  const dir = fs.mkdtempSync(join(tmpdir(), "hybridlog-bench-"));
  tempDirs.add(dir);
  return dir;
}

/** Removes a directory made by {@linkcode makeTempDir}. */
export function removeTempDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** Entries per commit while an AppendLog fixture is built. */
const BUILD_COMMIT_ENTRIES = 50_000;

/**
 * A new committed AppendLog of `count` entries of `value` (durability `"data"`), open, with every
 * entry's address.
 */
export async function buildAppendLog(
  value: Uint8Array,
  count: number,
): Promise<{ log: AppendLog; addresses: Float64Array }> {
  const log = await AppendLog.open({ dir: makeTempDir(), durability: "data" });
  const addresses = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    addresses[i] = log.enqueue(value);
    if ((i + 1) % BUILD_COMMIT_ENTRIES === 0) await log.commit();
  }
  await log.commit();
  return { log, addresses };
}

/** A {@linkcode buildAppendLog} fixture built once per run, closed and removed after it. */
export function sharedAppendLog(
  value: Uint8Array,
  count: number,
): () => Promise<{ log: AppendLog; addresses: Float64Array }> {
  return shared(() => buildAppendLog(value, count), async ({ log }) => {
    const dir = log.dir;
    await log.close();
    removeTempDir(dir);
  });
}

/**
 * The body of the reopen bench: a closed AppendLog of `count` entries of `value`; each measured
 * call opens it, reads the first entry and closes it.
 */
export async function* reopenAppendLog(
  value: Uint8Array,
  count: number,
): AsyncGenerator<() => Promise<void>, void, undefined> {
  const { log, addresses } = await buildAppendLog(value, count);
  const dir = log.dir;
  const first = addresses[0];
  await log.close();
  yield async () => {
    const reopened = await AppendLog.open({ dir, durability: "data" });
    do_not_optimize(reopened.read(first));
    await reopened.close();
  };
  removeTempDir(dir);
}

/** Uniformly random picks from `from`, precomputed so the measured loop only indexes. */
export function randomPicks(from: ArrayLike<number>): Float64Array {
  const picks = new Float64Array(PICKS_COUNT);
  for (let i = 0; i < PICKS_COUNT; i++) picks[i] = from[Math.floor(Math.random() * from.length)];
  return picks;
}

/** Memoises a fixture shared by several benches; disposed after the run. */
export function shared<T>(
  create: () => Promise<T>,
  dispose: (fixture: T) => Promise<void> | void,
): () => Promise<T> {
  let fixture: Promise<T> | undefined;
  return () => {
    if (fixture === undefined) {
      fixture = create();
      const created = fixture;
      disposers.push(async () => dispose(await created));
    }
    return fixture;
  };
}

/**
 * What a bench generator yields so that `setup` runs before every measured call, outside the
 * timing, and its result is the call's argument (mitata's "computed parameter"; its types only
 * know plain functions, hence the cast).
 *
 * mitata runs calls faster than 65 µs in batches of 4,096, with all 4,096 setups first. Setups
 * that depend on the previous call (a region that must be emptied in time) cannot be batched:
 * unless `allowBatching` says the setups are independent, a batched run fails loudly.
 */
export function withSetup<T>(
  setup: () => T | Promise<T>,
  measured: (argument: T) => unknown,
  options: { allowBatching?: boolean } = {},
): () => unknown {
  let setUp = false;
  const computed = {
    0: async () => {
      if (setUp && !options.allowBatching) {
        throw new Error(
          "assertion failed: mitata batched a bench whose setup needs the previous call; make each call slower than 65 µs",
        );
      }
      setUp = true;
      return await setup();
    },
    bench: (argument: T) => {
      setUp = false;
      return measured(argument);
    },
  };
  return computed as unknown as () => unknown;
}

/** mitata's statistics of one bench, in ns (of one measured call). */
export type Stats = {
  avg: number;
  p50: number;
  p99: number;
  min: number;
  max: number;
  samples: number;
};

/** What {@linkcode runAndReport} passes on about the machine. */
export type RunContext = { runtime: unknown; arch: unknown; cpu: unknown };

/**
 * Runs every registered bench, hands the statistics by bench name to `report`, then disposes the
 * shared fixtures and removes the temporary directories (also when a bench fails).
 */
export async function runAndReport(
  report: (results: Map<string, Stats>, context: RunContext) => void,
): Promise<void> {
  try {
    // `run()` resolves with every trial; a trial's `runs[0].stats` holds the timings in ns.
    const { benchmarks, context } = await run({ throw: true });
    const results = new Map<string, Stats>();
    for (const trial of benchmarks) {
      const stats = trial.runs[0]?.stats;
      if (stats === undefined) {
        throw new Error(`Cannot report ${trial.alias}: it has no statistics`);
      }
      const { avg, p50, p99, min, max } = stats;
      results.set(trial.alias, { avg, p50, p99, min, max, samples: stats.samples.length });
    }
    report(results, { runtime: context.runtime, arch: context.arch, cpu: context.cpu });
  } finally {
    for (const dispose of disposers) await dispose();
    for (const dir of tempDirs) removeTempDir(dir);
  }
}

/** The mean of bench `name`, in ns per measured call. */
export function meanOf(results: Map<string, Stats>, name: string): number {
  const stats = results.get(name);
  if (stats === undefined) throw new Error(`Cannot report ${name}: it did not run`);
  return stats.avg;
}

/** `ns` in ns, µs or ms, whichever reads best. */
export function formatTime(ns: number): string {
  return ns < 1e3
    ? `${ns.toFixed(1)} ns`
    : ns < 1e6
    ? `${(ns / 1e3).toFixed(2)} µs`
    : `${(ns / 1e6).toFixed(2)} ms`;
}

/** Writes `json` to `bench/results/<fileName>` and says where. */
export function writeResults(fileName: string, json: unknown): void {
  const resultsDir = join(dirname(fileURLToPath(import.meta.url)), "results");
  fs.mkdirSync(resultsDir, { recursive: true });
  const path = join(resultsDir, fileName);
  fs.writeFileSync(path, JSON.stringify(json, null, 2) + "\n");
  console.log(`\nwrote ${path}`);
}

/**
 * The machine, and the load average around a run that is not a mitata bench (the machine is
 * shared: what else ran shows in the load). Made when the run starts.
 */
export class RunStamp {
  readonly cores: number = availableParallelism();
  readonly cpu: string = cpus()[0]?.model ?? "unknown CPU";
  readonly loadAtStart: number = loadavg()[0];
  #startedAt = performance.now();
  #loadAtEnd: number | undefined;

  /** Notes the load average at the end of the measuring (the first call counts). */
  end(): number {
    return this.#loadAtEnd ??= loadavg()[0];
  }

  /** Prints how long the run took and the load average at its end. */
  printEnd(): void {
    const seconds = ((performance.now() - this.#startedAt) / 1000).toFixed(1);
    console.log(
      `\n(the whole run took ${seconds} s; load average (1 min) at the end: ${
        this.end().toFixed(2)
      })`,
    );
  }

  /** The fields a result file of such a run starts with. */
  header(): {
    runtime: string;
    version: string | undefined;
    date: string;
    cores: number;
    cpu: string;
    loadAverage: { start: number; end: number };
  } {
    return {
      runtime,
      version: runtimeVersion,
      date: new Date().toISOString(),
      cores: this.cores,
      cpu: this.cpu,
      loadAverage: { start: this.loadAtStart, end: this.end() },
    };
  }
}
