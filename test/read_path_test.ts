// The read fast path: header words only, and a checksum on the first read of each record this
// process did not write. Damage found on disk must be reported on every read of the damaged
// record (never remembered as good), and the scan iterator must behave like the generator it
// replaced: iterator helpers, early exit, staged entries as copies, segment boundaries.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, ConsensusLog, CorruptionError, InvalidArgumentError } from "../mod.ts";
import { entryBytes, flipByte, tempDir } from "./_helpers.ts";

const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 8 * 1024 };
const SEGMENT_0 = "segment-000000000000.hlog";

async function buildLog(dir: string, count: number): Promise<number[]> {
  await using log = await AppendLog.open({ dir, ...SMALL });
  const addresses: number[] = [];
  for (let i = 0; i < count; i++) addresses.push(log.enqueue(entryBytes(i)));
  await log.commit();
  return addresses;
}

describe("read path", () => {
  test("a payload byte damaged on disk fails every read of that entry, in every read form", async () => {
    using dir = tempDir();
    const addresses = await buildLog(dir.path, 50);
    // Entry 7's first payload byte: 16 B record header before it; addresses are file offsets
    // in segment 0.
    flipByte(join(dir.path, SEGMENT_0), addresses[7] + 16);
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    for (let attempt = 0; attempt < 3; attempt++) {
      assert.throws(() => log.readView(addresses[7]), CorruptionError, `readView #${attempt}`);
      assert.throws(() => log.read(addresses[7]), CorruptionError, `read #${attempt}`);
    }
    // Undamaged neighbours read right, the first time (verified) and the second (trusted).
    for (let attempt = 0; attempt < 2; attempt++) {
      assert.deepEqual(log.readView(addresses[6]), entryBytes(6));
      assert.deepEqual(log.read(addresses[8]), entryBytes(8));
    }
    const seen: number[] = [];
    assert.throws(() => {
      for (const entry of log.scan()) seen.push(entry.address);
    }, CorruptionError);
    assert.deepEqual(seen, addresses.slice(0, 7), "the scan stops at the damaged entry");
    assert.throws(() => [...log.scan({ from: addresses[5] })], CorruptionError, "and again");
    assert.deepEqual(
      [...log.scan({ from: addresses[8] })].map((entry) => entry.value),
      addresses.slice(8).map((_, i) => entryBytes(i + 8)),
    );
  });

  test("records verified in one 256 KiB part of a segment vouch for no record in another", async () => {
    using dir = tempDir();
    const options = { segmentSizeBytes: 1024 * 1024, bufferSizeBytes: 64 * 1024 };
    // 128-byte records (16 B header + 112 B): record k + 2048 lies exactly 256 KiB after record k,
    // at the same place in the next part of the segment's verified bitmap.
    const value = (i: number) => entryBytes(i, 112);
    const addresses: number[] = [];
    {
      await using log = await AppendLog.open({ dir: dir.path, ...options });
      for (let i = 0; i < 7000; i++) addresses.push(log.enqueue(value(i)));
      await log.commit();
    }
    assert.equal(addresses[2048] - addresses[0], 256 * 1024);
    const damaged = [5 + 2048, 5 + 2 * 2048, 5 + 3 * 2048];
    for (const i of damaged) flipByte(join(dir.path, SEGMENT_0), addresses[i] + 16);
    await using log = await AppendLog.open({ dir: dir.path, ...options });
    for (let attempt = 0; attempt < 2; attempt++) {
      assert.deepEqual(log.readView(addresses[5]), value(5), `record 5, read ${attempt}`);
      for (const i of damaged) {
        assert.throws(() => log.readView(addresses[i]), CorruptionError, `record ${i}`);
      }
    }
    for (let i = 0; i < addresses.length; i++) {
      if (!damaged.includes(i)) {
        assert.deepEqual(log.readView(addresses[i]), value(i), `record ${i}`);
      }
    }
  });

  test("the first copying reads after a reopen use pread, check everything, then the segment is mapped", async () => {
    using dir = tempDir();
    const addresses = await buildLog(dir.path, 50);
    flipByte(join(dir.path, SEGMENT_0), addresses[7] + 16 + 3); // a payload byte
    flipByte(join(dir.path, SEGMENT_0), addresses[9] + 4); // the length word
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.equal(log.stats().mappedBytes, 0, "nothing mapped at open");
    const reads = [3, 0, 12, 49, 30, 31];
    for (const i of reads) assert.deepEqual(log.read(addresses[i]), entryBytes(i), `entry ${i}`);
    const copy = log.read(addresses[3])!;
    assert.equal(copy.buffer.byteLength, copy.length, "a copy of exactly the entry");
    assert.equal(log.stats().mappedBytes, 0, "seven reads, all by pread");
    // Not an entry's address (inside entry 3): refused as on the mapped path.
    assert.throws(() => log.read(addresses[3] + 8), InvalidArgumentError);
    assert.equal(log.stats().mappedBytes, SMALL.segmentSizeBytes, "the eighth read mapped it");
    for (let attempt = 0; attempt < 2; attempt++) {
      assert.throws(() => log.read(addresses[7]), CorruptionError, `payload damage, ${attempt}`);
      assert.throws(() => log.read(addresses[9]), CorruptionError, `length damage, ${attempt}`);
    }
    for (let i = 0; i < 50; i++) {
      if (i !== 7 && i !== 9) assert.deepEqual(log.read(addresses[i]), entryBytes(i), `entry ${i}`);
    }
  });

  test("a ConsensusLog's first copying reads after a reopen use pread, and damage is still caught", async () => {
    using dir = tempDir();
    const slots = Array.from({ length: 20 }, (_, i) => i);
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      for (const slot of slots) log.accept(slot, { round: 1, node: slot }, entryBytes(slot));
      await log.commitMany(slots);
    }
    const path = join(dir.path, SEGMENT_0);
    const at = fs.readFileSync(path).indexOf(entryBytes(4));
    assert.ok(at > 0, "slot 4's value is in segment 0");
    flipByte(path, at + 1);
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    assert.equal(log.mappedBytes, 0, "nothing mapped at open");
    const entry = (slot: number) => ({
      slot,
      ballot: { round: 1, node: slot },
      committed: true,
      value: entryBytes(slot),
    });
    for (const slot of [3, 0, 12, 19]) assert.deepEqual(log.readCommitted(slot), entry(slot));
    const copy = log.read(3)!.value;
    assert.equal(copy.buffer.byteLength, copy.length, "a copy of exactly the value");
    assert.equal(log.mappedBytes, 0, "five reads, all by pread");
    for (let attempt = 0; attempt < 2; attempt++) {
      assert.throws(() => log.read(4), CorruptionError, `payload damage, ${attempt}`);
    }
    assert.equal(log.mappedBytes, SMALL.segmentSizeBytes, "the damaged record's report mapped it");
    for (const slot of slots) {
      if (slot !== 4) assert.deepEqual(log.readCommitted(slot), entry(slot), `slot ${slot}`);
    }
  });

  test("a ConsensusLog's readView maps the segment, even for its first read after a reopen", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      log.accept(0, { round: 1, node: 0 }, entryBytes(0));
      await log.commit(0);
    }
    const log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    const view = log.readView(0)!.value;
    assert.deepEqual(view, entryBytes(0));
    assert.equal(log.mappedBytes, SMALL.segmentSizeBytes);
    await log.close();
    assert.equal(view.length, 0, "the view is detached at close");
  });

  test("damage met by a pread read is reported as on the mapped path, every time", async () => {
    using dir = tempDir();
    const addresses = await buildLog(dir.path, 20);
    flipByte(join(dir.path, SEGMENT_0), addresses[4] + 16); // a payload byte
    flipByte(join(dir.path, SEGMENT_0), addresses[6] + 9); // the address word
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.throws(() => log.read(addresses[4]), CorruptionError, "payload damage");
    // A damaged address word: no record starts there, which the mapped path says (as before).
    assert.throws(() => log.read(addresses[6]), InvalidArgumentError, "address damage");
    assert.deepEqual(log.read(addresses[5]), entryBytes(5));
    assert.throws(() => log.read(addresses[4]), CorruptionError, "and again");
  });

  test("damage to a record's header is caught as well (length and address words)", async () => {
    using dir = tempDir();
    const addresses = await buildLog(dir.path, 20);
    flipByte(join(dir.path, SEGMENT_0), addresses[3] + 4); // length
    flipByte(join(dir.path, SEGMENT_0), addresses[11] + 9); // address
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    for (const i of [3, 11]) {
      assert.throws(() => log.readView(addresses[i]), (error: unknown) => {
        // A damaged address word reads as "no entry starts here" — refused either way.
        return error instanceof CorruptionError || (error as { code?: string }).code ===
            "ERR_INVALID_ARGUMENT";
      });
    }
    assert.deepEqual(log.readView(addresses[4]), entryBytes(4));
  });

  test("scan is an iterator with helpers, exits early, and copies staged entries", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path, ...SMALL });
    const addresses: number[] = [];
    for (let i = 0; i < 2000; i++) addresses.push(log.enqueue(entryBytes(i)));
    await log.commit();
    assert.ok(log.stats().mappedBytes >= 4 * SMALL.segmentSizeBytes, "spans several segments");
    // Helpers come from Iterator.prototype.
    const firstThree = log.scan().take(3).map((entry) => entry.address).toArray();
    assert.deepEqual(firstThree, addresses.slice(0, 3));
    // Every entry once, in order, across segments, padding and commit markers.
    let i = 0;
    for (const entry of log.scan()) {
      assert.equal(entry.address, addresses[i]);
      assert.deepEqual(entry.value, entryBytes(i));
      // The next record may be padding or a commit marker: resuming there finds the next entry.
      if (i + 1 < addresses.length && entry.nextAddress !== addresses[i + 1]) {
        assert.equal(log.scan({ from: entry.nextAddress }).next().value?.address, addresses[i + 1]);
      }
      i++;
    }
    assert.equal(i, 2000);
    // Entries kept past the loop stay distinct objects with their own views.
    const kept = [...log.scan({ from: addresses[10], to: addresses[13] })];
    assert.deepEqual(kept.map((entry) => entry.value), [10, 11, 12].map((n) => entryBytes(n)));
    // A staged (uncommitted, not written out) entry comes as a copy that later enqueues
    // cannot change.
    const staged = log.enqueue(new Uint8Array([1, 2, 3]));
    const [entry] = [...log.scan({ from: staged, to: log.tailAddress })];
    assert.deepEqual(entry.value, new Uint8Array([1, 2, 3]));
    for (let n = 0; n < 200; n++) log.enqueue(new Uint8Array(100).fill(9));
    assert.deepEqual(entry.value, new Uint8Array([1, 2, 3]));
    // Early exit: a break returns, and the iterator yields nothing more.
    const iterator = log.scan();
    for (const _ of iterator) break;
    assert.equal(iterator.next().done, true);
  });

  test("views of the fast path detach when the log closes", async () => {
    using dir = tempDir();
    const addresses = await buildLog(dir.path, 10);
    const log = await AppendLog.open({ dir: dir.path, ...SMALL });
    const view = log.readView(addresses[2])!;
    const [scanned] = [...log.scan({ from: addresses[3], to: addresses[4] })];
    assert.deepEqual(view, entryBytes(2));
    assert.deepEqual(scanned.value, entryBytes(3));
    await log.close();
    assert.equal(view.length, 0);
    assert.equal(scanned.value.length, 0);
  });
});
