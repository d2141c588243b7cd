/**
 * Many Workers, one log: the main thread opens a ConsensusLog and shares it with two Workers
 * (examples/_workers_example_worker.ts), which accept and commit disjoint slots on shared memory,
 * their commits carried out by the owner's group commit. The owner then reads every slot as
 * committed, closes, and a reopen finds them all.
 *
 *     bun examples/workers.ts [--dir DIR]
 *     deno run --allow-ffi --allow-read --allow-write --allow-env examples/workers.ts [--dir DIR]
 *
 * Without `--dir` (a new or empty directory to keep) it works in a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsensusLog } from "../mod.ts";
import type { Job } from "./_workers_example_worker.ts";

const at = process.argv.indexOf("--dir");
const root = at > 0 ? process.argv[at + 1] : mkdtempSync(join(tmpdir(), "hybridlog-example-"));
const dir = join(root, "shared");
const SLOTS_PER_WORKER = 100;
const url = new URL("./_workers_example_worker.ts", import.meta.url).href;

const log = await ConsensusLog.open({ dir });
const run = (worker: number) =>
  new Promise<{ committed: number; last: string }>((resolve, reject) => {
    const job: Job = {
      handle: log.share(), // structured-cloneable: shared buffers and the log's fixed facts
      worker,
      slots: Array.from({ length: SLOTS_PER_WORKER }, (_, i) => worker * 1000 + i),
    };
    const thread = new Worker(url, { type: "module" });
    thread.onerror = (event) => reject(new Error(`Worker ${worker}: ${event.message}`));
    thread.onmessage = (event) => {
      if (event.data === "ready") return thread.postMessage(job); // it listens now: send the job
      thread.terminate();
      resolve(event.data);
    };
  });
const results = await Promise.all([1, 2].map(run));
results.forEach(({ committed, last }, i) =>
  console.log(`Worker ${i + 1} committed ${committed} slots, the last holds "${last}"`)
);
const committed = [...log.committed()];
assert.equal(committed.length, 2 * SLOTS_PER_WORKER);
assert.ok(
  committed.every((entry) =>
    entry.committed && entry.ballot.node === Math.floor(entry.slot / 1000)
  ),
);
console.log(`the owner reads ${committed.length} committed slots`);
await log.close();

const reopened = await ConsensusLog.open({ dir });
assert.equal(reopened.stats().committedCount, 2 * SLOTS_PER_WORKER);
assert.equal(new TextDecoder().decode(reopened.readCommitted(2099)!.value), "2:2099");
console.log(`after a reopen: ${reopened.stats().committedCount} committed slots`);
await reopened.close();
if (at < 0) rmSync(root, { recursive: true, force: true });
