import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  ConsensusLog,
  CorruptionError,
  InvalidArgumentError,
  recover,
  SnapshotStore,
} from "../mod.ts";
import { entryBytes, tempDir } from "./_helpers.ts";

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const part of stream) parts.push(part);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all;
}

async function* generated(count: number, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < count; i++) yield entryBytes(i, size);
}

function streamOf(chunks: AsyncGenerator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await chunks.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
  });
}

function joined(count: number, size: number): Uint8Array {
  const all = new Uint8Array(count * size);
  for (let i = 0; i < count; i++) all.set(entryBytes(i, size), i * size);
  return all;
}

describe("SnapshotStore", () => {
  test("create from bytes, a ReadableStream or an AsyncIterable; read back by streaming", async () => {
    using dir = tempDir();
    await using store = await SnapshotStore.open({ dir: dir.path });
    await store.create(10, entryBytes(10, 5000));
    await store.create(20, streamOf(generated(40, 3000)));
    const info = await store.create(30, generated(300, 10_000));
    assert.equal(info.sizeBytes, 3_000_000);
    assert.deepEqual(await readAll(store.open(10)), entryBytes(10, 5000));
    assert.deepEqual(await readAll(store.open(20)), joined(40, 3000));
    assert.deepEqual(await readAll(store.open(30)), joined(300, 10_000));
    assert.equal((await store.latest())!.slot, 30);
    assert.deepEqual((await store.list()).map((s) => s.slot), [30, 20, 10]);
    assert.equal(await store.get(11), undefined);
  });

  test("a damaged latest snapshot is reported and skipped for the previous valid one", async () => {
    using dir = tempDir();
    {
      await using store = await SnapshotStore.open({ dir: dir.path });
      await store.create(1, entryBytes(1, 4096));
      await store.create(2, entryBytes(2, 4096));
      await store.create(3, entryBytes(3, 4096));
    }
    const damage = (slot: number, offset: number) => {
      const path = join(dir.path, `snapshot-${String(slot).padStart(16, "0")}.snap`);
      const bytes = fs.readFileSync(path);
      bytes[offset] ^= 0x40;
      fs.writeFileSync(path, bytes);
    };
    damage(3, 64 + 1000); // a data byte
    damage(2, 20); // a header byte
    await using store = await SnapshotStore.open({ dir: dir.path });
    assert.equal((await store.latest())!.slot, 1);
    assert.equal(store.problems.length, 2);
    assert.match(store.problems.map((p) => p.reason).join(" "), /data checksum mismatch/);
    await assert.rejects(readAll(store.open(3)), CorruptionError);
    assert.deepEqual((await store.list()).map((s) => s.slot), [1]);
  });

  test("a truncated snapshot and leftover temp files are ignored", async () => {
    using dir = tempDir();
    {
      await using store = await SnapshotStore.open({ dir: dir.path });
      await store.create(5, entryBytes(5, 10_000));
      await store.create(6, entryBytes(6, 10_000));
    }
    fs.truncateSync(join(dir.path, "snapshot-0000000000000006.snap"), 5000);
    fs.writeFileSync(join(dir.path, "snapshot-0000000000000007.snap.tmp"), "half");
    await using store = await SnapshotStore.open({ dir: dir.path });
    assert.equal((await store.latest())!.slot, 5);
    assert.ok(!fs.existsSync(join(dir.path, "snapshot-0000000000000007.snap.tmp")));
  });

  test("prune keeps the newest valid snapshots and removes damaged ones", async () => {
    using dir = tempDir();
    await using store = await SnapshotStore.open({ dir: dir.path });
    for (const slot of [1, 2, 3, 4]) await store.create(slot, entryBytes(slot, 100));
    const removed = await store.prune({ keep: 2 });
    assert.equal(removed, 2);
    assert.deepEqual((await store.list()).map((s) => s.slot), [4, 3]);
  });

  test("bad input is refused before anything is written", async () => {
    using dir = tempDir();
    await using store = await SnapshotStore.open({ dir: dir.path });
    await assert.rejects(store.create(-1, new Uint8Array(1)), InvalidArgumentError);
    await assert.rejects(store.create(1, "text" as unknown as Uint8Array), InvalidArgumentError);
    async function* notBytes() {
      yield new Uint8Array(10);
      yield "not bytes" as unknown as Uint8Array;
    }
    await assert.rejects(store.create(1, notBytes()), InvalidArgumentError);
    assert.deepEqual(fs.readdirSync(dir.path).filter((n) => n.startsWith("snapshot-")), []);
    assert.equal(await store.latest(), undefined);
  });

  test("recover restores the latest snapshot and replays committed entries after it in slot order", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({
      dir: join(dir.path, "log"),
      segmentSizeBytes: 64 * 1024,
    });
    await using snapshots = await SnapshotStore.open({ dir: join(dir.path, "snapshots") });
    for (let slot = 0; slot < 100; slot++) {
      log.accept(slot, { round: 1, node: 0 }, entryBytes(slot));
    }
    await log.commitMany(Array.from({ length: 100 }, (_, i) => 99 - i));
    await snapshots.create(49, new TextEncoder().encode("state through 49"));
    await log.truncatePrefix(49);
    const seen: number[] = [];
    let restored = "";
    const result = await recover({
      log,
      snapshots,
      onSnapshot: async (_info, data) => {
        restored = new TextDecoder().decode(await readAll(data));
      },
      onEntry: (entry) => void seen.push(entry.slot),
    });
    assert.equal(restored, "state through 49");
    assert.deepEqual(result, { snapshotSlot: 49, entriesReplayed: 50 });
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => 50 + i));
  });
});
