/**
 * ConsensusLog as a Paxos acceptor with `durableAccepts` (promises and accepts on disk before it
 * answers): proposer 1 gets slots 1 and 2 accepted, proposer 2 prepares a higher ballot and learns
 * them, proposer 1's late accept is refused, slot 1 is decided, and a restart keeps it all.
 *
 *     bun examples/paxos_acceptor.ts [--dir DIR]
 *     deno run --allow-ffi --allow-read --allow-write --allow-env examples/paxos_acceptor.ts [--dir DIR]
 *
 * Without `--dir` (a new or empty directory to keep) it works in a temporary directory.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Ballot, BallotError, ConsensusLog } from "../mod.ts";

const at = process.argv.indexOf("--dir");
const root = at > 0 ? process.argv[at + 1] : mkdtempSync(join(tmpdir(), "hybridlog-example-"));
const dir = join(root, "acceptor");
const encode = (text: string) => new TextEncoder().encode(text);
const show = (b?: Ballot) => (b ? `${b.round}.${b.node}` : "none");
const first: Ballot = { round: 1, node: 1 };
const second: Ballot = { round: 2, node: 2 };

const log = await ConsensusLog.open({ dir, durableAccepts: true });
await log.promise(first); // phase 1b for proposer 1: durable before the reply
await log.accept(1, first, encode("x = 1")); // phase 2b: durable when it resolves
await log.accept(2, first, encode("y = 2"));

await log.promise(second); // proposer 2 prepares: it learns what was accepted, with ballots
const reply = [...log.uncommitted()].map((e) => `slot ${e.slot} @ ${show(e.ballot)}`);
assert.deepEqual(reply, ["slot 1 @ 1.1", "slot 2 @ 1.1"]);
console.log(`promised ${show(log.promised)}, phase-1 reply: ${reply.join(", ")}`);

try {
  await log.accept(3, first, encode("z = 3")); // proposer 1 has not heard of ballot 2.2 yet
  assert.fail("a lower ballot than the promise must be refused");
} catch (err) {
  assert.ok(err instanceof BallotError && err.code === "ERR_BALLOT", String(err));
  console.log(`late accept of ballot 1.1 refused: ${err.code}`);
}

await log.accept(1, second, encode("x = 1")); // proposer 2 re-proposes the value it learned
await log.commit(1); // a quorum accepted: decided, moved to the durable tail
console.log(`slot 1 committed: ${log.readCommitted(1)?.committed}`);
await log.close();

const restarted = await ConsensusLog.open({ dir, durableAccepts: true });
const state = [1, 2, 3].map((slot) => {
  const e = restarted.read(slot);
  return e
    ? `slot ${slot} ${e.committed ? "committed" : "accepted"} @ ${show(e.ballot)}`
    : `slot ${slot} empty`;
});
assert.deepEqual(restarted.promised, second);
assert.deepEqual(state, ["slot 1 committed @ 2.2", "slot 2 accepted @ 1.1", "slot 3 empty"]);
console.log(`after a restart: promised ${show(restarted.promised)}, ${state.join(", ")}`);
await restarted.close();
if (at < 0) rmSync(root, { recursive: true, force: true });
