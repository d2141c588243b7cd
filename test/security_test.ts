import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, ConsensusLog, LogManager, SnapshotStore } from "../mod.ts";
import { entryBytes, tempDir } from "./_helpers.ts";

function walk(dir: string): string[] {
  return fs.readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return fs.statSync(path).isDirectory() ? [path, ...walk(path)] : [path];
  });
}

describe("security", () => {
  test("files of an open log are not inherited by child processes (close-on-exec)", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, durableAccepts: true });
    await log.accept(1, { round: 1, node: 1 }, entryBytes(1));
    await log.commit(1);
    await log.promise({ round: 2, node: 1 });
    // Read through a child: Deno refuses in-process reads of /proc/self without --allow-all.
    const fdsOf = (pid: string) =>
      execFileSync("sh", ["-c", `for f in /proc/${pid}/fd/*; do readlink $f; done; true`])
        .toString().split("\n");
    const ownFds = fdsOf(String(process.pid));
    assert.ok(ownFds.some((target) => target.startsWith(dir.path)), "this process holds log files");
    const inherited = fdsOf("self").filter((target) => target.startsWith(dir.path));
    assert.deepEqual(inherited, []);
  });

  test("every directory is 0700 and every file 0600 whatever the umask", async () => {
    using dir = tempDir();
    const previous = process.umask(0);
    try {
      {
        await using log = await AppendLog.open({ dir: join(dir.path, "append") });
        log.enqueue(entryBytes(1));
        await log.commit({ cookie: new Uint8Array([1]) });
      }
      {
        await using log = await ConsensusLog.open({
          dir: join(dir.path, "consensus"),
          durableAccepts: true,
        });
        await log.accept(1, { round: 1, node: 1 }, entryBytes(1));
        await log.promise({ round: 3, node: 1 });
        await log.commit(1);
      }
      const manager = new LogManager({
        dir: join(dir.path, "managed"),
        segmentSizeBytes: 64 * 1024,
      });
      (await manager.acquire("a/../b")).release();
      await manager.closeAll();
      await using snapshots = await SnapshotStore.open({ dir: join(dir.path, "snapshots") });
      await snapshots.create(1, entryBytes(1));
    } finally {
      process.umask(previous);
    }
    const paths = walk(dir.path);
    assert.ok(paths.length > 15, `checked ${paths.length} paths`);
    for (const path of paths) {
      const mode = fs.statSync(path).mode & 0o777;
      if (fs.statSync(path).isDirectory()) assert.equal(mode, 0o700, path);
      else assert.equal(mode, 0o600, path);
    }
  });
});
