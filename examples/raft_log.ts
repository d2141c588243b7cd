/**
 * ConsensusLog as a Raft follower's log: term and vote (`setHardState`), entries by slot = index
 * with term = ballot round, commits up to the commit index, a new leader replacing an uncommitted
 * entry, a snapshot (SnapshotStore) then `truncatePrefix`; a restart keeps all of it.
 *
 *     bun examples/raft_log.ts [--dir DIR]
 *     deno run --allow-ffi --allow-read --allow-write --allow-env examples/raft_log.ts [--dir DIR]
 *
 * Without `--dir` (a new or empty directory to keep) it works in a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BallotError, ConsensusLog, SnapshotStore } from "../mod.ts";

const at = process.argv.indexOf("--dir");
const root = at > 0 ? process.argv[at + 1] : mkdtempSync(join(tmpdir(), "hybridlog-example-"));
const options = { dir: join(root, "log"), durableAccepts: true }; // durable before each reply
const snapshotDir = join(root, "snapshots");
const encode = (text: string) => new TextEncoder().encode(text);
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

const log = await ConsensusLog.open(options);
await log.setHardState({ term: 1, vote: 1 }); // RequestVote from server 1 in term 1: granted
// AppendEntries from leader 1 in term 1: indexes 1 to 3, leaderCommit = 2.
const term1 = { round: 1, node: 1 };
await Promise.all(["x = 1", "y = 2", "z = 3"].map((c, i) => log.accept(i + 1, term1, encode(c))));
await log.commitMany([1, 2]);

// Server 1 fails; server 3 wins term 2, and its entries replace the uncommitted index 3.
await log.setHardState({ term: 2, vote: 3 });
await assert.rejects(log.setHardState({ term: 2, vote: 1 }), BallotError); // one vote per term
await log.accept(3, { round: 2, node: 3 }, encode("z = 30"));
await log.accept(4, { round: 2, node: 3 }, encode("w = 4"));
await log.commit(3); // leaderCommit = 3; index 4 stays accepted
const applied = [...log.committed()].map((entry) => decode(entry.value));
assert.deepEqual(applied, ["x = 1", "y = 2", "z = 30"]);
console.log(`term 2, voted for ${log.hardState.vote}; applied ${applied.join("; ")}`);

// The state after index 3 goes into a snapshot; then the log drops indexes 1 to 3.
const snapshots = await SnapshotStore.open({ dir: snapshotDir });
await snapshots.create(3, encode(applied.join("; ")));
await log.truncatePrefix(4);
assert.equal(log.read(3), undefined);
console.log(`snapshot at index 3, log truncated below index 4`);
await Promise.all([log.close(), snapshots.close()]);

const restarted = await ConsensusLog.open(options);
const store = await SnapshotStore.open({ dir: snapshotDir });
const latest = (await store.latest())!;
const state = await new Response(store.open(latest.slot)).text();
assert.deepEqual(restarted.hardState, { term: 2, vote: 3 });
assert.deepEqual([latest.slot, state], [3, "x = 1; y = 2; z = 30"]);
assert.deepEqual([restarted.read(2), decode(restarted.read(4)!.value)], [undefined, "w = 4"]);
const { term, vote } = restarted.hardState;
console.log(`after a restart: term ${term}, vote ${vote}, snapshot ${latest.slot} "${state}"`);
await Promise.all([restarted.close(), store.close()]);
if (at < 0) rmSync(root, { recursive: true, force: true });
