import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, CorruptionError, InvalidArgumentError } from "../mod.ts";
import { decodeCheckpoint } from "../src/checkpoint.ts";
import { CHECKPOINT_SLOT_BYTES } from "../src/constants.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { fsDevice } from "../src/fs_device.ts";
import {
  crashImage,
  entryBytes,
  fingerprint,
  flipByte,
  seededRandom,
  tempDir,
} from "./_helpers.ts";

const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 8 * 1024 };
const SEGMENT_0 = "segment-000000000000.hlog";

describe("recovery", () => {
  test("a crash image reopens with every committed entry", async () => {
    using dir = tempDir();
    const image = join(dir.path, "image");
    const groups = await crashImage(join(dir.path, "log"), image, 3, SMALL);
    await using log = await AppendLog.open({ dir: image, ...SMALL });
    assert.equal(log.commitNumber, 3);
    groups.flat().forEach((address, i) => assert.deepEqual(log.read(address), entryBytes(i)));
  });

  test("a torn last commit is cut off, zeroed, and the log keeps working", async () => {
    using dir = tempDir();
    const image = join(dir.path, "image");
    const groups = await crashImage(join(dir.path, "log"), image, 3, SMALL);
    // Damage an entry of the last commit group: as if its write had torn before the sync ended.
    flipByte(join(image, SEGMENT_0), groups[2][5] % SMALL.segmentSizeBytes + 20);
    {
      await using log = await AppendLog.open({ dir: image, ...SMALL });
      assert.equal(log.recoveredTruncatedTail, true);
      assert.equal(log.commitNumber, 2);
      assert.equal(log.tailAddress, groups[2][0], "tail is right after commit marker 2");
      groups.slice(0, 2).flat().forEach((a, i) => assert.deepEqual(log.read(a), entryBytes(i)));
      assert.equal(log.read(groups[2][5]), undefined);
      const bytes = fs.readFileSync(join(image, SEGMENT_0));
      const tail = log.tailAddress;
      assert.ok(bytes.subarray(tail, tail + 4096).every((b) => b === 0), "the torn tail is zeroed");
      const next = log.enqueue(entryBytes(999));
      await log.commit();
      assert.deepEqual(log.read(next), entryBytes(999));
    }
    await using log = await AppendLog.open({ dir: image, ...SMALL });
    assert.equal(log.recoveredTruncatedTail, false);
    assert.equal(log.commitNumber, 3);
  });

  test("damage that a later durable commit proves was acknowledged fails the open, naming file and address", async () => {
    using dir = tempDir();
    const image = join(dir.path, "image");
    const groups = await crashImage(join(dir.path, "log"), image, 4, SMALL);
    const damaged = groups[0][3];
    flipByte(join(image, SEGMENT_0), damaged + 20);
    await assert.rejects(AppendLog.open({ dir: image, ...SMALL }), (error: unknown) => {
      assert.ok(error instanceof CorruptionError, String(error));
      assert.equal(error.code, "ERR_CORRUPT");
      assert.equal(error.address, damaged);
      assert.ok(error.path.endsWith(SEGMENT_0));
      assert.match(error.message, new RegExp(`address ${damaged}`));
      return true;
    });
  });

  test("damage before the checkpoint is reported on read and scan, never served", async () => {
    using dir = tempDir();
    const addresses: number[] = [];
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      for (let i = 0; i < 50; i++) addresses.push(log.enqueue(entryBytes(i)));
      await log.commit();
    }
    flipByte(join(dir.path, SEGMENT_0), addresses[10] + 16 + 3);
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.throws(() => log.read(addresses[10]), (e: unknown) => {
      assert.ok(e instanceof CorruptionError);
      assert.equal(e.address, addresses[10]);
      return true;
    });
    assert.deepEqual(log.read(addresses[11]), entryBytes(11));
    assert.throws(() => [...log.scan()], CorruptionError);
  });

  test("random single-byte corruption is detected by a scan or is harmless, never wrong bytes", async () => {
    for (let seed = 1; seed <= 25; seed++) {
      using dir = tempDir();
      const random = seededRandom(seed);
      const addresses: number[] = [];
      let until: number;
      {
        await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
        for (let i = 0; i < 200; i++) addresses.push(log.enqueue(entryBytes(i)));
        until = (await log.commit()).committedUntilAddress;
      }
      const offset = 64 + Math.floor(random() * (until - 64));
      flipByte(join(dir.path, SEGMENT_0), offset);
      const hit = addresses.findIndex((a, i) =>
        offset >= a && offset < a + 16 + entryBytes(i).length
      );
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      for (let i = 0; i < addresses.length; i++) {
        let value: Uint8Array | undefined;
        try {
          value = log.read(addresses[i]);
        } catch (error) {
          // A damaged address field reads as "no entry starts there" (InvalidArgumentError).
          const typed = error instanceof CorruptionError || error instanceof InvalidArgumentError;
          assert.ok(typed, `seed ${seed}: ${error}`);
          assert.equal(i, hit, `seed ${seed}: only the damaged entry fails`);
          continue;
        }
        assert.deepEqual(value, entryBytes(i), `seed ${seed}: entry ${i} read back exactly`);
        assert.notEqual(i, hit, `seed ${seed}: a damaged entry must not read`);
      }
      let scanFailed = false;
      try {
        for (const entry of log.scan()) {
          const i = addresses.indexOf(entry.address);
          assert.deepEqual(entry.value, entryBytes(i), `seed ${seed}: scan served exact bytes`);
        }
      } catch (error) {
        assert.ok(error instanceof CorruptionError, `seed ${seed}: ${error}`);
        scanFailed = true;
      }
      if (hit >= 0) assert.ok(scanFailed, `seed ${seed}: the scan detected damage in entry ${hit}`);
    }
  });

  test("a segment of another log is rejected", async () => {
    using dir = tempDir();
    const a = join(dir.path, "a");
    const b = join(dir.path, "b");
    for (const path of [a, b]) {
      await using log = await AppendLog.open({ dir: path, ...SMALL });
      log.enqueue(entryBytes(1));
      await log.commit();
    }
    fs.copyFileSync(join(b, SEGMENT_0), join(a, SEGMENT_0));
    await assert.rejects(AppendLog.open({ dir: a, ...SMALL }), (e: unknown) => {
      assert.ok(e instanceof CorruptionError);
      assert.match(e.message, /belongs to log/);
      return true;
    });
  });

  test("a torn checkpoint slot falls back to the other; two bad slots are corruption", async () => {
    using dir = tempDir();
    let address: number;
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      address = log.enqueue(entryBytes(1));
      await log.commit();
    }
    const checkpoint = join(dir.path, "checkpoint");
    const slots = () => {
      const bytes = fs.readFileSync(checkpoint);
      return [0, 1].map((i) => decodeCheckpoint(bytes.subarray(i * 4096, (i + 1) * 4096)));
    };
    const [first, second] = slots();
    assert.ok(first && second, "both slots hold a checkpoint");
    const newest = first.checkpointNumber > second.checkpointNumber ? 0 : 1;
    flipByte(checkpoint, newest * 4096 + 30); // tear the newest slot
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      assert.deepEqual(log.read(address), entryBytes(1), "rescanned from the older slot");
    }
    flipByte(checkpoint, 40); // now damage both
    flipByte(checkpoint, 4096 + 40);
    assert.deepEqual(slots(), [undefined, undefined]);
    await assert.rejects(AppendLog.open({ dir: dir.path, ...SMALL }), CorruptionError);
  });

  test("a truncated segment file below the commit point is corruption", async () => {
    using dir = tempDir();
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      log.enqueue(entryBytes(1));
      await log.commit();
    }
    fs.truncateSync(join(dir.path, SEGMENT_0), 1000);
    await assert.rejects(AppendLog.open({ dir: dir.path, ...SMALL }), CorruptionError);
  });

  test("segments missing their checkpoint are corruption, not a new log", async () => {
    using dir = tempDir();
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
      log.enqueue(entryBytes(1));
      await log.commit();
    }
    fs.rmSync(join(dir.path, "checkpoint"));
    await assert.rejects(AppendLog.open({ dir: dir.path, ...SMALL }), CorruptionError);
  });
});

describe("recovery and the entry size limit", () => {
  test("reopening with a smaller entrySizeBytesMax after a crash keeps larger committed entries", async () => {
    using dir = tempDir();
    const source = join(dir.path, "log");
    const image = join(dir.path, "image");
    let big: number;
    {
      const log = await AppendLog.open({ dir: source, ...SMALL, entrySizeBytesMax: 40_000 });
      log.enqueue(entryBytes(1));
      await log.commit();
      big = log.enqueue(entryBytes(2, 30_000));
      await log.commit(); // the last commit holds the large entry
      fs.cpSync(source, image, { recursive: true }); // crash now
      await log.close();
    }
    await using log = await AppendLog.open({ dir: image, ...SMALL, entrySizeBytesMax: 4096 });
    assert.equal(log.commitNumber, 2, "the acknowledged commit was not cut off");
    assert.deepEqual(log.read(big), entryBytes(2, 30_000));
    assert.throws(
      () => log.enqueue(entryBytes(3, 5000)),
      InvalidArgumentError,
      "new writes obey the new limit",
    );
  });
});

describe("reopening a cleanly closed log", () => {
  /** A closed log of `count` entries over several segments; returns the entries' addresses. */
  async function cleanLog(dir: string, count = 1500): Promise<number[]> {
    const log = await AppendLog.open({ dir, ...SMALL });
    const addresses = Array.from({ length: count }, (_, i) => log.enqueue(entryBytes(i)));
    await log.commit();
    await log.close();
    return addresses;
  }

  /** The newest valid checkpoint slot of `dir`. */
  function newestCheckpoint(dir: string) {
    const bytes = fs.readFileSync(join(dir, "checkpoint"));
    const slots = [0, 1].map((i) =>
      decodeCheckpoint(bytes.subarray(i * CHECKPOINT_SLOT_BYTES, (i + 1) * CHECKPOINT_SLOT_BYTES))
    ).filter((slot) => slot !== undefined);
    return slots.reduce((a, b) => (b.checkpointNumber > a.checkpointNumber ? b : a));
  }

  test("open, read and close write and sync nothing: the directory stays byte-identical", async () => {
    using dir = tempDir();
    const addresses = await cleanLog(dir.path);
    const before = fingerprint(dir.path);
    const device = new FaultyDevice(fsDevice);
    for (const durability of ["data", "full", "none"] as const) {
      const log = await AppendLog.open({ dir: dir.path, ...SMALL, device, durability });
      assert.deepEqual(log.read(addresses[0]), entryBytes(0));
      assert.deepEqual(log.read(addresses.at(-1)!), entryBytes(addresses.length - 1));
      await log.close();
    }
    const calls = device.callLog.map((call) => `${call.kind} ${call.path}`);
    assert.deepEqual(calls, [], "no write, sync, create, rename or remove");
    assert.equal(fingerprint(dir.path), before);
  });

  test("segments are mapped by the first read that needs a mapping, which returns the right bytes", async () => {
    using dir = tempDir();
    const addresses = await cleanLog(dir.path);
    const S = SMALL.segmentSizeBytes;
    const last = addresses.length - 1;
    assert.ok(addresses[last] >= 3 * S, "the log spans several segments");
    const log = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.equal(log.stats().mappedBytes, 0, "nothing is mapped at open");
    const view = log.readView(addresses[0])!;
    assert.deepEqual(view, entryBytes(0));
    assert.equal(log.stats().mappedBytes, S, "the first read mapped one segment");
    assert.deepEqual(log.read(addresses[last]), entryBytes(last));
    assert.equal(log.stats().mappedBytes, S, "a copying read of another segment used pread");
    assert.deepEqual(log.readView(addresses[last]), entryBytes(last));
    assert.equal(log.stats().mappedBytes, 2 * S, "a view needs the mapping");
    const entries = [...log.scan()];
    assert.equal(entries.length, addresses.length);
    entries.forEach((entry, i) => assert.deepEqual(entry.value, entryBytes(i)));
    await log.close();
    assert.equal(view.length, 0, "a view of a lazily mapped segment is detached at close");
    assert.equal(entries[0].value.length, 0);
  });

  test("a log closed before any read closes without mapping, and reopens with every entry", async () => {
    using dir = tempDir();
    const addresses = await cleanLog(dir.path);
    for (let round = 0; round < 3; round++) {
      const log = await AppendLog.open({ dir: dir.path, ...SMALL });
      await log.close();
    }
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    addresses.forEach((address, i) => assert.deepEqual(log.read(address), entryBytes(i)));
  });

  test("the first write after a clean open first rewrites the checkpoint as unclean, synced", async () => {
    using dir = tempDir();
    const addresses = await cleanLog(dir.path);
    assert.equal(newestCheckpoint(dir.path).clean, true);
    const device = new FaultyDevice(fsDevice);
    const log = await AppendLog.open({ dir: dir.path, ...SMALL, device });
    assert.equal(device.callLog.length, 0);
    const next = log.enqueue(entryBytes(addresses.length));
    await log.commit();
    const calls = device.callLog.map((call) => `${call.kind} ${call.path.slice(dir.path.length)}`);
    assert.deepEqual(calls.slice(0, 3), [
      "write /checkpoint",
      "syncNow /checkpoint",
      "write /" +
      `segment-00000000000${Math.floor(next / SMALL.segmentSizeBytes)}.hlog`,
    ]);
    assert.equal(newestCheckpoint(dir.path).clean, false, "unclean until the next close");
    // A crash now: recovery scans from that checkpoint and keeps the acknowledged entry.
    const image = join(dir.path, "..", `${dir.path.split("/").at(-1)}-image`);
    fs.cpSync(dir.path, image, { recursive: true });
    try {
      await using reopened = await AppendLog.open({ dir: image, ...SMALL });
      assert.deepEqual(reopened.read(next), entryBytes(addresses.length));
      assert.equal(reopened.tailAddress, log.tailAddress);
    } finally {
      fs.rmSync(image, { recursive: true, force: true });
    }
    await log.close();
    assert.equal(newestCheckpoint(dir.path).clean, true);
  });
});
