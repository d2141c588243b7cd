/**
 * Many named logs through a LogManager: one consensus log per table, leased with `await using`,
 * at most two kept open (the least recently used idle one is evicted, and reopened from disk when
 * needed again), `names()` listing every log on disk, and a SnapshotStore per table.
 *
 *     bun examples/log_manager.ts [--dir DIR]
 *     deno run --allow-ffi --allow-read --allow-write --allow-env examples/log_manager.ts [--dir DIR]
 *
 * Without `--dir` (a new or empty directory to keep) it works in a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LogManager, SnapshotStore } from "../mod.ts";

const at = process.argv.indexOf("--dir");
const root = at > 0 ? process.argv[at + 1] : mkdtempSync(join(tmpdir(), "hybridlog-example-"));
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const ballot = { round: 1, node: 1 };
const tables = ["table:users", "table:orders", "table:invoices"];

const manager = new LogManager({ dir: join(root, "logs"), logCountMax: 2 });
for (const name of tables) {
  await using lease = await manager.acquire(name); // opened (created) on first use
  for (let slot = 1; slot <= 3; slot++) {
    lease.log.accept(slot, ballot, encode(`${name} row ${slot}`));
  }
  await lease.log.commitMany([1, 2, 3]);
  console.log(`${name}: 3 rows committed, ${manager.stats().openLogs} log(s) open`);
} // each lease is released here; the log stays open, idle, until evicted
const { openLogs, evictions } = manager.stats();
assert.deepEqual([openLogs, evictions], [2, 1]); // table:users, idle the longest, was closed
assert.deepEqual(manager.names().sort(), [...tables].sort()); // every log on disk, open or not
console.log(`names: ${manager.names().sort().join(", ")}; ${openLogs} open, ${evictions} evicted`);

// table:users again: reopened from disk. Snapshot its state, then drop the rows it covers.
const snapshots = await SnapshotStore.open({ dir: join(root, "snapshots", "users") });
{
  await using lease = await manager.acquire("table:users");
  const rows = [...lease.log.committed()].map((entry) => decode(entry.value));
  assert.equal(rows.length, 3);
  await snapshots.create(2, encode(rows.slice(0, 2).join("\n"))); // the state as of slot 2
  await lease.log.truncatePrefix(3);
  assert.equal(lease.log.read(1), undefined);
}
const latest = (await snapshots.latest())!;
const restored = await new Response(snapshots.open(latest.slot)).text();
assert.equal(restored, "table:users row 1\ntable:users row 2");
console.log(`table:users reopened, snapshot at slot ${latest.slot}, log truncated below slot 3`);
assert.equal(manager.stats().evictions, 2); // reopening table:users evicted table:orders

await snapshots.close();
await manager.closeAll({ timeoutMs: 5000 }); // throws LeaseLeakError if a lease was never released
if (at < 0) rmSync(root, { recursive: true, force: true });
