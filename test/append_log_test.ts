import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, ClosedError, InvalidArgumentError, LockedError } from "../mod.ts";
import { recordSizeBytes } from "../src/record_format.ts";
import { entryBytes, fingerprint, tempDir } from "./_helpers.ts";

const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 8 * 1024 };

describe("AppendLog", () => {
  test("enqueue then commit makes entries readable after reopen, byte for byte", async () => {
    using dir = tempDir();
    const addresses: number[] = [];
    {
      const log = await AppendLog.open({ dir: dir.path });
      for (let i = 0; i < 100; i++) addresses.push(log.enqueue(entryBytes(i)));
      const point = await log.commit();
      assert.equal(point.commitNumber, 1);
      assert.ok(point.committedUntilAddress > addresses[99]);
      assert.equal(log.committedUntilAddress, point.committedUntilAddress);
      await log.close();
    }
    const log = await AppendLog.open({ dir: dir.path });
    for (let i = 0; i < 100; i++) assert.deepEqual(log.read(addresses[i]), entryBytes(i));
    assert.equal(log.commitNumber, 1);
    assert.equal(log.recoveredTruncatedTail, false);
    await log.close();
  });

  test("addresses increase and the caller may reuse its buffer at once", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    const buffer = new Uint8Array([1, 2, 3]);
    const first = log.enqueue(buffer);
    buffer.fill(9);
    const second = log.enqueue(buffer);
    assert.ok(second > first);
    assert.deepEqual(log.read(first), new Uint8Array([1, 2, 3]));
    assert.deepEqual(log.read(second), new Uint8Array([9, 9, 9]));
  });

  test("entries cross segment boundaries and many buffer flushes intact", async () => {
    using dir = tempDir();
    const addresses: number[] = [];
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      for (let i = 0; i < 3000; i++) addresses.push(log.enqueue(entryBytes(i)));
      await log.commit();
      assert.ok(log.stats().mappedBytes >= 5 * SMALL.segmentSizeBytes, "spans several segments");
    }
    const segments = fs.readdirSync(dir.path).filter((n) => n.startsWith("segment-"));
    assert.ok(segments.length >= 5, `expected several segment files, got ${segments.length}`);
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    let i = 0;
    for (const entry of log.scan()) {
      assert.equal(entry.address, addresses[i]);
      assert.deepEqual(entry.value, entryBytes(i));
      i++;
    }
    assert.equal(i, 3000);
  });

  test("an entry larger than the staging buffer is written directly and reads back", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL, entrySizeBytesMax: 40_000 });
    const small = log.enqueue(entryBytes(1));
    const big = log.enqueue(entryBytes(2, 30_000));
    const after = log.enqueue(entryBytes(3));
    await log.commit();
    assert.deepEqual(log.read(small), entryBytes(1));
    assert.deepEqual(log.read(big), entryBytes(2, 30_000));
    assert.deepEqual(log.read(after), entryBytes(3));
  });

  test("concurrent commits share one sync (group commit)", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    const before = log.stats();
    const commits = [];
    for (let i = 0; i < 50; i++) {
      log.enqueue(entryBytes(i));
      commits.push(log.commit());
    }
    const points = await Promise.all(commits);
    const after = log.stats();
    assert.equal(after.commits - before.commits, 1, "one commit cycle served 50 callers");
    assert.ok(points.every((p) => p.commitNumber === points[0].commitNumber));
    assert.ok(after.syncs - before.syncs <= 2);
  });

  test("the cookie of the latest commit that carried one is recovered", async () => {
    using dir = tempDir();
    {
      await using log = await AppendLog.open({ dir: dir.path });
      log.enqueue(entryBytes(1));
      await log.commit({ cookie: new Uint8Array([7, 7]) });
      log.enqueue(entryBytes(2));
      const point = await log.commit();
      assert.deepEqual(point.cookie, new Uint8Array([7, 7]));
    }
    await using log = await AppendLog.open({ dir: dir.path });
    assert.deepEqual(log.cookie, new Uint8Array([7, 7]));
    assert.equal(log.commitNumber, 2);
  });

  test("scan is exclusive of `to` and starts at `from`", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    const a = [0, 1, 2, 3].map((i) => log.enqueue(entryBytes(i)));
    await log.commit();
    const seen = [...log.scan({ from: a[1], to: a[3] })].map((e) => e.address);
    assert.deepEqual(seen, [a[1], a[2]]);
    const next = [...log.scan({ from: a[0], to: a[1] })][0].nextAddress;
    assert.equal(next, a[1]);
  });

  test("scan by default stops at the committed address", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    log.enqueue(entryBytes(0));
    await log.commit();
    log.enqueue(entryBytes(1));
    assert.equal([...log.scan()].length, 1);
    assert.equal([...log.scan({ to: log.tailAddress })].length, 2);
  });

  test("tail yields existing entries, then new commits, and ends on abort", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    log.enqueue(entryBytes(0));
    await log.commit();
    const controller = new AbortController();
    const seen: Uint8Array[] = [];
    const reader = (async () => {
      for await (const entry of log.tail({ signal: controller.signal })) {
        seen.push(entry.value.slice());
        if (seen.length === 3) controller.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(seen.length, 1, "only the committed entry so far");
    log.enqueue(entryBytes(1));
    assert.equal(seen.length, 1, "an enqueued entry is not yielded before its commit");
    await log.commit();
    log.enqueue(entryBytes(2));
    await log.commit();
    await reader;
    assert.deepEqual(seen, [entryBytes(0), entryBytes(1), entryBytes(2)]);
  });

  test("complete() commits pending entries, rejects enqueues and ends tails", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    log.enqueue(entryBytes(0));
    const tailed = (async () => {
      const values = [];
      for await (const entry of log.tail()) values.push(entry.value.slice());
      return values;
    })();
    await log.complete();
    assert.deepEqual(await tailed, [entryBytes(0)]);
    assert.throws(() => log.enqueue(entryBytes(1)), ClosedError);
  });

  test("truncateUntil hides entries at once and removes whole segments after the next commit", async () => {
    using dir = tempDir();
    const segmentsOnDisk = () => fs.readdirSync(dir.path).filter((n) => n.startsWith("segment-"));
    const addresses: number[] = [];
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      for (let i = 0; i < 2000; i++) addresses.push(log.enqueue(entryBytes(i)));
      await log.commit();
      const before = segmentsOnDisk().length;
      const view = log.readView(addresses[0])!;
      assert.equal(view.length, entryBytes(0).length);
      log.truncateUntil(addresses[1500]);
      assert.equal(log.read(addresses[10]), undefined);
      assert.equal(log.beginAddress, addresses[1500]);
      assert.equal(segmentsOnDisk().length, before, "space is freed only after the next commit");
      log.enqueue(entryBytes(2000));
      await log.commit();
      assert.ok(segmentsOnDisk().length < before, "whole segments below begin are removed");
      assert.equal(view.length, 0, "a view into a removed segment is detached, not dangling");
    }
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.equal(log.beginAddress, addresses[1500]);
    assert.equal(log.read(addresses[1499]), undefined);
    assert.deepEqual(log.read(addresses[1500]), entryBytes(1500));
    assert.equal([...log.scan()].length, 501);
  });

  test("enqueueBatch returns addresses in order and all entries read back", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    const entries = Array.from({ length: 500 }, (_, i) => entryBytes(i));
    const addresses = log.enqueueBatch(entries);
    await log.commit();
    assert.equal(addresses.length, 500);
    addresses.forEach((a, i) => assert.deepEqual(log.read(a), entries[i]));
  });

  test("tryEnqueue returns undefined rather than writing out a full buffer", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    let accepted = 0;
    while (log.tryEnqueue(entryBytes(accepted, 100)) !== undefined) accepted++;
    assert.ok(accepted > 10 && accepted < 100, `accepted ${accepted} into an 8 KiB buffer`);
    assert.equal(log.stats().flushes, 0);
    const address = log.enqueue(entryBytes(accepted, 100));
    assert.equal(log.stats().flushes, 1, "enqueue wrote the full buffer out");
    assert.deepEqual(log.read(address), entryBytes(accepted, 100));
  });

  test("by default the staging buffer holds 1 MiB before it is written out", async () => {
    // The documented default (README, AppendLogOptions.bufferSizeBytes): small enough to stay in
    // a core's L2 until its write-out, and 1 MiB per log that has written.
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    const value = entryBytes(1, 100);
    let staged = 0;
    while (log.stats().flushes === 0) {
      log.enqueue(value);
      staged++;
    }
    // The enqueue that wrote the buffer out is staged in the next one.
    const stagedBytes = (staged - 1) * recordSizeBytes(value.length);
    const MiB = 1024 * 1024;
    assert.ok(
      stagedBytes <= MiB && stagedBytes > MiB - 2 * recordSizeBytes(value.length),
      `${staged - 1} records (${stagedBytes} B) filled the default buffer`,
    );
  });

  test("a record that exactly fills the staging buffer is staged, the next size up is not", async () => {
    // A commit writes the buffer out, so the next records start a fresh 8 KiB window; a filler
    // leaves exactly `gap` bytes of it. Segments are large enough not to end in between.
    using dir = tempDir();
    const stagingBytes = 8 * 1024;
    const entries: Array<[number, Uint8Array]> = [];
    {
      await using log = await AppendLog.open({
        dir: dir.path,
        segmentSizeBytes: 1024 * 1024,
        bufferSizeBytes: stagingBytes,
      });
      for (const gap of [16, 24, 128, 1000, 4096]) {
        for (const extra of [-8, 0, 8]) {
          if (gap + extra < 16) continue;
          await log.commit();
          const filler = entryBytes(gap, stagingBytes - gap - 16);
          entries.push([log.enqueue(filler), filler]);
          const flushes = log.stats().flushes;
          const value = entryBytes(gap + extra, gap + extra - 16);
          entries.push([log.enqueue(value), value]);
          const wroteOut = log.stats().flushes - flushes;
          assert.equal(wroteOut, extra > 0 ? 1 : 0, `a ${gap + extra} B record in ${gap} B`);
        }
      }
    }
    await using log = await AppendLog.open({ dir: dir.path, segmentSizeBytes: 1024 * 1024 });
    for (const [address, value] of entries) assert.deepEqual(log.read(address), value);
  });

  test("a record that exactly fills a segment stays in it, the next size up starts the next", async () => {
    using dir = tempDir();
    const S = SMALL.segmentSizeBytes;
    const entries: Array<[number, Uint8Array]> = [];
    {
      await using log = await AppendLog.open({ dir: dir.path, segmentSizeBytes: S });
      const segmentRoom = () => (Math.floor((log.tailAddress - 1) / S) + 1) * S - log.tailAddress;
      for (const gap of [16, 24, 128, 1000]) {
        for (const extra of [-8, 0, 8]) {
          if (gap + extra < 16) continue;
          // Fill the segment in 4 KiB records to within 8 KiB of `gap`, then exactly to it.
          while (segmentRoom() > gap + 8192) {
            const filler = entryBytes(entries.length, 4096 - 16);
            entries.push([log.enqueue(filler), filler]);
          }
          await log.commit();
          const filler = entryBytes(entries.length, segmentRoom() - gap - 16);
          entries.push([log.enqueue(filler), filler]);
          assert.equal(segmentRoom(), gap);
          const tail = log.tailAddress;
          const value = entryBytes(gap + extra, gap + extra - 16);
          const address = log.enqueue(value);
          entries.push([address, value]);
          const nextSegment = tail + gap + 64; // the next segment's first record, past its header
          assert.equal(address, extra > 0 ? nextSegment : tail, `a ${gap + extra} B record`);
        }
      }
    }
    await using log = await AppendLog.open({ dir: dir.path, segmentSizeBytes: S });
    for (const [address, value] of entries) assert.deepEqual(log.read(address), value);
  });

  test("waitForCommit resolves only after another caller commits", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    const address = log.enqueue(entryBytes(0));
    let done = false;
    const waiting = log.waitForCommit(address).then(() => (done = true));
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(done, false);
    await log.commit();
    await waiting;
    assert.equal(done, true);
    assert.equal(await log.enqueueAndWaitForCommit(entryBytes(1)) > address, true);
  });

  test("a second open of the same directory fails with ERR_LOCKED", async () => {
    using dir = tempDir();
    const log = await AppendLog.open({ dir: dir.path });
    await assert.rejects(AppendLog.open({ dir: dir.path }), (error: unknown) => {
      assert.ok(error instanceof LockedError);
      assert.equal(error.code, "ERR_LOCKED");
      return true;
    });
    await log.close();
    const again = await AppendLog.open({ dir: dir.path });
    await again.close();
  });

  test("bad input gets a typed error and changes nothing on disk", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL, entrySizeBytesMax: 1000 });
    const a = log.enqueue(entryBytes(0));
    await log.commit();
    const before = fingerprint(dir.path);
    const invalid = (fn: () => unknown) =>
      assert.throws(
        fn,
        (e: unknown) => e instanceof InvalidArgumentError && e.code === "ERR_INVALID_ARGUMENT",
      );
    invalid(() => log.enqueue("text" as unknown as Uint8Array));
    invalid(() => log.enqueue([1, 2] as unknown as Uint8Array));
    invalid(() => log.enqueue(new Uint8Array(1001)));
    invalid(() => log.enqueueBatch([new Uint8Array(1), new Uint8Array(1001)]));
    invalid(() => log.read(-1));
    invalid(() => log.read(1.5));
    invalid(() => log.read(2 ** 53));
    invalid(() => log.read(a + 8));
    invalid(() => log.truncateUntil(-5));
    invalid(() => log.truncateUntil(log.tailAddress + 800));
    await assert.rejects(log.commit({ cookie: new Uint8Array(5000) }), InvalidArgumentError);
    await assert.rejects(
      AppendLog.open({ dir: dir.path, durability: "sometimes" as "data" }),
      InvalidArgumentError,
    );
    await assert.rejects(
      AppendLog.open({ dir: join(dir.path, "x"), segmentSizeBytes: 100_000 }),
      InvalidArgumentError,
    );
    assert.equal(fingerprint(dir.path), before);
    assert.deepEqual(log.read(a), entryBytes(0));
  });

  test("a closed log rejects every operation with ERR_CLOSED and close is idempotent", async () => {
    using dir = tempDir();
    const log = await AppendLog.open({ dir: dir.path });
    const a = log.enqueue(entryBytes(0));
    await log.close();
    await log.close();
    const closed = (e: unknown) => e instanceof ClosedError && e.code === "ERR_CLOSED";
    assert.throws(() => log.enqueue(entryBytes(1)), closed);
    assert.throws(() => log.read(a), closed);
    assert.throws(() => [...log.scan()], closed);
    await assert.rejects(log.commit(), closed);
  });

  test("close commits what was enqueued", async () => {
    using dir = tempDir();
    let address: number;
    {
      const log = await AppendLog.open({ dir: dir.path });
      address = log.enqueue(entryBytes(5));
      await log.close();
    }
    await using log = await AppendLog.open({ dir: dir.path });
    assert.deepEqual(log.read(address), entryBytes(5));
  });

  test("writing into a zero-copy view neither crashes nor changes the log on disk", async () => {
    using dir = tempDir();
    let address: number;
    {
      await using log = await AppendLog.open({ dir: dir.path });
      address = log.enqueue(entryBytes(3));
      await log.commit();
      const view = log.readView(address)!;
      const before = fingerprint(dir.path);
      view.fill(0);
      assert.equal(fingerprint(dir.path), before);
    }
    await using log = await AppendLog.open({ dir: dir.path });
    assert.deepEqual(log.read(address), entryBytes(3));
  });

  test("commits sync off the JS thread: timers fire while a large commit is in flight", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, entrySizeBytesMax: 1 << 20 });
    for (let i = 0; i < 48; i++) log.enqueue(entryBytes(i, 1 << 20));
    const order: string[] = [];
    const commit = log.commit().then(() => order.push("commit"));
    const timer = new Promise((r) => setTimeout(r, 0)).then(() => order.push("timer"));
    await Promise.all([commit, timer]);
    assert.deepEqual(order, ["timer", "commit"]);
  });

  test("entries below beginAddress and at or past tailAddress read as undefined", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    assert.equal(log.read(0), undefined);
    assert.equal(log.read(log.tailAddress), undefined);
    assert.equal(log.read(log.tailAddress + 1024), undefined);
  });

  test("files are 0600 and the directory 0700 whatever the umask", async () => {
    using dir = tempDir();
    const path = join(dir.path, "nested", "log");
    const previous = process.umask(0);
    try {
      await using log = await AppendLog.open({ dir: path });
      log.enqueue(entryBytes(0));
      await log.commit();
    } finally {
      process.umask(previous);
    }
    assert.equal(fs.statSync(path).mode & 0o777, 0o700);
    for (const name of fs.readdirSync(path)) {
      assert.equal(fs.statSync(join(path, name)).mode & 0o777, 0o600, name);
    }
  });

  for (const durability of ["none", "data", "full"] as const) {
    test(`durability "${durability}" commits and reopens`, async () => {
      using dir = tempDir();
      let address: number;
      {
        await using log = await AppendLog.open({ dir: dir.path, durability });
        assert.equal(log.durability, durability);
        address = log.enqueue(entryBytes(9));
        await log.commit();
      }
      await using log = await AppendLog.open({ dir: dir.path, durability });
      assert.deepEqual(log.read(address), entryBytes(9));
    });
  }
});
