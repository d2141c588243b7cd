/**
 * The Worker of `workers_bench.ts`: attaches to the log the bench's thread shares and runs what it
 * is asked. A timed operation prepares (untimed: picks, warm-up), says it is armed, blocks until
 * the shared `GO` word reaches its phase, runs, and replies with its result. Not a bench itself.
 *
 * @module
 */
import { ConsensusLog } from "../src/consensus_log.ts";
import type { AttachedConsensusLog } from "../src/consensus_attached.ts";
import type { ConsensusLogHandle } from "../src/consensus_shared.ts";
import {
  acceptRange,
  BALLOT,
  commitLanes,
  GO,
  rangePicks,
  readAll,
  readPicks,
  spin,
  STOP,
  VALUE,
} from "./_workers_bench_work.ts";

interface Scope {
  onmessage: ((event: MessageEvent) => void) | null;
  postMessage(message: unknown): void;
}
const scope = globalThis as unknown as Scope;
let log: AttachedConsensusLog | undefined;
let signal: Int32Array | undefined;

function attached(): AttachedConsensusLog {
  if (!log) throw new Error("not attached");
  return log;
}

/** Blocks this Worker until the bench's thread starts phase `phase`. */
function waitForGo(phase: number): void {
  if (!signal) throw new Error("no signal buffer");
  for (;;) {
    const seen = Atomics.load(signal, GO);
    if (seen >= phase) return;
    Atomics.wait(signal, GO, seen);
  }
}

type Args = Record<string, number | boolean | unknown>;
type Op = (args: Args, arm: () => void) => unknown;

const ops: Record<string, Op> = {
  init(args) {
    signal = new Int32Array(args.signal as SharedArrayBuffer);
    return true;
  },
  attach(args) {
    log = ConsensusLog.attach(args.handle as ConsensusLogHandle);
    return true;
  },
  detach() {
    attached().detach();
    log = undefined;
    return true;
  },
  /** Spins `iterations` rounds of arithmetic once `GO` reaches `phase` (after a short warm-up). */
  spin(args, arm) {
    spin(1_000_000);
    arm();
    waitForGo(args.phase as number);
    return spin(args.iterations as number);
  },
  /** Accepts slots `[first, first + count)` once `GO` reaches `phase`. */
  accept(args, arm) {
    const l = attached();
    arm();
    waitForGo(args.phase as number);
    return acceptRange(l, args.first as number, args.count as number);
  },
  /** Reads `count` random slots of `[from, to)`, after one untimed pass over all of them. */
  read(args, arm) {
    const l = attached();
    const { from, to, count, committed } = args as {
      from: number;
      to: number;
      count: number;
      committed: boolean;
    };
    const picks = rangePicks(from, to);
    readAll(l, from, to, committed);
    readPicks(l, picks, picks.length, committed);
    arm();
    waitForGo(args.phase as number);
    return readPicks(l, picks, count, committed);
  },
  /** Accept + durable commit in `lanes` loops, from slot `first` up, until `STOP` reaches `phase`. */
  async commit(args, arm) {
    const l = attached();
    const { phase, first, lanes, warmup } = args as {
      phase: number;
      first: number;
      lanes: number;
      warmup: number;
    };
    // Warms the accept + commit path up (untimed) on slots below `first`.
    for (let n = 0; n < warmup; n++) {
      l.accept(first - warmup + n, BALLOT, VALUE);
      await l.commit(first - warmup + n);
    }
    arm();
    waitForGo(phase);
    return await commitLanes(l, first, lanes, () => Atomics.load(signal!, STOP) >= phase);
  },
};

// Bun drops messages that reach a Worker before a module with top-level await (hybridlog's FFI
// loader has one) has set `onmessage`: the Worker says when it listens.
scope.onmessage = async (event: MessageEvent) => {
  const { id, op, args } = event.data as { id: number; op: string; args: Args };
  try {
    const arm = () => scope.postMessage({ id, armed: true });
    const result = await ops[op](args ?? {}, arm);
    scope.postMessage({ id, ok: true, result });
  } catch (error) {
    scope.postMessage({ id, ok: false, message: String((error as Error)?.stack ?? error) });
  }
};
scope.postMessage({ ready: true });
