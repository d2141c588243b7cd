/**
 * What `workers_bench.ts` runs, the same code in the owner thread (the 0-Worker baselines) and in
 * each Worker (`_workers_bench_worker.ts`): accept a slot range, read random slots, accept +
 * commit in several lanes until told to stop. Not a bench itself (`scripts/bench.mjs` runs only
 * `*_bench.ts`).
 *
 * @module
 */
import type { ConsensusEntry } from "../src/consensus_shared.ts";
import type { Ballot } from "../src/hard_state.ts";
import { PICKS_COUNT } from "./_shared.ts";

/** Bytes of every value (BASELINES.md measures 100 B values). */
export const VALUE_BYTES = 100;
/** The ballot of every accept. */
export const BALLOT: Ballot = { round: 1, node: 1 };
/** The value of every accept. */
export const VALUE: Uint8Array = new Uint8Array(VALUE_BYTES).map((_, i) => i);

/** Words of the shared signal buffer: a timed phase starts once `GO` reaches its number. */
export const GO = 0;
/** A duration-bound phase ends once `STOP` reaches its number. */
export const STOP = 1;
/** Int32 words of the shared signal buffer. */
export const SIGNAL_WORDS = 2;

/** What the owner's `ConsensusLog` and a Worker's `AttachedConsensusLog` both offer. */
export interface BenchLog {
  accept(slot: number, ballot: Ballot, value: Uint8Array): unknown;
  read(slot: number): ConsensusEntry | undefined;
  readCommitted(slot: number): ConsensusEntry | undefined;
  commit(slot: number): Promise<void>;
}

/** Accepts `VALUE` for slots `[first, first + count)`; returns `count`. */
export function acceptRange(log: BenchLog, first: number, count: number): number {
  for (let slot = first; slot < first + count; slot++) log.accept(slot, BALLOT, VALUE);
  return count;
}

/** `PICKS_COUNT` uniformly random slots of `[from, to)`, precomputed outside the timing. */
export function rangePicks(from: number, to: number): Float64Array {
  const picks = new Float64Array(PICKS_COUNT);
  for (let i = 0; i < PICKS_COUNT; i++) picks[i] = from + Math.floor(Math.random() * (to - from));
  return picks;
}

/**
 * Reads `count` slots from `picks` (with `readCommitted` if `committed`, else `read`), checking
 * every entry's state; returns the bytes read (so nothing is optimised away).
 */
export function readPicks(
  log: BenchLog,
  picks: Float64Array,
  count: number,
  committed: boolean,
): number {
  let bytes = 0;
  let i = 0;
  for (let n = 0; n < count; n++) {
    const slot = picks[i];
    const entry = committed ? log.readCommitted(slot) : log.read(slot);
    if (entry === undefined || entry.committed !== committed) {
      throw new Error(`assertion failed: slot ${slot} read as ${JSON.stringify(entry)}`);
    }
    bytes += entry.value.length;
    i = (i + 1) & (PICKS_COUNT - 1);
  }
  return bytes;
}

/** Reads every slot of `[from, to)` once (maps the segments, faults the pages in, warms the JIT). */
export function readAll(log: BenchLog, from: number, to: number, committed: boolean): number {
  let bytes = 0;
  for (let slot = from; slot < to; slot++) {
    const entry = committed ? log.readCommitted(slot) : log.read(slot);
    bytes += entry?.value.length ?? 0;
  }
  return bytes;
}

/** `iterations` rounds of integer arithmetic, no memory traffic: a calibration of the CPU. */
export function spin(iterations: number): number {
  let x = 0;
  for (let i = 0; i < iterations; i++) x = (x + i * 7) | 0;
  return x;
}

/** What {@linkcode commitLanes} did. */
export interface CommitResult {
  commits: number;
  /** Sum over commits of accept → commit resolved, in ms. */
  latencySumMs: number;
}

/**
 * `lanes` loops, each accepting a new slot (from `first` up) and awaiting its durable commit, until
 * `stop()` says so (each lane finishes the commit it awaits).
 *
 * A lane always has exactly one commit in flight, so its running time is the sum of its commits'
 * accept → durable latencies (plus the loop's own few instructions per commit): the latency sum
 * is timed per lane, not per commit. Two `performance.now()` per commit cost Deno 150 ns each,
 * 14–18% of the owner thread's profile samples with 256 committers: the bench timed itself.
 */
export async function commitLanes(
  log: BenchLog,
  first: number,
  lanes: number,
  stop: () => boolean,
): Promise<CommitResult> {
  let next = first;
  const result: CommitResult = { commits: 0, latencySumMs: 0 };
  const lane = async () => {
    const start = performance.now();
    while (!stop()) {
      const slot = next++;
      log.accept(slot, BALLOT, VALUE);
      await log.commit(slot);
      result.commits++;
    }
    result.latencySumMs += performance.now() - start;
  };
  await Promise.all(Array.from({ length: lanes }, lane));
  return result;
}
