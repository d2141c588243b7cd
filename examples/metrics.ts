/**
 * Metrics: every log records into `defaultMetrics` unless given its own registry. An AppendLog
 * and a ConsensusLog do some work, then the program prints the main Prometheus lines (what a
 * `/metrics` endpoint would serve) and checks the counters in `snapshot()`.
 *
 *     bun examples/metrics.ts [--dir DIR]
 *     deno run --allow-ffi --allow-read --allow-write --allow-env examples/metrics.ts [--dir DIR]
 *
 * Without `--dir` (a new or empty directory to keep) it works in a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { AppendLog, ConsensusLog, defaultMetrics, type HistogramSnapshot } from "../mod.ts";

const at = process.argv.indexOf("--dir");
const root = at > 0 ? process.argv[at + 1] : mkdtempSync(join(tmpdir(), "hybridlog-example-"));
const encode = (text: string) => new TextEncoder().encode(text);

const [queueDir, acceptorDir] = [resolve(root, "queue"), resolve(root, "acceptor")];
const queue = await AppendLog.open({ dir: queueDir });
const acceptor = await ConsensusLog.open({ dir: acceptorDir });
for (let i = 0; i < 100; i++) queue.enqueue(encode(`event ${i}`));
await Promise.all([queue.commit(), queue.commit()]); // concurrent commits share one sync
for (let slot = 0; slot < 10; slot++) acceptor.accept(slot, { round: 1, node: 1 }, encode("v"));
await acceptor.commitMany([0, 1, 2, 3, 4]);
await acceptor.commit(5);

// Series are labelled with the log's absolute directory; they leave the registry at close.
const text = defaultMetrics.prometheus();
const shown = /^hybridlog_(appends_total|accepts_total|commit_cycles_total|open_logs)\b/;
for (const line of text.split("\n").filter((line) => shown.test(line))) console.log(line);

const snapshot = defaultMetrics.snapshot();
const [q, a] = [`log="${queueDir}"`, `log="${acceptorDir}"`];
assert.equal(snapshot.hybridlog_appends_total[q], 100);
assert.equal(snapshot.hybridlog_accepts_total[a], 10);
assert.equal(snapshot.hybridlog_commit_cycles_total[q], 1);
assert.equal(snapshot.hybridlog_commits_requested_total[a], 2);
assert.equal(snapshot.hybridlog_open_logs[""], 2);
const syncs = snapshot.hybridlog_sync_duration_seconds[q] as HistogramSnapshot;
assert.equal(syncs.count, 1);
console.log(`queue: 1 sync of ${(syncs.sum * 1e6).toFixed(0)} µs for 100 appends`);

await Promise.all([queue.close(), acceptor.close()]);
assert.equal(defaultMetrics.snapshot().hybridlog_open_logs[""], 0);
assert.equal(defaultMetrics.snapshot().hybridlog_appends_total, undefined);
console.log("after close: 0 open logs, their series gone");
if (at < 0) rmSync(root, { recursive: true, force: true });
