/**
 * AppendLog as a durable job queue: a producer enqueues jobs and commits them with one sync, the
 * log is reopened as after a restart, a consumer tails it (committed jobs, then new ones as their
 * commits land) and truncates what it has done, and a last reopen shows the truncation held.
 *
 *     bun examples/append_log.ts [--dir DIR]
 *     deno run --allow-ffi --allow-read --allow-write --allow-env examples/append_log.ts [--dir DIR]
 *
 * Without `--dir` (a new or empty directory to keep) it works in a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppendLog } from "../mod.ts";

const at = process.argv.indexOf("--dir");
const root = at > 0 ? process.argv[at + 1] : mkdtempSync(join(tmpdir(), "hybridlog-example-"));
const dir = join(root, "jobs");
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

// The producer: three jobs, one commit. It resolves once fdatasync returned: they survive a crash.
const producer = await AppendLog.open({ dir });
const jobs = ["resize photo 1", "resize photo 2", "send newsletter"];
const addresses = jobs.map((job) => producer.enqueue(encode(job)));
const { commitNumber } = await producer.commit();
console.log(`enqueued 3 jobs at addresses ${addresses.join(", ")}: commit #${commitNumber}`);
await producer.close();

// After a restart: exactly the committed jobs, in order.
const queue = await AppendLog.open({ dir });
assert.deepEqual([...queue.scan()].map((entry) => decode(entry.value)), jobs);
console.log(`reopened: 3 jobs waiting, the first "${decode(queue.read(addresses[0])!)}"`);

// The consumer: committed jobs first, then each new one once durable; done jobs are truncated.
const consumer = (async () => {
  const done: string[] = [];
  for await (const { value, nextAddress } of queue.tail()) {
    done.push(decode(value));
    queue.truncateUntil(nextAddress); // read as undefined from now on
    if (done.length === jobs.length + 1) return done;
  }
})();
const last = await queue.enqueueAndWaitForCommit(encode("rebuild index")); // a job arriving later
const done = await consumer;
assert.deepEqual(done, [...jobs, "rebuild index"]);
assert.equal(queue.read(addresses[0]), undefined);
console.log(`consumed ${done.length} jobs: ${done.join(", ")}`);
await queue.close(); // commits the truncation

const reopened = await AppendLog.open({ dir });
assert.equal([...reopened.scan()].length, 0);
assert.ok(reopened.beginAddress > last);
console.log(`reopened again: 0 jobs left, the log begins at address ${reopened.beginAddress}`);
await reopened.close();
if (at < 0) rmSync(root, { recursive: true, force: true });
