import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConsensusLog } from "../mod.ts";
import { entryBytes, runUntilKilled, seededRandom, tempDir } from "./_helpers.ts";

const WRITER = join(import.meta.dirname!, "fixtures", "consensus_writer.ts");
const CYCLES = Number(process.env.HYBRIDLOG_CRASH_CYCLES ?? 20);

interface Acks {
  committed: Map<number, number>; // slot → round
  accepted: Map<number, number>; // slot → highest acknowledged round
}

async function runAndKill(dir: string, seed: number, mode: string, runMs: number): Promise<Acks> {
  const acks: Acks = { committed: new Map(), accepted: new Map() };
  await runUntilKilled(WRITER, [dir, String(seed), mode], runMs, (line) => {
    const [kind, a, c] = line.split(" ");
    if (kind === "committed") acks.committed.set(Number(a), Number(c));
    else if (kind === "accepted") {
      acks.accepted.set(Number(a), Math.max(acks.accepted.get(Number(a)) ?? 0, Number(c)));
    }
  });
  return acks;
}

describe("ConsensusLog crash (kill -9 of a real process)", () => {
  for (const mode of ["plain", "durable"]) {
    test(
      `${CYCLES} kill -9 cycles keep every committed slot${
        mode === "durable" ? " and every acknowledged accept with its ballot" : ""
      }`,
      {
        timeout: 600_000,
      },
      async () => {
        using dir = tempDir();
        const path = join(dir.path, "log");
        const random = seededRandom(mode === "durable" ? 7 : 3);
        const committed = new Map<number, number>();
        const accepted = new Map<number, number>();
        let checkedAccepts = 0;
        for (let cycle = 0; cycle < CYCLES; cycle++) {
          const acks = await runAndKill(path, cycle + 100, mode, 20 + Math.floor(random() * 150));
          for (const [slot, round] of acks.committed) committed.set(slot, round);
          for (const [slot, round] of acks.accepted) {
            accepted.set(slot, Math.max(accepted.get(slot) ?? 0, round));
          }
          await using log = await ConsensusLog.open({
            dir: path,
            segmentSizeBytes: 64 * 1024,
            mutableSizeBytes: 1024 * 1024,
          });
          for (const [slot, round] of committed) {
            const entry = log.readCommitted(slot);
            assert.ok(entry, `cycle ${cycle}: committed slot ${slot} lost`);
            assert.equal(entry.ballot.round, round, `cycle ${cycle}: slot ${slot} ballot`);
            assert.deepEqual(
              entry.value,
              entryBytes(slot * 1000 + round),
              `cycle ${cycle}: slot ${slot} value`,
            );
          }
          if (mode === "durable") {
            for (const [slot, round] of accepted) {
              if (committed.has(slot)) continue;
              const entry = log.read(slot);
              assert.ok(entry, `cycle ${cycle}: acknowledged accept of slot ${slot} lost`);
              assert.ok(
                entry.ballot.round >= round,
                `cycle ${cycle}: slot ${slot} went back to round ${entry.ballot.round} < ${round}`,
              );
              assert.deepEqual(entry.value, entryBytes(slot * 1000 + entry.ballot.round));
              checkedAccepts++;
            }
          } else {
            assert.equal(
              [...log.uncommitted()].length,
              0,
              "plain accepts are forgotten at a crash",
            );
          }
        }
        assert.ok(committed.size > 0, "the writers committed something");
        if (mode === "durable") {
          assert.ok(checkedAccepts > 0, "some acknowledged accepts were checked");
        }
      },
    );
  }
});
