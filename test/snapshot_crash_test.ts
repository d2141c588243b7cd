import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { ConsensusLog, recover, SnapshotStore } from "../mod.ts";
import { entryBytes, runUntilKilled, seededRandom, tempDir } from "./_helpers.ts";

const WRITER = join(import.meta.dirname!, "fixtures", "snapshot_writer.ts");
const CYCLES = Number(process.env.HYBRIDLOG_CRASH_CYCLES ?? 20);

async function runAndKill(dir: string, seed: number, runMs: number) {
  const seen = { committed: 0, snapshots: 0, truncations: 0 };
  await runUntilKilled(WRITER, [dir, String(seed)], runMs, (line) => {
    const [kind, value] = line.split(" ");
    if (kind === "committed") seen.committed = Number(value);
    else if (kind === "snapshot") seen.snapshots++;
    else if (kind === "truncated") seen.truncations++;
  });
  return seen;
}

describe("snapshots and truncation under kill -9", () => {
  test(
    `${CYCLES} kills during snapshot create and between snapshot and truncation recover the exact state`,
    {
      timeout: 600_000,
    },
    async () => {
      using dir = tempDir();
      const random = seededRandom(99);
      let acknowledged = 0;
      let snapshots = 0;
      let truncations = 0;
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        const seen = await runAndKill(dir.path, cycle + 1, 30 + Math.floor(random() * 250));
        acknowledged = Math.max(acknowledged, seen.committed);
        snapshots += seen.snapshots;
        truncations += seen.truncations;
        await using log = await ConsensusLog.open({
          dir: join(dir.path, "log"),
          segmentSizeBytes: 64 * 1024,
        });
        await using store = await SnapshotStore.open({ dir: join(dir.path, "snapshots") });
        let count = 0;
        let crc = 0;
        let fromSnapshot = false;
        await recover({
          log,
          snapshots: store,
          onSnapshot: async (_info, data) => {
            const bytes = new Uint8Array(await new Response(data).arrayBuffer());
            const state = JSON.parse(
              new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0x7d) + 1)),
            );
            count = state.count;
            crc = state.crc;
            fromSnapshot = true;
          },
          onEntry: (entry) => {
            assert.equal(
              entry.slot,
              count,
              `cycle ${cycle}: replay must continue at slot ${count}`,
            );
            crc = crc32(entry.value, crc) >>> 0;
            count++;
          },
        });
        assert.ok(
          count >= acknowledged,
          `cycle ${cycle}: recovered ${count} < acknowledged ${acknowledged}`,
        );
        let expected = 0;
        for (let slot = 0; slot < count; slot++) expected = crc32(entryBytes(slot), expected) >>> 0;
        assert.equal(
          crc,
          expected,
          `cycle ${cycle}: recovered state differs (from snapshot: ${fromSnapshot})`,
        );
        acknowledged = count;
      }
      assert.ok(
        snapshots > 0 && truncations > 0,
        `snapshots ${snapshots}, truncations ${truncations}`,
      );
    },
  );
});
