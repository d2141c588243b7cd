// Real disk full: a small tmpfs fills up for real. Needs root (mount); otherwise skipped with the
// reason. posix_fallocate reserves each segment before use, so a full disk surfaces as ENOSPC
// when a segment is created — before anything is written — and the log keeps working once space
// is freed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, ConsensusLog, IoError } from "../mod.ts";
import { entryBytes, tempDir } from "./_helpers.ts";

const SIZE = "1m";

function whyNot(): string | false {
  if (process.getuid?.() !== 0) return "needs root to mount a tmpfs";
  using probe = tempDir("hybridlog-mount-probe-");
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe.path], {
      stdio: "ignore",
    });
    execFileSync("umount", [probe.path], { stdio: "ignore" });
    return false;
  } catch (error) {
    return `cannot mount a tmpfs here: ${(error as Error).message.split("\n")[0]}`;
  }
}
const skip = whyNot();

function withTmpfs(body: (mountPoint: string) => Promise<void>): () => Promise<void> {
  return async () => {
    using dir = tempDir("hybridlog-full-");
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${SIZE}`, "tmpfs", dir.path]);
    try {
      await body(dir.path);
    } finally {
      execFileSync("umount", ["-l", dir.path]);
    }
  };
}

const isEnospc = (error: unknown) =>
  error instanceof IoError && error.code === "ERR_IO" && error.errno === "ENOSPC";

describe("disk full (tmpfs)", () => {
  test(
    "AppendLog reports ENOSPC, keeps everything acknowledged, and works after space is freed",
    {
      skip,
    },
    withTmpfs(async (mountPoint) => {
      const filler = join(mountPoint, "filler");
      fs.writeFileSync(filler, new Uint8Array(192 * 1024));
      const options = {
        dir: join(mountPoint, "log"),
        segmentSizeBytes: 64 * 1024,
        bufferSizeBytes: 8 * 1024,
      };
      const log = await AppendLog.open(options);
      const acknowledged: Array<[number, number]> = [];
      const pending: Array<[number, number]> = [];
      let failure: unknown;
      for (let i = 0; i < 100_000 && failure === undefined; i++) {
        try {
          pending.push([i, log.enqueue(entryBytes(i, 1000))]);
          if (i % 10 === 9) {
            await log.commit();
            acknowledged.push(...pending.splice(0));
          }
        } catch (error) {
          failure = error;
        }
      }
      assert.ok(isEnospc(failure), `expected ENOSPC, got ${failure}`);
      assert.ok(
        acknowledged.length > 100,
        `acknowledged ${acknowledged.length} before the disk filled`,
      );
      for (const [k, address] of acknowledged) {
        assert.deepEqual(log.read(address), entryBytes(k, 1000));
      }
      assert.throws(
        () => log.enqueue(entryBytes(0, 60_000)),
        isEnospc,
        "still full",
      );
      fs.rmSync(filler); // free space: the log works again, no reopen needed
      const address = log.enqueue(entryBytes(7, 60_000));
      await log.commit();
      assert.deepEqual(log.read(address), entryBytes(7, 60_000));
      await log.close();
      const reopened = await AppendLog.open(options);
      for (const [k, a] of acknowledged) assert.deepEqual(reopened.read(a), entryBytes(k, 1000));
      await reopened.close();
    }),
  );

  test(
    "ConsensusLog commits fail with ENOSPC, acknowledged slots survive, and it recovers",
    {
      skip,
    },
    withTmpfs(async (mountPoint) => {
      const filler = join(mountPoint, "filler");
      fs.writeFileSync(filler, new Uint8Array(192 * 1024));
      const options = {
        dir: join(mountPoint, "log"),
        segmentSizeBytes: 64 * 1024,
        bufferSizeBytes: 8 * 1024,
        mutableSizeBytes: 256 * 1024,
        durableAccepts: true,
      };
      const log = await ConsensusLog.open(options);
      const committed: number[] = [];
      let failure: unknown;
      for (let slot = 0; slot < 100_000 && failure === undefined; slot++) {
        try {
          await log.accept(slot, { round: 1, node: 1 }, entryBytes(slot, 1000));
          await log.commit(slot);
          committed.push(slot);
        } catch (error) {
          failure = error;
        }
      }
      assert.ok(isEnospc(failure), `expected ENOSPC, got ${failure}`);
      for (const slot of committed) {
        assert.deepEqual(log.readCommitted(slot)!.value, entryBytes(slot, 1000));
      }
      fs.rmSync(filler);
      const next = committed.length + 1000;
      await log.accept(next, { round: 1, node: 1 }, entryBytes(next, 1000));
      await log.commit(next);
      await log.close();
      const reopened = await ConsensusLog.open(options);
      for (const slot of [...committed, next]) {
        assert.deepEqual(
          reopened.readCommitted(slot)!.value,
          entryBytes(slot, 1000),
          `slot ${slot}`,
        );
      }
      await reopened.close();
    }),
  );
});
