import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { ClosedError, InvalidArgumentError, LeaseLeakError, LogManager } from "../mod.ts";
import { entryBytes, tempDir } from "./_helpers.ts";

const SMALL = { segmentSizeBytes: 64 * 1024, mutableSizeBytes: 64 * 1024 };
const b = { round: 1, node: 1 };

describe("LogManager", () => {
  test("acquire opens a log on first use and a lease keeps it; data survives a new manager", async () => {
    using dir = tempDir();
    {
      const manager = new LogManager({ dir: dir.path, ...SMALL });
      {
        await using lease = await manager.acquire("table:users");
        lease.log.accept(1, b, entryBytes(1));
        await lease.log.commit(1);
        const again = await manager.acquire("table:users");
        assert.equal(again.log, lease.log, "the same open log is shared");
        assert.equal(manager.stats().liveLeases, 2);
        again.release();
        again.release();
        assert.equal(manager.stats().liveLeases, 1, "releasing twice is harmless");
      }
      assert.equal(manager.stats().liveLeases, 0);
      await manager.closeAll({ timeoutMs: 1000 });
    }
    const manager = new LogManager({ dir: dir.path, ...SMALL });
    await using lease = await manager.acquire("table:users");
    assert.deepEqual(lease.log.readCommitted(1)!.value, entryBytes(1));
    lease.release();
    await manager.closeAll();
  });

  test("idle logs are evicted least recently used first; leased logs never are", async () => {
    using dir = tempDir();
    const manager = new LogManager({ dir: dir.path, ...SMALL, logCountMax: 3 });
    const held = await manager.acquire("held");
    for (const name of ["a", "b", "c", "d", "e"]) {
      const lease = await manager.acquire(name);
      lease.log.accept(1, b, entryBytes(name.charCodeAt(0)));
      await lease.log.commit(1);
      lease.release();
    }
    await new Promise((r) => setTimeout(r, 10));
    const stats = manager.stats();
    assert.ok(stats.openLogs <= 3, `open logs ${stats.openLogs}`);
    assert.ok(stats.evictions >= 3, `evictions ${stats.evictions}`);
    held.log.accept(1, b, entryBytes(1)); // still open: not evicted while leased
    await held.log.commit(1);
    held.release();
    const lease = await manager.acquire("a"); // reopened after eviction, data intact
    assert.deepEqual(lease.log.readCommitted(1)!.value, entryBytes("a".charCodeAt(0)));
    lease.release();
    await manager.closeAll();
  });

  test("mapped bytes over mappedBytesMax evict idle logs", async () => {
    using dir = tempDir();
    const manager = new LogManager({ dir: dir.path, ...SMALL, mappedBytesMax: 3 * 64 * 1024 });
    for (let i = 0; i < 6; i++) (await manager.acquire(`log ${i}`)).release();
    await new Promise((r) => setTimeout(r, 10));
    assert.ok(
      manager.stats().mappedBytes <= 3 * 64 * 1024,
      `mapped ${manager.stats().mappedBytes}`,
    );
    assert.ok(manager.stats().evictions >= 3);
    await manager.closeAll();
  });

  test("closeAll waits for leases to drain, then reports the names that leak", async () => {
    using dir = tempDir();
    const manager = new LogManager({ dir: dir.path, ...SMALL });
    const released = await manager.acquire("released soon");
    const leaked = await manager.acquire("leaked");
    setTimeout(() => released.release(), 20);
    await assert.rejects(manager.closeAll({ timeoutMs: 100 }), (e: unknown) => {
      assert.ok(e instanceof LeaseLeakError);
      assert.equal(e.code, "ERR_LEASED");
      assert.deepEqual(e.names, ["leaked"]);
      assert.match(e.message, /"leaked"/);
      return true;
    });
    await assert.rejects(manager.acquire("new"), ClosedError);
    leaked.release();
  });

  test("1,000 distinct names, hostile ones included, stay inside dir and list back exactly", {
    timeout: 120_000,
  }, async () => {
    using dir = tempDir();
    const hostile = [
      "../../etc/passwd",
      "/absolute",
      "..",
      ".",
      "a/b/c",
      "nul\0byte",
      "emoji 🦀🔥",
      "back\\slash",
      " ",
      "x".repeat(1024),
      "\u202eright-to-left",
    ];
    const names: Array<string | Uint8Array> = [...hostile];
    for (let i = names.length; i < 995; i++) names.push(`table:${i}`);
    names.push(new Uint8Array([0]), new Uint8Array([47, 46, 46]), new Uint8Array(1024).fill(255));
    names.push(new TextEncoder().encode("table:1")); // bytes of a string name: a different log
    names.push(new Uint8Array([1, 2, 3]));
    assert.equal(names.length, 1000);
    // Durability "none": this test is about names, and 1,000 logs × ~10 fsyncs would take minutes.
    const manager = new LogManager({
      dir: join(dir.path, "logs"),
      ...SMALL,
      logCountMax: 64,
      durability: "none",
    });
    for (const name of names) {
      const lease = await manager.acquire(name);
      lease.release();
    }
    await manager.closeAll();
    const entries = fs.readdirSync(join(dir.path, "logs"));
    assert.equal(entries.length, 1000, "one directory per name, all inside dir");
    assert.ok(entries.every((e) => /^log-[0-9a-f]{32}$/.test(e)));
    assert.deepEqual(fs.readdirSync(dir.path), ["logs"], "nothing was created beside dir");
    const listed = new LogManager({ dir: join(dir.path, "logs") }).names();
    const key = (n: string | Uint8Array) =>
      typeof n === "string" ? `s:${n}` : `b:${Array.from(n).join(",")}`;
    assert.deepEqual(new Set(listed.map(key)), new Set(names.map(key)));
  });

  test("bad names get a typed error and create nothing", async () => {
    using dir = tempDir();
    const manager = new LogManager({ dir: dir.path, ...SMALL });
    for (const bad of ["", new Uint8Array(0), "x".repeat(1025), 42, null, { name: "x" }]) {
      await assert.rejects(manager.acquire(bad as string), InvalidArgumentError);
    }
    assert.deepEqual(fs.readdirSync(dir.path), []);
    await manager.closeAll();
  });

  test("a symlink planted where a log directory belongs is refused", async () => {
    using dir = tempDir();
    const manager = new LogManager({ dir: join(dir.path, "logs"), ...SMALL });
    (await manager.acquire("victim")).release();
    await manager.closeAll();
    const [child] = fs.readdirSync(join(dir.path, "logs"));
    const outside = join(dir.path, "outside");
    fs.mkdirSync(outside);
    fs.rmSync(join(dir.path, "logs", child), { recursive: true });
    fs.symlinkSync(outside, join(dir.path, "logs", child));
    const again = new LogManager({ dir: join(dir.path, "logs"), ...SMALL });
    await assert.rejects(again.acquire("victim"), InvalidArgumentError);
    assert.deepEqual(fs.readdirSync(outside), [], "nothing written through the link");
    await again.closeAll();
  });
});
