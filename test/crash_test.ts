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
  recycled: number; // segments the child recycled as spares (queue mode)
}

/** Starts the writer, lets it run `runMs` after it is ready, then kill -9. */
async function runAndKill(dir: string, seed: number, runMs: number, mode = ""): Promise<Run> {
  const run: Run = { acked: new Map(), startedAt: -1, recycled: 0 };
  await runUntilKilled(WRITER, [dir, String(seed), "data", mode], runMs, (line) => {
    const [kind, first, list] = line.split(" ");
    if (kind === "ready") run.startedAt = Number(first);
    else if (kind === "recycled") run.recycled = Number(first);
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

  test(
    `a durable queue with zeroFillSegments: ${CYCLES} kill -9 cycles, segments recycled as they are truncated`,
    {
      timeout: 600_000,
    },
    async () => {
      using dir = tempDir();
      const path = join(dir.path, "log");
      const random = seededRandom(20261122);
      const indexOf = new Map<number, number>(); // acknowledged address → entry index
      const acked = new Map<number, number>();
      let recycled = 0;
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        const run = await runAndKill(path, cycle + 1, 20 + Math.floor(random() * 150), "queue");
        for (const [i, a] of run.acked) {
          acked.set(i, a);
          indexOf.set(a, i);
        }
        recycled += run.recycled;
        await using log = await AppendLog.open({
          dir: path,
          segmentSizeBytes: 64 * 1024,
          bufferSizeBytes: 16 * 1024,
          zeroFillSegments: true,
        });
        // The log holds entries k..n-1 in order, no gaps, where k was acknowledged (truncation
        // only ever moves the begin to an acknowledged entry) and n is the last commit's cookie.
        const entries = [...log.scan()];
        if (entries.length === 0) continue;
        const k = indexOf.get(entries[0].address);
        assert.ok(k !== undefined, `cycle ${cycle}: the first entry was never acknowledged`);
        entries.forEach((entry, j) => {
          assert.deepEqual(
            entry.value,
            entryBytes(k + j),
            `cycle ${cycle}: entry ${k + j} differs`,
          );
        });
        const n = k + entries.length;
        assert.equal(new DataView(log.cookie!.buffer).getFloat64(0, true), n);
        // Every acknowledged entry not truncated is there, at its acknowledged address.
        for (const [i, address] of acked) {
          if (i >= k) {
            assert.deepEqual(log.read(address), entryBytes(i), `cycle ${cycle}: ${i} lost`);
          }
          assert.ok(i < n, `cycle ${cycle}: acknowledged entry ${i} past the recovered end ${n}`);
        }
      }
      assert.ok(recycled > CYCLES, `segments recycled: ${recycled}`);
    },
  );
});
