// kill -9 of a real process whose Workers accept and commit through the owner: nothing a Worker
// was told is durable may be missing after the restart.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConsensusLog } from "../mod.ts";
import { entryBytes, runUntilKilled, seededRandom, tempDir } from "./_helpers.ts";

const WRITER = join(import.meta.dirname!, "fixtures", "workers_writer.ts");
const CYCLES = Number(process.env.HYBRIDLOG_CRASH_CYCLES ?? 10);

describe("Workers crash (kill -9 of a real process with two Workers)", () => {
  for (const mode of ["plain", "durable"]) {
    test(
      `${CYCLES} kill -9 cycles keep every slot a Worker committed${
        mode === "durable" ? " and every accept a Worker was told is durable" : ""
      }`,
      { timeout: 600_000 },
      async () => {
        using dir = tempDir();
        const path = join(dir.path, "log");
        const random = seededRandom(mode === "durable" ? 17 : 13);
        const committed = new Map<number, number>(); // slot → round
        const accepted = new Map<number, number>();
        let total = 0;
        for (let cycle = 0; cycle < CYCLES; cycle++) {
          await runUntilKilled(WRITER, [path, mode], 50 + Math.floor(random() * 250), (line) => {
            const [kind, slot, round] = line.split(" ").map((part, i) => i ? Number(part) : part);
            if (kind === "committed") committed.set(slot as number, round as number);
            else if (kind === "accepted") accepted.set(slot as number, round as number);
          });
          await using log = await ConsensusLog.open({
            dir: path,
            segmentSizeBytes: 64 * 1024,
            mutableSizeBytes: 1024 * 1024,
            durableAccepts: mode === "durable",
          });
          for (const [slot, round] of committed) {
            const entry = log.readCommitted(slot);
            assert.ok(entry, `cycle ${cycle}: committed slot ${slot} lost`);
            assert.equal(entry.ballot.round, round);
            assert.deepEqual(entry.value, entryBytes(slot * 1000 + round));
          }
          for (const [slot, round] of accepted) {
            const entry = log.read(slot);
            assert.ok(entry, `cycle ${cycle}: durably accepted slot ${slot} lost`);
            assert.equal(entry.ballot.round, round);
          }
          total = committed.size;
        }
        assert.ok(total > CYCLES * 5, `Workers committed ${total} slots over ${CYCLES} cycles`);
        if (mode === "durable") assert.ok(accepted.size > 0);
      },
    );
  }
});
