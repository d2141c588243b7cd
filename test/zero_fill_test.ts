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
import { nextTurn } from "../src/validate.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { fsDevice } from "../src/fs_device.ts";
import { inspectLog, statusOf } from "../src/inspect.ts";
import { encodeSegmentHeader, segmentFileName } from "../src/segment_format.ts";
import {
  SPARE_FILE_NAME,
  SPARE_READY_FILE_NAME,
  SPARE_READY_FILE_NAMES,
} from "../src/spare_segment.ts";
import { assertBooleanOptionRefused, entryBytes, sameBytes, tempDir } from "./_helpers.ts";
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

/**
 * Fills segments 0 to 2, then rolls over onto segment 3 while the next spare's fill is held, and
 * truncates everything: segment 0's file becomes the spare (the held fill gives up), segment 1's
 * the second spare, and segment 2 is removed. Then rolls over onto segment 4, made from segment
 * 0's file. Returns its path, the entries left and the tail address, after a clean close.
 */
async function recycleScenario(device: RecordingDevice, dir: string) {
  const spare = join(dir, SPARE_FILE_NAME);
  const [ready, second] = SPARE_READY_FILE_NAMES.map((name) => join(dir, name));
  const written: Uint8Array[] = [];
  const log = await AppendLog.open({ dir, ...SMALL, device, zeroFillSegments: true });
  await commitRounds(log, written, 2);
  await until(() => log.stats().zeroFillPrepared > log.stats().zeroFillInstalled, "a spare");
  const release = device.holdFills();
  for (let i = 0; i < 40; i++) log.enqueue(entryBytes(300 + i, 2000));
  await log.commit(); // onto segment 3, made from the ready spare; the next fill is held
  assert.equal(log.stats().zeroFillInstalled, 4);
  const readied = device.events.filter((e) => e === `rename ${spare} ${ready}`).length;
  log.truncateUntil(log.committedUntilAddress);
  await log.commit();
  let stats = log.stats();
  assert.equal(stats.zeroFillRecycled, 2);
  assert.equal(stats.zeroFillPrepared, readied + 2);
  assert.ok(device.events.includes(`rename ${join(dir, segmentFileName(0))} ${ready}`));
  assert.ok(device.events.includes(`rename ${join(dir, segmentFileName(1))} ${second}`));
  assert.equal(device.exists(join(dir, segmentFileName(1))), false);
  assert.equal(device.exists(join(dir, segmentFileName(2))), false);
  // The held fill gives up once its write returns, and removes its file; nothing replaced the
  // recycled spare, and no failure is counted.
  release();
  await until(() => !device.exists(spare), "the given-up fill's removal");
  assert.equal(device.events.filter((e) => e === `rename ${spare} ${ready}`).length, readied);
  const values: Uint8Array[] = [];
  for (let i = 0; i < 20; i++) {
    const entry = entryBytes(400 + i, 2000);
    values.push(entry);
    log.enqueue(entry);
  }
  await log.commit(); // 8 fill segment 3, 12 go onto segment 4: the recycled file
  const recycledPath = join(dir, segmentFileName(4));
  const installs = device.events.filter((e) => e === `rename ${ready} ${recycledPath}`);
  assert.equal(installs.length, 1);
  stats = log.stats();
  assert.deepEqual([stats.zeroFillInstalled, stats.zeroFillFailed], [5, 0]);
  assert.deepEqual(entriesOf(log), values);
  // Past the tail the file still holds segment 0's records (and no zeros).
  const tailOffset = log.tailAddress % SEGMENT;
  const pastTail = bytesAt(device, recycledPath, tailOffset, 256);
  assert.ok(pastTail.some((b) => b !== 0) && pastTail.subarray(0, 16).some((b) => b !== 0));
  await log.close();
  // A clean close zeroes the record header at the tail, and nothing past it.
  const closed = bytesAt(device, recycledPath, tailOffset, 256);
  assert.deepEqual(closed.subarray(0, 16), new Uint8Array(16));
  assert.deepEqual(closed.subarray(16), pastTail.subarray(16));
  return { recycledPath, values, tailOffset, closed };
}

/**
 * A queue on FaultyDevice(RecordingDevice): rounds of 20 entries of 2000 B, each committed and
 * then truncated one round behind, with spare fills held over each round's roll-over so that the
 * truncations recycle. With `failAt`, that write-path call fails once with EIO and the workload
 * stops at the first error. Returns what was written and acknowledged, and the devices.
 */
async function recyclingQueue(failAt?: number) {
  const memory = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
  const recording = new RecordingDevice(memory);
  const faulty = new FaultyDevice(recording);
  if (failAt !== undefined) faulty.failAt(failAt, { errno: "EIO" });
  const written = new Map<number, Uint8Array>();
  const acked: Array<[number, Uint8Array]> = [];
  let truncatedUntil = 0;
  let recycled = 0;
  let error: unknown;
  let log: AppendLog | undefined;
  let release: (() => void) | undefined;
  try {
    log = await AppendLog.open({ dir: "/log", ...SMALL, device: faulty, zeroFillSegments: true });
    let previous: number | undefined;
    for (let round = 0; round < 8; round++) {
      release = recording.holdFills();
      const batch: Array<[number, Uint8Array]> = [];
      for (let i = 0; i < 20; i++) {
        const bytes = entryBytes(round * 100 + i, 2000);
        const address = log.enqueue(bytes);
        written.set(address, bytes);
        batch.push([address, bytes]);
      }
      await log.commit();
      acked.push(...batch);
      if (previous !== undefined) {
        log.truncateUntil(previous);
        truncatedUntil = previous;
        await log.commit();
      }
      previous = batch[0][0];
      release();
      recycled = log.stats().zeroFillRecycled;
    }
    await log.close();
  } catch (caught) {
    error = caught;
    release?.();
    await log?.close().catch(() => {});
  }
  return { memory, faulty, written, acked, truncatedUntil, recycled, error };
}

/** `length` bytes of file `path` at `position`. */
function bytesAt(device: Device, path: string, position: number, length: number): Uint8Array {
  const file = device.open(path, { readOnly: true });
  const bytes = new Uint8Array(length);
  file.read(bytes, position);
  file.close();
  return bytes;
}

/** Records, per path, the byte ranges written with `writeAsync` and the calls in order. */
class RecordingDevice extends WrappingDevice {
  readonly events: string[] = [];
  readonly filled = new Map<string, Array<[number, number]>>();
  failFill = false;
  /** While set, fills wait in `writeAsync` until it settles (see `holdFills`). */
  #held: Promise<void> | undefined;
  /** Renames of segment files fail (`EIO`). */
  failSegmentRenames = false;

  constructor(inner: Device = new MemoryDevice({ fileSizeBytesMax: 1 << 20 })) {
    super("recording", inner);
  }

  /** Holds every fill's writes from now on; the function returned lets them go on. */
  holdFills(): () => void {
    let release!: () => void;
    this.#held = new Promise((done) => release = done);
    return () => {
      this.#held = undefined;
      release();
    };
  }

  override rename(from: string, to: string): void {
    if (this.failSegmentRenames && from.includes("segment-0")) {
      throw new IoError("rename", "EIO", from);
    }
    this.events.push(`rename ${from} ${to}`);
    super.rename(from, to);
  }

  protected override wrapFile(file: DeviceFile): DeviceFile {
    return forwardingFile(file, {
      writeAsync: async (bytes, position) => {
        if (this.failFill) throw new IoError("write", "EIO", file.path);
        await this.#held;
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

  test("inlineSync: a commit loop that never yields to the event loop still gets its spares", async () => {
    using dir = tempDir("hybridlog-zero-fill-");
    await using log = await AppendLog.open({
      dir: dir.path,
      ...SMALL,
      inlineSync: true,
      zeroFillSegments: true,
    });
    assert.equal(log.stats().zeroFillInstalled, 1); // the first segment, made in open
    // Each `await` below resolves in a microtask unless the log gives the fill a turn: no timer,
    // no I/O completion runs otherwise. Before, the fill's writes then never completed and every
    // later segment was preallocated (installed stayed 1 until the deadline).
    const deadline = Date.now() + 20_000;
    let commits = 0;
    while (log.stats().zeroFillInstalled < 4 && Date.now() < deadline) {
      for (let i = 0; i < 4; i++) log.enqueue(entryBytes(commits * 4 + i, 2000));
      await log.commit();
      commits++;
    }
    const stats = log.stats();
    assert.ok(stats.zeroFillInstalled >= 4, `installed ${stats.zeroFillInstalled} spares`);
    assert.equal(stats.zeroFillFailed, 0);
    const entries = entriesOf(log);
    assert.equal(entries.length, commits * 4);
    assert.ok(entries.every((entry, at) => sameBytes(entry, entryBytes(at, 2000))));
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

  test("a truncated segment's file becomes the next spare: no zeros written, a fill in progress given up", async () => {
    const device = new RecordingDevice();
    const { recycledPath, values, tailOffset, closed } = await recycleScenario(device, "/log");
    // A clean reopen meets the zeroed header at the tail: no cut, every entry reads back, the
    // old records past it untouched.
    await using reopened = await openOn(device);
    assert.equal(reopened.recoveredTruncatedTail, false);
    assert.deepEqual(entriesOf(reopened), values);
    assert.deepEqual(bytesAt(device, recycledPath, tailOffset, 256), closed);
  });

  test("a queue of small segments stops writing zeros: a dropped segment becomes a second spare", async () => {
    // 64 KiB segments fill at once (the fill's lead covers them), so a zero-filled spare is
    // nearly always ready when a truncation drops a segment. Before, the dropped file was then
    // removed and every segment was written twice; now it is kept as the second spare.
    const device = new RecordingDevice();
    const fills = () => device.events.filter((e) => e.startsWith("fill ")).length;
    const kept = new Map<number, Uint8Array>();
    let fillsAfterWarmUp = 0;
    let recycledAfterWarmUp = 0;
    {
      await using log = await openOn(device);
      let previous = log.tailAddress;
      for (let round = 0; round < 40; round++) {
        if (round === 6) {
          fillsAfterWarmUp = fills();
          recycledAfterWarmUp = log.stats().zeroFillRecycled;
        }
        for (let i = 0; i < 20; i++) {
          const entry = entryBytes(round * 100 + i, 2000);
          kept.set(log.enqueue(entry), entry);
        }
        await log.commit();
        await nextTurn(); // a fill that was started goes on, as it would in a server
        log.truncateUntil(previous); // one round behind
        for (const address of kept.keys()) if (address < previous) kept.delete(address);
        previous = log.tailAddress;
      }
      await log.commit();
      const stats = log.stats();
      // 40 rounds of 40 KB roll over about 24 times; each roll-over after the warm-up took a
      // recycled file, and no zeros were written for any of them.
      assert.equal(fills(), fillsAfterWarmUp);
      assert.ok(stats.zeroFillRecycled - recycledAfterWarmUp >= 15, JSON.stringify(stats));
      assert.ok(stats.zeroFillInstalled >= 20, JSON.stringify(stats));
      assert.equal(stats.zeroFillFailed, 0);
      const spares = SPARE_READY_FILE_NAMES.filter((name) => device.exists(join("/log", name)));
      assert.equal(spares.length, 2);
    }
    // Both spares are kept across a clean reopen, and every entry not truncated reads back.
    await using reopened = await openOn(device);
    assert.equal(reopened.stats().zeroFillPrepared, 2);
    assert.equal(fills(), fillsAfterWarmUp);
    assert.deepEqual(
      [...reopened.scan()].map((entry) => [entry.address, entry.value.slice()]),
      [...kept],
    );
  });

  test("on the file system: a log in a recycled segment reopens clean, and inspect says so", async () => {
    using dir = tempDir("hybridlog-recycle-");
    const device = new RecordingDevice(fsDevice);
    const { values } = await recycleScenario(device, dir.path);
    const report = inspectLog(dir.path);
    assert.equal(statusOf(report), "clean", JSON.stringify(report.problem));
    await using reopened = await AppendLog.open({
      dir: dir.path,
      ...SMALL,
      zeroFillSegments: true,
    });
    assert.equal(reopened.recoveredTruncatedTail, false);
    assert.deepEqual(entriesOf(reopened), values);
    // Written on over the old records, then closed and reopened: all of it reads back.
    const more = Array.from({ length: 10 }, (_, i) => entryBytes(5000 + i, 2000));
    for (const entry of more) reopened.enqueue(entry);
    await reopened.commit();
    await reopened.close();
    assert.equal(statusOf(inspectLog(dir.path)), "clean");
    await using again = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.equal(again.recoveredTruncatedTail, false);
    assert.deepEqual(entriesOf(again), [...values, ...more]);
  });

  test("a ready spare is kept at open only if it can never serve addresses it held", async () => {
    const device = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
    const written: Uint8Array[] = [];
    {
      await using log = await openOn(device);
      await commitRounds(log, written, 2); // segments 0 to 2: the next one is 3
    }
    const [ready, second] = SPARE_READY_FILE_NAMES.map((name) => join("/log", name));
    const segmentZero = device.open(join("/log", segmentFileName(0)), { readOnly: true });
    const header = new Uint8Array(64);
    segmentZero.read(header, 0);
    segmentZero.close();
    const logId = new DataView(header.buffer).getUint32(12, true);
    const spareWith = (path: string, first: Uint8Array) => {
      for (const other of [ready, second]) if (device.exists(other)) device.remove(other);
      const file = device.open(path, { create: true });
      file.truncate(0);
      file.write(new Uint8Array(SEGMENT).fill(0x5a), 0);
      file.write(first, 0);
      file.close();
    };
    const cases: Array<[string, Uint8Array, boolean]> = [
      ["zeros (a zero-filled spare)", new Uint8Array(64), true],
      ["segment 1's header (recycled)", encodeSegmentHeader(logId, 1, SEGMENT), true],
      // Its install into place did not reach the disk: it may hold records of segment 3.
      ["segment 3's header", encodeSegmentHeader(logId, 3, SEGMENT), false],
      ["segment 4's header", encodeSegmentHeader(logId, 4, SEGMENT), false],
      ["another log's header", encodeSegmentHeader(logId ^ 1, 1, SEGMENT), false],
      [
        "a damaged header",
        encodeSegmentHeader(logId, 1, SEGMENT).map((b, i) => i === 20 ? b ^ 4 : b),
        false,
      ],
    ];
    // The same rule for either ready name (the second holds a recycled file).
    for (
      const [path, [what, first, kept]] of [ready, second].flatMap((p) =>
        cases.map((c) => [p, c] as const)
      )
    ) {
      spareWith(path, first);
      const log = await AppendLog.open({ dir: "/log", ...SMALL, device, zeroFillSegments: true });
      const bytes = new Uint8Array(64);
      if (kept) {
        assert.equal(log.stats().zeroFillPrepared, 1, what);
        const file = device.open(path, { readOnly: true });
        file.read(bytes, 0);
        file.close();
        assert.deepEqual(bytes, first, `${what}: the same file is kept`);
      } else {
        // Removed; a new spare (zeros) is made under the first name.
        await until(() => log.stats().zeroFillPrepared === 1, `${what}: a new spare`);
        assert.equal(device.exists(second), false, what);
        const file = device.open(ready, { readOnly: true });
        file.read(bytes, 0);
        file.close();
        assert.ok(bytes.every((b) => b === 0), `${what}: replaced by zeros`);
      }
      assert.deepEqual(entriesOf(log), written, what);
      await log.close();
    }
  });

  test("a spare whose install did not reach the disk never brings back what was written into it", async () => {
    // Installing a spare renames it into place; that rename is durable only with the directory
    // sync of the first commit into the segment, and the segment's own sync may reach the disk
    // first. Power lost between the two leaves the file under the spare's name, holding records
    // (never acknowledged) at the very addresses it would serve again; open must not keep it.
    const memory = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
    let holdDirectory: Promise<void> | undefined;
    const device = new (class extends WrappingDevice {
      override async syncDirectory(path: string): Promise<void> {
        await holdDirectory;
        return super.syncDirectory(path);
      }
    })("held-directory", memory);
    const acked: Uint8Array[] = [];
    const batch = (first: number) =>
      Array.from({ length: 5 }, (_, i) => entryBytes(first + i, 2000));
    {
      const log = await AppendLog.open({ dir: "/log", ...SMALL, device, zeroFillSegments: true });
      await until(() => log.stats().zeroFillPrepared > log.stats().zeroFillInstalled, "a spare");
      for (let i = 0; i < 30; i++) acked.push(entryBytes(i, 2000));
      for (const entry of acked) log.enqueue(entry);
      await log.commit(); // segment 0, and the directory naming the ready spare, are durable
      let release!: () => void;
      holdDirectory = new Promise((done) => release = done);
      // A rolls over onto segment 1 (the spare), B follows; both synced, neither acknowledged.
      for (const entry of batch(100)) log.enqueue(entry);
      void log.commit().catch(() => {});
      await new Promise((done) => setImmediate(done)); // A's cycle has started: B gets its own
      for (const entry of batch(200)) log.enqueue(entry);
      void log.commit().catch(() => {});
      for (let t = 0; t < 20; t++) await new Promise((done) => setImmediate(done));
      assert.equal(log.stats().zeroFillInstalled, 2);
      const lost = memory.powerLoss({ mode: "drop" });
      const spare = lost.open(join("/log", SPARE_READY_FILE_NAME), { readOnly: true });
      const header = new Uint8Array(64);
      spare.read(header, 0);
      spare.close();
      assert.equal(new DataView(header.buffer).getFloat64(16, true), 1, "segment 1's header");
      holdDirectory = undefined;
      release(); // on the old device, after the loss: nothing of it reaches `lost`
      await log.close().catch(() => {});
      // The next life writes A' as A was (same sizes, same commit number) and loses power
      // after it is acknowledged.
      const next = await AppendLog.open({
        dir: "/log",
        ...SMALL,
        device: lost,
        zeroFillSegments: true,
      });
      assert.deepEqual(entriesOf(next), acked);
      const again = batch(300);
      for (const entry of again) next.enqueue(entry);
      await next.commit();
      acked.push(...again);
      const lostAgain = lost.powerLoss({ mode: "drop" });
      await next.close();
      // Had the spare been kept, B's records would follow A' in segment 1 at their own
      // addresses, with the next commit number: recovered as if acknowledged.
      await using last = await AppendLog.open({ dir: "/log", ...SMALL, device: lostAgain });
      assert.deepEqual(entriesOf(last), acked);
    }
  });

  test("a recycle whose rename fails removes the segment as before", async () => {
    const device = new RecordingDevice();
    const written: Uint8Array[] = [];
    const log = await openOn(device);
    await commitRounds(log, written, 2);
    await until(() => log.stats().zeroFillPrepared > log.stats().zeroFillInstalled, "a spare");
    const release = device.holdFills(); // no spare is ready after the next roll-over
    for (let i = 0; i < 40; i++) log.enqueue(entryBytes(900 + i, 2000));
    await log.commit();
    device.failSegmentRenames = true;
    log.truncateUntil(log.committedUntilAddress);
    await log.commit();
    assert.equal(log.stats().zeroFillRecycled, 0);
    for (const index of [0, 1, 2]) {
      assert.equal(device.exists(join("/log", segmentFileName(index))), false);
    }
    assert.deepEqual(entriesOf(log), []);
    release();
    await log.close();
    assert.equal(log.stats().zeroFillFailed, 0);
  });

  test("an EIO at any write-path call of a recycling queue loses nothing acknowledged", {
    timeout: 120_000,
  }, async () => {
    // Spare calls that fail cost only the spare; log calls that fail poison the log. Either way a
    // restart recovers every acknowledged entry not truncated, and nothing that was not written.
    const unarmed = await recyclingQueue();
    assert.deepEqual(unarmed.error, undefined);
    assert.ok(unarmed.recycled >= 2, `recycled ${unarmed.recycled}`);
    const calls = unarmed.faulty.calls;
    const failures: string[] = [];
    for (let at = 1; at <= calls; at++) {
      const run = await recyclingQueue(at);
      const log = await AppendLog.open({ dir: "/log", ...SMALL, device: run.memory.crash() });
      try {
        for (const [address, bytes] of run.acked) {
          if (address >= run.truncatedUntil && !sameBytes(log.read(address), bytes)) {
            failures.push(`EIO at call ${at}: acknowledged entry at ${address} lost`);
          }
        }
        for (const entry of log.scan({ to: log.tailAddress })) {
          if (!sameBytes(entry.value, run.written.get(entry.address))) {
            failures.push(`EIO at call ${at}: ${entry.address} holds bytes never written there`);
          }
        }
      } finally {
        await log.close();
      }
    }
    assert.deepEqual(failures.slice(0, 5), []);
  });

  test("ConsensusLog recycles the segments truncatePrefix drops", async () => {
    const device = new RecordingDevice();
    await using log = await ConsensusLog.open({
      dir: "/c",
      ...SMALL,
      device,
      zeroFillSegments: true,
    });
    let slot = 0;
    const commitSegment = async () => {
      const first = slot;
      for (let i = 0; i < 40; i++, slot++) {
        log.accept(slot, { round: 1, node: 1 }, entryBytes(slot, 2000));
      }
      await log.commitMany(Array.from({ length: slot - first }, (_, k) => first + k));
    };
    await commitSegment();
    await until(() => log.stats().zeroFillPrepared > log.stats().zeroFillInstalled, "a spare");
    const release = device.holdFills();
    await commitSegment(); // rolls over onto the ready spare; the next fill waits
    await log.truncatePrefix(slot - 1);
    await commitSegment();
    release();
    // Segments 0 and 1 were dropped: the first took the held fill's place, the second became the
    // second spare; the roll-over took the first.
    assert.equal(log.stats().zeroFillRecycled, 2, JSON.stringify(log.stats()));
    for (let s = slot - 40; s < slot; s++) {
      assert.deepEqual(log.readCommitted(s)?.value, entryBytes(s, 2000));
    }
  });

  test("a value that is not a boolean is refused with a typed error and creates nothing", async () => {
    await assertBooleanOptionRefused("zeroFillSegments");
  });
});
