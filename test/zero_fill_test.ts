/**
 * `zeroFillSegments`: each new segment is made from a spare file that was written with zeros and
 * synced off the JS thread, then renamed into place with its header. Power-loss cycles with the
 * option are in power_loss_test.ts.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, ConsensusLog, LogManager } from "../mod.ts";
import type { Device, DeviceFile } from "../src/device.ts";
import { IoError } from "../src/errors.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { segmentFileName } from "../src/segment_format.ts";
import { SPARE_FILE_NAME, SPARE_READY_FILE_NAME } from "../src/spare_segment.ts";
import { assertBooleanOptionRefused, entryBytes, tempDir } from "./_helpers.ts";
import { forwardingFile, WrappingDevice } from "./_wrapping_device.ts";

const SEGMENT = 64 * 1024;
const SMALL = { segmentSizeBytes: SEGMENT, bufferSizeBytes: 16 * 1024 };

/** Waits (up to 10 s) until `ready()` holds. */
async function until(ready: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 2));
  }
}

/** Opens the log at "/log" on `device` with 64 KiB segments. */
function openOn(device: Device, zeroFillSegments = true): Promise<AppendLog> {
  return AppendLog.open({ dir: "/log", ...SMALL, device, zeroFillSegments });
}

/** Copies of every committed entry, in order. */
const entriesOf = (log: AppendLog) => [...log.scan()].map((entry) => entry.value.slice());

/**
 * `rounds` times: waits for a ready spare, then commits 40 entries of 2000 B (more than a 64 KiB
 * segment holds, so each round rolls over once), appending them to `written`.
 */
async function commitRounds(log: AppendLog, written: Uint8Array[], rounds: number, first = 0) {
  for (let round = first; round < first + rounds; round++) {
    await until(() => log.stats().zeroFillPrepared > log.stats().zeroFillInstalled, "a spare");
    for (let i = 0; i < 40; i++) {
      const entry = entryBytes(round * 100 + i, 2000);
      written.push(entry);
      log.enqueue(entry);
    }
    await log.commit();
  }
}

/** Records, per path, the byte ranges written with `writeAsync` and the calls in order. */
class RecordingDevice extends WrappingDevice {
  readonly events: string[] = [];
  readonly filled = new Map<string, Array<[number, number]>>();
  failFill = false;

  constructor(inner = new MemoryDevice({ fileSizeBytesMax: 1 << 20 })) {
    super("recording", inner);
  }

  override rename(from: string, to: string): void {
    this.events.push(`rename ${from} ${to}`);
    super.rename(from, to);
  }

  protected override wrapFile(file: DeviceFile): DeviceFile {
    return forwardingFile(file, {
      writeAsync: async (bytes, position) => {
        if (this.failFill) throw new IoError("write", "EIO", file.path);
        await file.writeAsync(bytes, position);
        const ranges = this.filled.get(file.path) ?? [];
        ranges.push([position, position + bytes.length]);
        this.filled.set(file.path, ranges);
        this.events.push(`fill ${file.path}`);
      },
      sync: async (mode) => {
        await file.sync(mode);
        this.events.push(`sync ${file.path}`);
      },
      syncNow: (mode) => {
        file.syncNow(mode);
        this.events.push(`syncNow ${file.path}`);
      },
    });
  }
}

describe("zeroFillSegments", () => {
  test("every segment, the first included, is a spare filled with zeros and synced before its rename", async () => {
    const device = new RecordingDevice();
    const spare = join("/log", SPARE_FILE_NAME);
    const ready = join("/log", SPARE_READY_FILE_NAME);
    const written: Uint8Array[] = [];
    {
      await using log = await openOn(device);
      // open waited for the first spare and swapped the new log's empty segment for it.
      assert.equal(log.stats().zeroFillInstalled, 1);
      for (let round = 0; round < 3; round++) {
        await commitRounds(log, written, 1, round);
        assert.equal(log.stats().zeroFillInstalled, round + 2);
      }
      assert.equal(log.stats().zeroFillFailed, 0);
    }
    // Each spare was filled with zeros, synced, and only then named ready; each rename of a
    // ready spare into place came after its header's write and sync.
    const installs = device.events.filter((e) => e.startsWith(`rename ${ready}`));
    assert.equal(installs.length, 4);
    for (let k = 0; k < installs.length; k++) {
      assert.equal(installs[k], `rename ${ready} ${join("/log", segmentFileName(k))}`);
      const before = device.events.slice(0, device.events.indexOf(installs[k]));
      assert.equal(before.at(-1), `syncNow ${ready}`, "header synced last");
    }
    const readied = device.events.filter((e) => e === `rename ${spare} ${ready}`).length;
    assert.ok(readied >= 4, `spares made ready: ${readied}`);
    let at = 0;
    for (let k = 0; k < readied; k++) {
      at = device.events.indexOf(`rename ${spare} ${ready}`, at + 1);
      const before = device.events.slice(0, at);
      assert.ok(before.lastIndexOf(`sync ${spare}`) > before.lastIndexOf(`fill ${spare}`));
    }
    // Zeros covered each spare whole (one 1 MiB fill chunk spans a 64 KiB segment).
    const ranges = device.filled.get(spare)!;
    assert.equal(ranges.length, readied);
    for (const range of ranges) assert.deepEqual(range, [0, SEGMENT]);
    // Closed: nothing half-written is left; the ready spare is kept, and a reopen with the option
    // installs it without writing zeros again. Every entry reads back.
    assert.equal(device.exists(spare), false);
    assert.equal(device.exists(ready), true);
    {
      await using reopened = await openOn(device);
      assert.deepEqual(entriesOf(reopened), written);
      const fills = device.filled.get(spare)!.length;
      await commitRounds(reopened, written, 1, 10);
      const stats = reopened.stats();
      assert.equal(stats.zeroFillInstalled, 1);
      assert.equal(device.filled.get(spare)!.length - fills <= 1, true, "kept spare reused");
    }
    // Without the option, open removes the ready spare.
    await using plain = await openOn(device, false);
    assert.equal(device.exists(ready), false);
    assert.deepEqual(entriesOf(plain), written);
  });

  test("a reopened log with nothing in it keeps its segment and its ready spare", async () => {
    const device = new RecordingDevice();
    {
      await using log = await openOn(device);
      assert.equal(log.stats().zeroFillInstalled, 1);
      await until(() => log.stats().zeroFillPrepared === 2, "the second spare");
    }
    const fills = device.filled.get(join("/log", SPARE_FILE_NAME))!.length;
    await using log = await AppendLog.open({
      dir: "/log",
      ...SMALL,
      device,
      zeroFillSegments: true,
    });
    const stats = log.stats();
    // The kept spare counts as ready; neither it nor a new one replaced the empty segment.
    assert.deepEqual(
      [stats.zeroFillPrepared, stats.zeroFillInstalled, stats.zeroFillFailed],
      [1, 0, 0],
    );
    assert.equal(device.filled.get(join("/log", SPARE_FILE_NAME))!.length, fills);
    assert.equal(device.exists(join("/log", SPARE_READY_FILE_NAME)), true);
  });

  test("on the file system: segments and entries survive reopen", async () => {
    using dir = tempDir("hybridlog-zero-fill-");
    const written: Uint8Array[] = [];
    {
      await using log = await AppendLog.open({ dir: dir.path, ...SMALL, zeroFillSegments: true });
      assert.equal(log.stats().zeroFillInstalled, 1);
      await commitRounds(log, written, 3);
      assert.equal(log.stats().zeroFillInstalled, 4);
      assert.equal(fs.statSync(join(dir.path, segmentFileName(1))).size, SEGMENT);
    }
    assert.equal(fs.existsSync(join(dir.path, SPARE_FILE_NAME)), false);
    await using reopened = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.deepEqual(entriesOf(reopened), written);
    assert.equal(fs.existsSync(join(dir.path, SPARE_READY_FILE_NAME)), false);
  });

  test("close while a spare is being written waits for it and removes it", async () => {
    using dir = tempDir("hybridlog-zero-fill-");
    const big = { segmentSizeBytes: 32 * 1024 * 1024 };
    const log = await AppendLog.open({ dir: dir.path, ...big, zeroFillSegments: true });
    // The next spare (32 MiB) is being written now.
    assert.equal(log.stats().zeroFillPrepared, 1);
    log.enqueue(entryBytes(1));
    await log.close();
    assert.equal(fs.existsSync(join(dir.path, SPARE_FILE_NAME)), false);
    assert.deepEqual(
      fs.readdirSync(dir.path).filter((name) => name.endsWith(".tmp")),
      [],
    );
    await using reopened = await AppendLog.open({ dir: dir.path, ...big });
    assert.deepEqual(entriesOf(reopened), [entryBytes(1)]);
  });

  test("a half-written spare left by a crash is removed at open, with or without the option", async () => {
    const device = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
    {
      await using log = await openOn(device, false);
      log.enqueue(entryBytes(1));
      await log.commit();
    }
    for (const zeroFillSegments of [false, true]) {
      const leftover = device.open(join("/log", SPARE_FILE_NAME), { create: true });
      leftover.write(new Uint8Array(SEGMENT).fill(0xab), 0);
      leftover.close();
      // A ready spare of another segment size is never installed either.
      const other = device.open(join("/log", SPARE_READY_FILE_NAME), { create: true });
      other.write(new Uint8Array(SEGMENT / 2).fill(0xcd), 0);
      other.close();
      await using log = await openOn(device, zeroFillSegments);
      assert.deepEqual(entriesOf(log), [entryBytes(1)]);
      if (!zeroFillSegments) {
        assert.equal(device.exists(join("/log", SPARE_FILE_NAME)), false);
        assert.equal(device.exists(join("/log", SPARE_READY_FILE_NAME)), false);
      } else {
        // Both removed, then a new spare (zeros) made ready in their place.
        await until(() => log.stats().zeroFillPrepared > 0, "a spare");
        const bytes = new Uint8Array(SEGMENT);
        const spare = device.open(join("/log", SPARE_READY_FILE_NAME), { readOnly: true });
        assert.equal(spare.sizeBytes(), SEGMENT);
        spare.read(bytes, 0);
        spare.close();
        assert.ok(bytes.every((b) => b === 0));
      }
    }
  });

  test("a failing fill loses nothing: segments are preallocated as before, the spare removed", async () => {
    const device = new RecordingDevice();
    device.failFill = true;
    const written: Uint8Array[] = [];
    {
      await using log = await openOn(device);
      assert.equal(log.stats().zeroFillInstalled, 0);
      assert.equal(log.stats().zeroFillFailed, 1);
      for (let i = 0; i < 120; i++) {
        const entry = entryBytes(i, 2000);
        written.push(entry);
        log.enqueue(entry);
        if (i % 20 === 19) await log.commit();
      }
      await until(() => !device.exists(join("/log", SPARE_FILE_NAME)), "the spare's removal");
      const stats = log.stats();
      assert.equal(stats.zeroFillInstalled, 0);
      // One failed attempt per segment created (each is tried once, never retried).
      assert.equal(stats.zeroFillFailed, 1 + 3);
    }
    assert.equal(device.events.filter((e) => e.startsWith("rename /log/spare")).length, 0);
    assert.equal(device.exists(join("/log", SPARE_READY_FILE_NAME)), false);
    await using reopened = await openOn(device, false);
    assert.deepEqual(entriesOf(reopened), written);
  });

  test("ConsensusLog and LogManager take the option; committed slots survive reopen", async () => {
    const device = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
    {
      await using log = await ConsensusLog.open({
        dir: "/c",
        ...SMALL,
        device,
        zeroFillSegments: true,
      });
      assert.equal(log.stats().zeroFillInstalled, 1);
      for (let slot = 0; slot < 100; slot++) {
        log.accept(slot, { round: 1, node: 1 }, entryBytes(slot, 1500));
        if (slot % 25 === 24) {
          await log.commitMany(Array.from({ length: 25 }, (_, k) => slot - 24 + k));
          await until(
            () => log.stats().zeroFillPrepared > log.stats().zeroFillInstalled,
            "a spare",
          );
        }
      }
      assert.ok(log.stats().zeroFillInstalled >= 3, JSON.stringify(log.stats()));
    }
    await using reopened = await ConsensusLog.open({ dir: "/c", ...SMALL, device });
    for (let slot = 0; slot < 100; slot++) {
      assert.deepEqual(reopened.readCommitted(slot)?.value, entryBytes(slot, 1500));
    }
    await using manager = new LogManager({ dir: "/m", ...SMALL, device, zeroFillSegments: true });
    await using lease = await manager.acquire("a");
    assert.equal(lease.log.stats().zeroFillInstalled, 1);
  });

  test("a value that is not a boolean is refused with a typed error and creates nothing", async () => {
    await assertBooleanOptionRefused("zeroFillSegments");
  });
});
