import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { AppendLog } from "../mod.ts";
import { entryBytes, runUntilKilled, seededRandom, tempDir } from "./_helpers.ts";

const WRITER = join(import.meta.dirname!, "fixtures", "crash_writer.ts");
const CYCLES = Number(process.env.HYBRIDLOG_CRASH_CYCLES ?? 20);

interface Run {
  acked: Map<number, number>; // entry index → address
  startedAt: number; // first index the child wrote
}

/** Starts the writer, lets it run `runMs` after it is ready, then kill -9. */
async function runAndKill(dir: string, seed: number, runMs: number): Promise<Run> {
  const run: Run = { acked: new Map(), startedAt: -1 };
  await runUntilKilled(WRITER, [dir, String(seed)], runMs, (line) => {
    const [kind, first, list] = line.split(" ");
    if (kind === "ready") run.startedAt = Number(first);
    else if (kind === "ack") {
      list.split(",").forEach((a, k) => run.acked.set(Number(first) + k, Number(a)));
    }
  });
  return run;
}

describe("crash (kill -9 of a real process)", () => {
  test(`${CYCLES} kill -9 cycles lose no acknowledged entry and recover a clean prefix`, {
    timeout: 600_000,
  }, async () => {
    using dir = tempDir();
    const path = join(dir.path, "log");
    const random = seededRandom(20261121);
    const acked = new Map<number, number>();
    let killedWithAcks = 0;
    for (let cycle = 0; cycle < CYCLES; cycle++) {
      const run = await runAndKill(path, cycle + 1, 20 + Math.floor(random() * 150));
      for (const [i, a] of run.acked) acked.set(i, a);
      if (run.acked.size) killedWithAcks++;
      await using log = await AppendLog.open({
        dir: path,
        segmentSizeBytes: 64 * 1024,
        bufferSizeBytes: 16 * 1024,
      });
      // Every acknowledged entry is there, byte for byte, at its acknowledged address.
      for (const [i, address] of acked) {
        assert.deepEqual(log.read(address), entryBytes(i), `cycle ${cycle}: entry ${i} lost`);
      }
      // The log is exactly a prefix of what was enqueued: entries 0..n-1 in order, no gaps.
      let n = 0;
      for (const entry of log.scan()) {
        assert.deepEqual(entry.value, entryBytes(n), `cycle ${cycle}: entry ${n} out of order`);
        n++;
      }
      assert.ok(n >= acked.size, `cycle ${cycle}: recovered ${n} < acknowledged ${acked.size}`);
      // Unacknowledged entries past the prefix were dropped, so the next run continues from n.
      for (const i of acked.keys()) assert.ok(i < n);
    }
    assert.ok(killedWithAcks >= CYCLES / 2, `only ${killedWithAcks} runs acknowledged anything`);
  });
});
