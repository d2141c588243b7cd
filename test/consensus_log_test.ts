import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { resolve } from "node:path";
import {
  AlreadyCommittedError,
  BallotError,
  ClosedError,
  ConsensusLog,
  InvalidArgumentError,
  NotCommittedError,
  RegionFullError,
  SlotNotFoundError,
} from "../mod.ts";
import { entryBytes, fileBytes, fingerprint, seededRandom, tempDir } from "./_helpers.ts";
import { forwardingFile, WrappingDevice } from "./_wrapping_device.ts";
import { CHUNK_PAIRS, INDEX_CHECKPOINT_HEADER_BYTES } from "../src/index_checkpoint.ts";
import { checksum } from "../src/checksum.ts";
import type { DeviceFile } from "../src/device.ts";
import { MemoryDevice } from "../src/memory_device.ts";

/** How many slots of `[from, to)` are not gaps. */
function expected(from: number, to: number, gap: (slot: number) => boolean): number {
  let count = 0;
  for (let slot = from; slot < to; slot++) if (!gap(slot)) count++;
  return count;
}

const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 8 * 1024 };
const b = (round: number, node = 0) => ({ round, node });

describe("ConsensusLog", () => {
  test("accept, commit and read back after reopen", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({ dir: dir.path });
      assert.equal(log.accept(7, b(1, 2), entryBytes(7)), undefined, "non-durable accept is sync");
      await log.commit(7);
      const entry = log.readCommitted(7)!;
      assert.deepEqual(entry, { slot: 7, ballot: b(1, 2), committed: true, value: entryBytes(7) });
    }
    await using log = await ConsensusLog.open({ dir: dir.path });
    assert.deepEqual(log.read(7), {
      slot: 7,
      ballot: b(1, 2),
      committed: true,
      value: entryBytes(7),
    });
    assert.equal(log.read(8), undefined);
    assert.equal(log.readCommitted(8), undefined);
  });

  test("the Paxos acceptor rule: a lower ballot is refused, equal or higher replaces", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    log.accept(1, b(5, 1), entryBytes(1));
    assert.throws(
      () => log.accept(1, b(5, 0), entryBytes(2)),
      (e: unknown) => e instanceof BallotError && e.code === "ERR_BALLOT",
    );
    assert.throws(() => log.accept(1, b(4, 9), entryBytes(2)), BallotError);
    assert.deepEqual(log.read(1)!.value, entryBytes(1), "a refused accept changes nothing");
    log.accept(1, b(5, 1), entryBytes(3));
    assert.deepEqual(log.read(1)!.value, entryBytes(3), "the same ballot may re-send");
    log.accept(1, b(6, 0), entryBytes(4));
    assert.deepEqual(log.read(1), {
      slot: 1,
      ballot: b(6, 0),
      committed: false,
      value: entryBytes(4),
    });
  });

  test("a committed slot can never be overwritten and commit is idempotent", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    log.accept(3, b(1), entryBytes(3));
    await log.commit(3);
    assert.throws(
      () => log.accept(3, b(99), entryBytes(4)),
      (e: unknown) => e instanceof AlreadyCommittedError && e.code === "ERR_COMMITTED",
    );
    await log.commit(3);
    await log.commitMany([3, 3]);
    assert.deepEqual(log.readCommitted(3)!.value, entryBytes(3));
  });

  test("committing an empty slot throws SlotNotFoundError; commitMany checks all first", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    await assert.rejects(
      log.commit(1),
      (e: unknown) => e instanceof SlotNotFoundError && e.code === "ERR_NOT_FOUND",
    );
    log.accept(2, b(1), entryBytes(2));
    await assert.rejects(log.commitMany([2, 9]), SlotNotFoundError);
    assert.equal(log.read(2)!.committed, false, "nothing moved");
    await log.commitMany([2]);
    assert.equal(log.read(2)!.committed, true);
  });

  test("readCommitted of an accepted slot throws NotCommittedError", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    log.accept(4, b(1), entryBytes(4));
    assert.throws(
      () => log.readCommitted(4),
      (e: unknown) => e instanceof NotCommittedError && e.code === "ERR_NOT_COMMITTED",
    );
  });

  test("uncommitted() lists accepted entries; committed() lists durable ones in slot order", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    for (const slot of [9, 2, 1000, 5, 2 ** 40]) log.accept(slot, b(1), entryBytes(slot % 1000));
    await log.commitMany([1000, 2, 2 ** 40]);
    assert.deepEqual([...log.uncommitted()].map((e) => e.slot).sort((x, y) => x - y), [5, 9]);
    assert.deepEqual([...log.committed()].map((e) => e.slot), [2, 1000, 2 ** 40]);
    assert.deepEqual([...log.committed({ from: 3, to: 2 ** 40 })].map((e) => e.slot), [1000]);
  });

  test("tail yields committed entries as they commit", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    log.accept(1, b(1), entryBytes(1));
    await log.commit(1);
    const controller = new AbortController();
    const seen: number[] = [];
    const reader = (async () => {
      for await (const entry of log.tail({ from: 1, signal: controller.signal })) {
        seen.push(entry.slot);
        if (seen.length === 3) controller.abort();
      }
    })();
    log.accept(5, b(1), entryBytes(5));
    log.accept(3, b(1), entryBytes(3));
    await log.commit(5);
    await log.commit(3);
    await reader;
    assert.deepEqual(seen, [1, 5, 3]);
  });

  test("promise() is durable, refuses lower ballots, and bounds later accepts", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({ dir: dir.path });
      assert.equal(log.promised, undefined);
      await log.promise(b(4, 1));
      await log.promise(b(4, 1));
      await assert.rejects(log.promise(b(3, 9)), BallotError);
      assert.throws(() => log.accept(1, b(4, 0), entryBytes(1)), BallotError);
      log.accept(1, b(4, 1), entryBytes(1));
      await log.promise(b(7, 0));
    }
    await using log = await ConsensusLog.open({ dir: dir.path });
    assert.deepEqual(log.promised, b(7, 0));
    assert.throws(() => log.accept(2, b(6, 5), entryBytes(2)), BallotError);
  });

  test("Raft hard state survives reopen; terms never decrease and a vote holds for its term", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({ dir: dir.path });
      assert.deepEqual(log.hardState, { term: 0, vote: undefined });
      await log.setHardState({ term: 2, vote: undefined });
      await log.setHardState({ term: 2, vote: 3 });
      await assert.rejects(log.setHardState({ term: 2, vote: 4 }), BallotError);
      await assert.rejects(log.setHardState({ term: 1, vote: 1 }), BallotError);
      await log.setHardState({ term: 5, vote: 1 });
    }
    await using log = await ConsensusLog.open({ dir: dir.path });
    assert.deepEqual(log.hardState, { term: 5, vote: 1 });
  });

  test("a torn hard-state slot falls back to the previous record", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({ dir: dir.path });
      await log.promise(b(1)); // sequence 1 → slot 1
      await log.promise(b(2)); // sequence 2 → slot 0
    }
    const path = `${dir.path}/state`;
    const bytes = fs.readFileSync(path);
    bytes[20] ^= 0xff; // tear slot 0, the newest
    fs.writeFileSync(path, bytes);
    await using log = await ConsensusLog.open({ dir: dir.path });
    assert.deepEqual(log.promised, b(1));
  });

  test("a hard-state temp file left by a crash is removed at open, so the next write succeeds", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({ dir: dir.path });
      await log.promise(b(1));
    }
    const temp = `${dir.path}/state.tmp`;
    fs.writeFileSync(temp, new Uint8Array(100)); // a write that died before its rename
    await using log = await ConsensusLog.open({ dir: dir.path });
    assert.equal(fs.existsSync(temp), false, "the leftover is gone");
    await log.promise(b(2)); // its temp file is created exclusively
    assert.deepEqual(log.promised, b(2));
  });

  test("truncatePrefix drops committed slots below it, keeps the slot, frees segments, survives reopen", async () => {
    using dir = tempDir();
    const segments = () => fs.readdirSync(dir.path).filter((n) => n.startsWith("segment-")).length;
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      for (let slot = 0; slot < 2000; slot++) log.accept(slot, b(1), entryBytes(slot));
      await log.commitMany(Array.from({ length: 2000 }, (_, i) => i));
      const before = segments();
      await log.truncatePrefix(1500);
      assert.ok(segments() < before, `segments ${before} → ${segments()}`);
      assert.equal(log.read(1499), undefined);
      assert.deepEqual(log.readCommitted(1500)!.value, entryBytes(1500));
    }
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
    assert.equal(log.read(10), undefined);
    assert.equal(log.read(1499), undefined);
    assert.equal([...log.committed()].length, 500);
  });

  test("durable accepts survive a reopen with their ballots; plain accepts are forgotten", async () => {
    using dir = tempDir();
    const durableDir = `${dir.path}/durable`;
    const plainDir = `${dir.path}/plain`;
    {
      await using durable = await ConsensusLog.open({ dir: durableDir, durableAccepts: true });
      await using plain = await ConsensusLog.open({ dir: plainDir });
      const pending = durable.accept(1, b(2, 1), entryBytes(1));
      assert.ok(pending instanceof Promise, "a durable accept returns a promise");
      await pending;
      await durable.accept(1, b(3, 1), entryBytes(2));
      await durable.accept(2, b(1, 1), entryBytes(3));
      plain.accept(1, b(2, 1), entryBytes(1));
    }
    await using durable = await ConsensusLog.open({ dir: durableDir });
    await using plain = await ConsensusLog.open({ dir: plainDir });
    assert.deepEqual(durable.read(1), {
      slot: 1,
      ballot: b(3, 1),
      committed: false,
      value: entryBytes(2),
    });
    assert.deepEqual(durable.read(2)!.value, entryBytes(3));
    assert.equal(plain.read(1), undefined);
  });

  test("a bad indexCheckpointIntervalBytes is refused with ERR_INVALID_ARGUMENT and creates nothing", async () => {
    using dir = tempDir();
    const path = `${dir.path}/log`;
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 2, "64", null]) {
      await assert.rejects(
        ConsensusLog.open({ dir: path, indexCheckpointIntervalBytes: bad as number }),
        (e: unknown) =>
          e instanceof InvalidArgumentError && e.code === "ERR_INVALID_ARGUMENT" &&
          /indexCheckpointIntervalBytes/.test(e.message),
        String(bad),
      );
    }
    assert.equal(fs.existsSync(path), false);
  });

  test("a log that truncates as it goes never fills its slot index, however far its slots run", async () => {
    using dir = tempDir();
    // One slot per 16k takes a leaf and the 1 KiB node above it; kept, 4000 of them would
    // overflow a 1 MiB index (a log committing 100k slots/s filled the default 64 MiB in about
    // three hours). Truncation recycles both.
    const stride = 16 * 1024;
    const options = { dir: dir.path, indexSizeBytes: 1024 * 1024, durability: "none" as const };
    {
      await using log = await ConsensusLog.open(options);
      for (let round = 0; round < 400; round++) {
        const slots = Array.from({ length: 10 }, (_, i) => (round * 10 + i) * stride);
        for (const slot of slots) log.accept(slot, b(1), entryBytes(slot % 1000, 8));
        await log.commitMany(slots);
        await log.truncatePrefix(slots[0]);
      }
      assert.ok(log.stats().indexBytes < 128 * 1024, `index ${log.stats().indexBytes} B`);
      assert.equal(log.stats().committedCount, 10);
    }
    await using reopened = await ConsensusLog.open(options);
    for (let i = 3985; i < 4000; i++) {
      const read = reopened.readCommitted(i * stride);
      if (i < 3990) assert.equal(read, undefined, `slot ${i * stride} was truncated`);
      else assert.deepEqual(read?.value, entryBytes((i * stride) % 1000, 8));
    }
  });

  test("a full slot index refuses the next new leaf with RegionFullError naming indexSizeBytes; nothing lost", async () => {
    using dir = tempDir();
    for (const bad of [1000, 1.5 * 1024 * 1024 + 0.5, 2 * 1024 * 1024 * 1024, "64"]) {
      await assert.rejects(
        ConsensusLog.open({ dir: dir.path, indexSizeBytes: bad as number }),
        (e: unknown) => e instanceof InvalidArgumentError && /indexSizeBytes/.test(e.message),
      );
    }
    const log = await ConsensusLog.open({ dir: dir.path, indexSizeBytes: 1024 * 1024 });
    // Every 64th slot needs a leaf of its own: 1 MiB runs out after about a thousand.
    let accepted = 0;
    let refusal: unknown;
    for (; accepted < 100_000; accepted++) {
      try {
        log.accept(accepted * 64, b(1), entryBytes(accepted, 8));
      } catch (error) {
        refusal = error;
        break;
      }
    }
    assert.ok(accepted > 500 && accepted < 100_000, `accepted ${accepted} sparse slots`);
    assert.ok(refusal instanceof RegionFullError, String(refusal));
    assert.equal((refusal as RegionFullError).code, "ERR_REGION_FULL");
    assert.match((refusal as Error).message, /indexSizeBytes/);
    for (let i = 0; i < accepted; i++) assert.deepEqual(log.read(i * 64)!.value, entryBytes(i, 8));
    await log.commitMany(Array.from({ length: accepted }, (_, i) => i * 64));
    await log.close();
    // A larger index takes every committed slot back, and more.
    await using reopened = await ConsensusLog.open({
      dir: dir.path,
      indexSizeBytes: 4 * 1024 * 1024,
    });
    for (let i = 0; i < accepted; i++) {
      assert.deepEqual(reopened.read(i * 64)!.value, entryBytes(i, 8));
    }
    reopened.accept(accepted * 64, b(1), entryBytes(accepted, 8));
    assert.equal(reopened.read(accepted * 64)!.committed, false);
  });

  test("a full region is backpressure: tryAccept false, accept RegionFullError, nothing lost", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, mutableSizeBytes: 64 * 1024 });
    let slot = 0;
    while (log.tryAccept(slot, b(1), entryBytes(slot, 1000)) === true) slot++;
    // 8 chunks of 8 KiB hold 7 such entries each; one chunk stays free for compaction.
    assert.ok(slot >= 45 && slot < 66, `accepted ${slot} entries of 1 KiB into 64 KiB`);
    assert.throws(
      () => log.accept(slot, b(1), entryBytes(slot, 1000)),
      (e: unknown) => e instanceof RegionFullError && e.code === "ERR_REGION_FULL",
    );
    for (let s = 0; s < slot; s++) assert.deepEqual(log.read(s)!.value, entryBytes(s, 1000));
    await log.commitMany(Array.from({ length: 10 }, (_, i) => i));
    assert.equal(log.tryAccept(slot, b(1), entryBytes(slot, 1000)), true, "commits reclaim space");
    for (let i = 0; i < 2000; i++) log.accept(slot, b(2 + i), entryBytes(i % 7, 1000));
    assert.deepEqual(
      log.read(slot)!.value,
      entryBytes(1999 % 7, 1000),
      "superseding reclaims space",
    );
  });

  test("bad input gets a typed error and changes nothing on disk", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path, entrySizeBytesMax: 1000 });
    assert.equal(log.entrySizeBytesMax, 1000);
    assert.equal(log.dir, resolve(dir.path));
    log.accept(1, b(1), entryBytes(1));
    await log.commit(1);
    const before = fingerprint(dir.path);
    const invalid = (fn: () => unknown) =>
      assert.throws(
        fn,
        (e: unknown) => e instanceof InvalidArgumentError && e.code === "ERR_INVALID_ARGUMENT",
      );
    for (const slot of [-1, 1.5, 2 ** 53, NaN, "1", undefined]) {
      invalid(() => log.accept(slot as number, b(1), entryBytes(1)));
      invalid(() => log.read(slot as number));
    }
    invalid(() => log.accept(2, { round: -1, node: 0 }, entryBytes(1)));
    invalid(() => log.accept(2, { round: 1.5, node: 0 }, entryBytes(1)));
    invalid(() => log.accept(2, { round: 1 } as { round: number; node: number }, entryBytes(1)));
    invalid(() => log.accept(2, null as unknown as { round: number; node: number }, entryBytes(1)));
    invalid(() => log.accept(2, b(1), "value" as unknown as Uint8Array));
    invalid(() => log.accept(2, b(1), new Uint8Array(1001)));
    await assert.rejects(log.commit(-1), InvalidArgumentError);
    await assert.rejects(log.commitMany([1, -1]), InvalidArgumentError);
    await assert.rejects(log.promise({ round: -2, node: 0 }), InvalidArgumentError);
    await assert.rejects(log.setHardState({ term: -1, vote: undefined }), InvalidArgumentError);
    await assert.rejects(log.truncatePrefix(1.5), InvalidArgumentError);
    await assert.rejects(
      ConsensusLog.open({ dir: `${dir.path}/x`, entrySizeBytesMax: 2 ** 40 }),
      InvalidArgumentError,
    );
    assert.equal(log.read(2), undefined);
    assert.equal(fingerprint(dir.path), before);
  });

  for (const durableAccepts of [false, true]) {
    test(`a seeded model test of 10,000 operations agrees with a Map (durableAccepts ${durableAccepts})`, async () => {
      using dir = tempDir();
      const random = seededRandom(durableAccepts ? 77 : 42);
      type Model = { round: number; node: number; value: Uint8Array; committed: boolean };
      const model = new Map<number, Model>();
      let promised = { round: 0, node: 0 };
      const options = { dir: dir.path, ...SMALL, mutableSizeBytes: 256 * 1024, durableAccepts };
      let log = await ConsensusLog.open(options);
      const pending: Promise<unknown>[] = [];
      try {
        for (let op = 0; op < 10_000; op++) {
          const slot = Math.floor(random() * 300);
          const roll = random();
          if (roll < 0.55) {
            const ballot = { round: Math.floor(random() * 20), node: Math.floor(random() * 3) };
            const value = entryBytes(op, Math.floor(random() * 200));
            const held = model.get(slot);
            const lower = (
              x: { round: number; node: number },
              y: { round: number; node: number },
            ) => x.round < y.round || (x.round === y.round && x.node < y.node);
            let expected: string;
            if (held?.committed) expected = "ERR_COMMITTED";
            else if (lower(ballot, promised) || (held && lower(ballot, held))) {
              expected = "ERR_BALLOT";
            } else expected = "ok";
            try {
              const result = log.accept(slot, ballot, value);
              if (result) pending.push(result);
              assert.equal("ok", expected, `op ${op}: accept of slot ${slot} should fail`);
              model.set(slot, { ...ballot, value, committed: false });
            } catch (error) {
              assert.equal((error as { code?: string }).code, expected, `op ${op}: ${error}`);
            }
          } else if (roll < 0.8) {
            const held = model.get(slot);
            if (held) {
              pending.push(log.commit(slot));
              held.committed = true;
            } else {
              await assert.rejects(log.commit(slot), SlotNotFoundError);
            }
          } else if (roll < 0.995) {
            await Promise.all(pending.splice(0));
            const held = model.get(slot);
            const entry = log.read(slot);
            if (!held) assert.equal(entry, undefined, `op ${op}: slot ${slot}`);
            else {
              assert.deepEqual(entry, {
                slot,
                ballot: { round: held.round, node: held.node },
                committed: held.committed,
                value: held.value,
              }, `op ${op}: slot ${slot}`);
            }
          } else if (roll < 0.997) {
            const ballot = { round: Math.floor(random() * 10), node: 0 };
            if (
              !(ballot.round < promised.round ||
                (ballot.round === promised.round && ballot.node < promised.node))
            ) {
              await log.promise(ballot);
              promised = ballot;
            }
          } else {
            await Promise.all(pending.splice(0));
            await log.close();
            log = await ConsensusLog.open(options);
            if (!durableAccepts) { for (const [s, m] of model) if (!m.committed) model.delete(s); }
          }
        }
        await Promise.all(pending.splice(0));
        for (const [slot, held] of model) {
          assert.deepEqual(log.read(slot)!.value, held.value, `final slot ${slot}`);
          assert.equal(log.read(slot)!.committed, held.committed);
        }
        assert.equal(
          [...log.committed()].length,
          [...model.values()].filter((m) => m.committed).length,
        );
      } finally {
        await log.close();
      }
    });
  }
});

describe("ConsensusLog recovery", () => {
  test("a reopen after close verifies nothing; after a crash, only what follows the index checkpoint", async () => {
    using dir = tempDir();
    const path = `${dir.path}/log`;
    const image = `${dir.path}/image`;
    {
      await using log = await ConsensusLog.open({ dir: path, ...SMALL });
      for (let slot = 0; slot < 3000; slot++) log.accept(slot, b(1), entryBytes(slot));
      await log.commitMany(Array.from({ length: 3000 }, (_, i) => i));
    }
    {
      await using log = await ConsensusLog.open({ dir: path, ...SMALL });
      assert.equal(log.stats().recoveryReplayedBytes, 0, "the index checkpoint covered everything");
      assert.equal(log.stats().committedCount, 3000);
      assert.deepEqual(log.readCommitted(2999)!.value, entryBytes(2999));
      for (let slot = 3000; slot < 3100; slot++) log.accept(slot, b(1), entryBytes(slot));
      await log.commitMany(Array.from({ length: 100 }, (_, i) => 3000 + i));
      fs.cpSync(path, image, { recursive: true }); // what a crash now would leave
    }
    await using log = await ConsensusLog.open({ dir: image, ...SMALL });
    const replayed = log.stats().recoveryReplayedBytes;
    assert.ok(
      replayed > 0 && replayed < 100 * 400,
      `replayed ${replayed} bytes: only the last 100 commits`,
    );
    for (const slot of [0, 1500, 2999, 3000, 3099]) {
      assert.deepEqual(log.readCommitted(slot)!.value, entryBytes(slot), `slot ${slot}`);
    }
  });

  test("truncatePrefix walks the index between other work, one truncation at a time, and keeps every slot at or above the highest", async () => {
    using dir = tempDir();
    const options = { dir: dir.path, ...SMALL, durability: "none" as const };
    const count = 200_000;
    const value = (slot: number) => entryBytes(slot % 997, 8);
    {
      await using log = await ConsensusLog.open(options);
      for (let first = 0; first < count; first += 10_000) {
        const slots = Array.from({ length: 10_000 }, (_, i) => first + i);
        for (const slot of slots) log.accept(slot, b(1), value(slot));
        await log.commitMany(slots);
      }
      // Three truncations at once, the highest in the middle; reads between the turns they take.
      let done = false;
      let firstDone = false;
      const first = log.truncatePrefix(150_000).finally(() => (firstDone = true));
      const truncations = Promise.all([
        first,
        log.truncatePrefix(190_000),
        log.truncatePrefix(100_000),
      ]).finally(() => (done = true));
      let turns = 0;
      let between = false; // slot 0 already dropped while slot 149,000 is still there
      while (!done) {
        await new Promise((resolve) => setImmediate(resolve));
        turns++;
        if (log.read(0) === undefined && log.read(149_000)?.committed) between = true;
        // The second truncation starts only once the first has ended.
        if (!firstDone) assert.ok(log.read(160_000)?.committed, `turn ${turns}`);
        if (turns === 3) log.accept(count, b(1), value(count)); // other work goes on meanwhile
      }
      await truncations;
      assert.ok(between, `the walk took turns (${turns} turns)`);
      for (const slot of [0, 99_999, 149_999, 189_999]) assert.equal(log.read(slot), undefined);
      for (const slot of [190_000, 199_999]) {
        assert.deepEqual(log.readCommitted(slot)?.value, value(slot), `slot ${slot}`);
      }
      assert.deepEqual(log.read(count)?.value, value(count));
      assert.equal(log.stats().committedCount, count - 190_000);
    }
    await using reopened = await ConsensusLog.open(options);
    assert.equal(reopened.read(189_999), undefined);
    for (let slot = 190_000; slot < count; slot += 997) {
      assert.deepEqual(reopened.readCommitted(slot)?.value, value(slot), `slot ${slot}`);
    }
    assert.equal(reopened.stats().committedCount, count - 190_000);
  });

  test("a log closed while truncatePrefix walks its index: the truncation ends with ClosedError, the next logs are untouched", async () => {
    using dir = tempDir();
    using other = tempDir();
    const options = { dir: dir.path, ...SMALL, durability: "none" as const };
    const count = 100_000;
    const value = (slot: number) => entryBytes(slot % 997, 8);
    const log = await ConsensusLog.open(options);
    for (let first = 0; first < count; first += 10_000) {
      const slots = Array.from({ length: 10_000 }, (_, i) => first + i);
      for (const slot of slots) log.accept(slot, b(1), value(slot));
      await log.commitMany(slots);
    }
    const truncation = log.truncatePrefix(90_000);
    // Wait until the walk is under way (slot 0 dropped, slot 89,999 not yet), then close.
    while (log.read(0) !== undefined || !log.read(89_999)?.committed) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    await log.close();
    // A log opened on this thread now may take the closed log's buffers; the walk must not
    // touch them.
    await using next = await ConsensusLog.open({ dir: other.path, durability: "none" });
    // A leaf each, as many as the closed log had: they reuse the offsets of its leaves.
    for (let slot = 0; slot < 1600; slot++) next.accept(slot * 64, b(2), value(slot));
    await assert.rejects(truncation, ClosedError);
    for (let slot = 0; slot < 1600; slot++) {
      assert.deepEqual(next.read(slot * 64)?.value, value(slot), `slot ${slot * 64}`);
    }
    // The truncated slot was durable before the walk began: a reopen drops what it had left.
    await using reopened = await ConsensusLog.open(options);
    assert.equal(reopened.read(89_999), undefined);
    assert.equal(reopened.stats().committedCount, count - 90_000);
    assert.deepEqual(reopened.readCommitted(90_000)?.value, value(90_000));
  });

  test("truncatePrefix drops stale accepts below it too: their region space and journal records go, as at reopen", async () => {
    using dir = tempDir();
    const options = { dir: dir.path, ...SMALL, durableAccepts: true };
    const segments = () => fs.readdirSync(dir.path).filter((name) => name.endsWith(".hlog"));
    {
      await using log = await ConsensusLog.open(options);
      // Slot 3 is accepted and journaled but never committed (the value chosen was another's).
      await log.accept(3, b(1), entryBytes(3, 100));
      for (let slot = 10; slot < 2010; slot++) await log.accept(slot, b(1), entryBytes(slot, 100));
      await log.commitMany(Array.from({ length: 2000 }, (_, i) => 10 + i));
      assert.ok(segments().length >= 4, `${segments().length} segments`);
      await log.truncatePrefix(2000);
      // Slot 3's journal record pinned the first segment before: nothing below 2000 stays now.
      assert.ok(segments().length <= 2, `${segments()} after the truncation`);
      assert.equal(log.read(3), undefined);
      assert.deepEqual([...log.uncommitted()], []);
      const stats = log.stats();
      assert.deepEqual([stats.acceptedCount, stats.committedCount], [0, 10]);
      assert.equal(stats.regionLiveBytes, 0, "the stale accept's region entry is freed");
      // A slot above the truncation keeps its accept.
      await log.accept(3000, b(1), entryBytes(7));
    }
    await using log = await ConsensusLog.open(options);
    assert.equal(log.read(3), undefined);
    assert.deepEqual(log.read(3000)?.value, entryBytes(7));
    assert.deepEqual(log.readCommitted(2009)?.value, entryBytes(2009, 100));
  });

  test("the index checkpoint restores sparse and huge slots, a truncation, and journaled accepts", async () => {
    using dir = tempDir();
    const slots = [0, 1, 63, 64, 200, 5000, 5001, 2 ** 31 + 5, 2 ** 40, 2 ** 52 + 3];
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL, durableAccepts: true });
      for (const slot of slots) await log.accept(slot, b(1), entryBytes(slot % 1000));
      await log.commitMany(slots);
      await log.truncatePrefix(64);
      await log.accept(7000, b(2), entryBytes(7)); // journaled, not committed
    }
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL, durableAccepts: true });
    assert.equal(log.stats().recoveryReplayedBytes, 0, "the index checkpoint covered everything");
    for (const slot of slots.filter((slot) => slot >= 64)) {
      assert.deepEqual(log.readCommitted(slot)!.value, entryBytes(slot % 1000), `slot ${slot}`);
    }
    for (const slot of [0, 1, 63, 65, 2 ** 31 + 4]) assert.equal(log.read(slot), undefined);
    const accepted = log.read(7000)!;
    assert.equal(accepted.committed, false);
    assert.deepEqual(accepted.value, entryBytes(7));
    assert.equal(log.stats().committedCount, slots.length - 3);
  });

  test("index checkpoints written in the background between commits and truncations recover every committed slot", async () => {
    using dir = tempDir();
    const path = `${dir.path}/log`;
    const image = `${dir.path}/image`;
    const options = {
      ...SMALL,
      segmentSizeBytes: 1024 * 1024,
      indexCheckpointIntervalBytes: 128 * 1024,
    };
    const log = await ConsensusLog.open({ dir: path, ...options });
    let next = 0;
    let truncatedBelow = 0;
    const value = (slot: number) => entryBytes(slot % 1000, 20);
    const committers = (count: number) =>
      Promise.all(Array.from({ length: 4 }, async () => {
        for (let i = 0; i < count; i++) {
          const slot = next++;
          log.accept(slot, b(1), value(slot));
          await log.commit(slot);
        }
      }));
    // 80k slots (about 6 MB of records) with 20–30k live: each checkpoint walks more than one
    // step of leaves, while the committers and every other round's truncation keep running.
    for (let round = 0; round < 8; round++) {
      await committers(2500);
      if (round % 2 === 1) {
        truncatedBelow = next - 20_000;
        await log.truncatePrefix(truncatedBelow);
      }
    }
    const written = log.stats().indexCheckpoints;
    assert.ok(written >= 20, `${written} index checkpoints written`);
    fs.cpSync(path, image, { recursive: true }); // what a crash now would leave
    await committers(2500); // crosses the interval again: close meets a checkpoint in progress
    await log.close();
    const check = async (at: string, slots: number) => {
      await using reopened = await ConsensusLog.open({ dir: at, ...options });
      const stats = reopened.stats();
      assert.equal(stats.committedCount, slots - truncatedBelow, at);
      for (const slot of [truncatedBelow, truncatedBelow + 12_345, slots - 1]) {
        assert.deepEqual(reopened.readCommitted(slot)!.value, value(slot), `${at}: slot ${slot}`);
      }
      assert.equal(reopened.read(truncatedBelow - 1), undefined, `${at}: truncated`);
      return stats.recoveryReplayedBytes;
    };
    const replayed = await check(image, 80_000);
    // The log since its begin address holds at least 20k records of 56 B; a checkpoint less than
    // two intervals old leaves far less to replay.
    assert.ok(replayed < 4 * 128 * 1024, `the crash image replayed ${replayed} bytes`);
    assert.equal(await check(path, 90_000), 0, "close wrote a checkpoint covering everything");
  });

  test("a damaged index checkpoint is ignored, or its damaged chunk replaced by a scan of the log", async () => {
    using dir = tempDir();
    const count = 2 * CHUNK_PAIRS + 300;
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      for (let slot = 0; slot < count; slot++) log.accept(slot, b(1), entryBytes(slot, 20));
      await log.commitMany(Array.from({ length: count }, (_, i) => i));
    }
    const path = `${dir.path}/index`;
    const intact = fs.readFileSync(path);
    const damaged = (at: number) => {
      const bytes = Buffer.from(intact);
      bytes[at] ^= 0xff;
      fs.writeFileSync(path, bytes);
    };
    // A byte of the second chunk of pairs: found when a slot of it is first looked up.
    damaged(INDEX_CHECKPOINT_HEADER_BYTES + 16 * (CHUNK_PAIRS + 100));
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      assert.deepEqual(log.readCommitted(10)!.value, entryBytes(10, 20), "the first chunk serves");
      assert.deepEqual(
        log.readCommitted(CHUNK_PAIRS + 100)!.value,
        entryBytes(CHUNK_PAIRS + 100, 20),
      );
      const stats = log.stats();
      assert.ok(stats.recoveryReplayedBytes > 0, "scanned the log for the damaged chunk's slots");
      assert.equal(stats.committedCount, count);
      for (let slot = 0; slot < count; slot += 97) {
        assert.deepEqual(log.readCommitted(slot)!.value, entryBytes(slot, 20), `slot ${slot}`);
      }
      assert.throws(
        () => log.accept(CHUNK_PAIRS + 7, b(9), new Uint8Array(1)),
        AlreadyCommittedError,
      );
    }
    // A byte of the header: the whole checkpoint is ignored at open.
    damaged(30);
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL });
      assert.ok(log.stats().recoveryReplayedBytes > 0, "fell back to a scan");
      assert.equal(log.stats().committedCount, count);
      assert.deepEqual(log.readCommitted(250)!.value, entryBytes(250, 20));
    }
  });

  test("after a lazy reopen, background index checkpoints merge the old one in steps while commits, reads and truncations go on", async () => {
    using dir = tempDir();
    const options = {
      ...SMALL,
      segmentSizeBytes: 256 * 1024,
      indexCheckpointIntervalBytes: 64 * 1024,
    };
    const value = (slot: number) => entryBytes(slot % 1000, 20);
    const count = 40_000;
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...options });
      for (let first = 0; first < count; first += 5000) {
        const slots = Array.from({ length: 5000 }, (_, i) => first + i);
        for (const slot of slots) log.accept(slot, b(1), value(slot));
        await log.commitMany(slots);
      }
    }
    let truncatedBelow = 0;
    const coveredAddress = () => fs.readFileSync(`${dir.path}/index`).readDoubleLE(16); // the header's covered address
    const covered = coveredAddress();
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...options });
      let next = count;
      // Commits cross the interval again and again; reads of old slots and truncations run
      // between the checkpoint's steps.
      for (let round = 0; round < 12; round++) {
        const reads = Array.from(
          { length: 50 },
          (_, i) => truncatedBelow + ((round * 7919 + i * 613) % (count - truncatedBelow)),
        );
        await Promise.all([
          (async () => {
            for (let i = 0; i < 400; i++) {
              log.accept(next, b(1), value(next));
              await log.commit(next++);
            }
          })(),
          (async () => {
            for (const slot of reads) {
              assert.deepEqual(log.readCommitted(slot)?.value, value(slot), `slot ${slot}`);
              await new Promise((resolve) => setImmediate(resolve));
            }
          })(),
        ]);
        if (round % 4 === 3) {
          truncatedBelow += 7000;
          await log.truncatePrefix(truncatedBelow);
        }
      }
      // Written in the background, with the old checkpoint's slots merged in from it.
      assert.ok(coveredAddress() > covered, "the checkpoint was rewritten before close");
    }
    await using log = await ConsensusLog.open({ dir: dir.path, ...options });
    const stats = log.stats();
    assert.equal(stats.committedCount, count + 12 * 400 - truncatedBelow);
    for (let slot = truncatedBelow - 10; slot < count + 12 * 400; slot += 37) {
      if (slot < truncatedBelow) assert.equal(log.read(slot), undefined, `slot ${slot}`);
      else assert.deepEqual(log.readCommitted(slot)?.value, value(slot), `slot ${slot}`);
    }
  });

  test("an index checkpoint of the earlier format (version 1) is still used at reopen", async () => {
    using dir = tempDir();
    const count = CHUNK_PAIRS + 50;
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL, durableAccepts: true });
      for (let slot = 0; slot < count; slot++) void log.accept(slot, b(1), entryBytes(slot, 30));
      await log.commitMany(Array.from({ length: count - 2 }, (_, i) => i));
    }
    // The same checkpoint as version 1 wrote it: pairs then journal, one CRC over bytes 4..end.
    const path = `${dir.path}/index`;
    const v2 = fs.readFileSync(path);
    const header = new DataView(v2.buffer, v2.byteOffset, INDEX_CHECKPOINT_HEADER_BYTES);
    const committed = header.getFloat64(24, true);
    const journaled = header.getFloat64(32, true);
    assert.deepEqual([committed, journaled], [count - 2, 2]);
    const pairsBytes = 16 * (committed + journaled);
    const v1 = new Uint8Array(INDEX_CHECKPOINT_HEADER_BYTES + pairsBytes);
    v1.set(v2.subarray(0, 24));
    v1.set(
      v2.subarray(INDEX_CHECKPOINT_HEADER_BYTES, INDEX_CHECKPOINT_HEADER_BYTES + pairsBytes),
      64,
    );
    const view = new DataView(v1.buffer);
    view.setUint32(8, 1, true);
    view.setFloat64(24, committed + journaled, true);
    view.setUint32(0, checksum(v1.subarray(4), 0), true);
    fs.writeFileSync(path, v1);
    await using log = await ConsensusLog.open({ dir: dir.path, ...SMALL, durableAccepts: true });
    assert.deepEqual(log.readCommitted(count - 3)!.value, entryBytes(count - 3, 30));
    assert.deepEqual(log.read(count - 1)?.committed, false, "a journaled accept is restored");
    const stats = log.stats();
    assert.equal(stats.recoveryReplayedBytes, 0, "nothing scanned: the checkpoint was used");
    assert.equal(stats.committedCount, count - 2);
    assert.equal(stats.acceptedCount, 2);
  });

  test("a reopen takes committed slots from the index checkpoint as they are looked up; accepts, truncation, sharing and the next checkpoint see every one", async () => {
    using dir = tempDir();
    const options = { ...SMALL, segmentSizeBytes: 256 * 1024 };
    const count = 2 * CHUNK_PAIRS + 700;
    const gap = (slot: number) => slot % 13 === 5;
    const value = (slot: number) => entryBytes(slot, 40 + (slot % 50));
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...options });
      // Committed out of slot order, so a high slot may lie in the first segment.
      const order = Array.from({ length: count }, (_, i) => (i * 7919) % count).filter((s) =>
        !gap(s)
      );
      for (let i = 0; i < order.length; i += 500) {
        const batch = order.slice(i, i + 500);
        for (const slot of batch) log.accept(slot, b(1), value(slot));
        await log.commitMany(batch);
      }
    }
    // Journaled accepts too (they are restored at open, not looked up).
    {
      await using log = await ConsensusLog.open({
        dir: dir.path,
        ...options,
        durableAccepts: true,
      });
      await log.accept(count + 1, b(2), value(count + 1));
      await log.accept(count + 2, b(2), value(count + 2));
      log.accept(count + 3, b(2), value(0));
      await log.commit(count + 3);
    }
    const truncatedBelow = Math.floor(count / 2) + 3;
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...options });
      // Slots below the truncation only: those it keeps are still in the checkpoint alone.
      for (let slot = 0; slot < truncatedBelow; slot += 89) {
        const read = log.read(slot);
        if (gap(slot)) assert.equal(read, undefined, `slot ${slot} is empty`);
        else assert.deepEqual([read?.committed, read?.value], [true, value(slot)], `slot ${slot}`);
      }
      assert.deepEqual(log.read(count + 1)?.committed, false, "a journaled accept is restored");
      assert.deepEqual(log.read(count + 2)?.value, value(count + 2));
      // A committed slot never looked up still refuses an accept; a gap takes one.
      assert.throws(() => log.accept(1001, b(9), new Uint8Array(1)), AlreadyCommittedError);
      assert.ok(!gap(1001));
      log.accept(5, b(3), value(5));
      await log.commit(5);
      await log.truncatePrefix(truncatedBelow);
      // Every slot goes into the shared index first: an attached log (a Worker's, here on this
      // thread) finds slots no lookup of the owner took from the checkpoint.
      const attached = ConsensusLog.attach(log.share());
      try {
        for (const slot of [truncatedBelow + 1, count - 1, count - 2]) {
          if (gap(slot)) continue;
          assert.deepEqual(attached.read(slot)?.value, value(slot), `attached: slot ${slot}`);
        }
      } finally {
        attached.detach();
      }
      const listed = [...log.committed()].map((entry) => entry.slot);
      const expected: number[] = [];
      for (let slot = truncatedBelow; slot < count; slot++) if (!gap(slot)) expected.push(slot);
      expected.push(count + 3);
      assert.deepEqual(listed, expected);
    }
    {
      await using log = await ConsensusLog.open({ dir: dir.path, ...options });
      // Truncation kept every segment holding a slot it kept, including those only in the
      // checkpoint then; close wrote a checkpoint that covers everything.
      for (let slot = truncatedBelow - 30; slot < count; slot++) {
        const read = log.read(slot);
        if (slot < truncatedBelow || gap(slot)) assert.equal(read, undefined, `slot ${slot}`);
        else assert.deepEqual(read?.value, value(slot), `slot ${slot}`);
      }
      const stats = log.stats();
      assert.equal(stats.recoveryReplayedBytes, 0);
      assert.equal(stats.committedCount, expected(truncatedBelow, count, gap) + 1);
      assert.equal(stats.acceptedCount, 2);
    }
  });
});

describe("ConsensusLog before and after share()", () => {
  test("the owner fences its accepts and commits for Workers only once it has shared the log", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({ dir: dir.path });
    // Every atomic store and compare-and-swap, with the buffer it went to.
    const calls: { op: string; buffer: ArrayBufferLike }[] = [];
    const store = Atomics.store;
    const swap = Atomics.compareExchange;
    const load = Atomics.load;
    const spy = {
      load: ((array: Int32Array, index: number) => {
        calls.push({ op: "load", buffer: array.buffer });
        return load(array, index);
      }) as typeof Atomics.load,
      store: ((array: Int32Array, index: number, value: number) => {
        calls.push({ op: "store", buffer: array.buffer });
        return store(array, index, value);
      }) as typeof Atomics.store,
      compareExchange: ((array: Int32Array, index: number, expected: number, value: number) => {
        calls.push({ op: "compareExchange", buffer: array.buffer });
        return swap(array, index, expected, value);
      }) as typeof Atomics.compareExchange,
    };
    const watched = async (work: () => Promise<void>) => {
      calls.length = 0;
      Object.assign(Atomics, spy);
      try {
        await work();
      } finally {
        Object.assign(Atomics, { store, compareExchange: swap, load });
      }
      return calls.slice();
    };
    const acceptAndCommit = (slot: number) => async () => {
      log.accept(slot, b(1), entryBytes(slot));
      assert.equal(log.read(slot)?.committed, false);
      await log.commitMany([slot, slot + 1000]); // two slots: the batch path
    };
    // The index leaves of slots 0–63 and 1000–1063 exist before (making a leaf links it in with
    // a compare-and-swap, shared or not).
    log.accept(0, b(1), entryBytes(0));
    log.accept(1001, b(1), entryBytes(1001));
    const accept = (slot: number) => () =>
      Promise.resolve(void log.accept(slot, b(1), entryBytes(slot)));
    const soloAccept = await watched(accept(3));
    const walk = () => Promise.resolve(void log.stats()); // walks the whole index
    const soloWalk = await watched(walk);
    const solo = await watched(acceptAndCommit(1));
    log.accept(1002, b(1), entryBytes(1002));
    const handle = log.share();
    const sharedAccept = await watched(accept(4));
    const sharedWalk = await watched(walk);
    const shared = await watched(acceptAndCommit(2));
    const on = (list: typeof calls, buffer: ArrayBufferLike, op: string) =>
      list.filter((call) => call.buffer === buffer && call.op === op).length;
    // Alone, the owner publishes no epoch section and swaps no slot word: no Worker can look.
    assert.equal(on(solo, handle.epochs, "store"), 0);
    assert.equal(on(solo, handle.index, "compareExchange"), 0);
    assert.equal(on(solo, handle.region.data, "compareExchange"), 0);
    // Shared, it enters and leaves a section per accept and read, swaps the accepted word in,
    // freezes both slots, and frees both entries with a compare-and-swap.
    assert.ok(on(shared, handle.epochs, "store") >= 4, "epoch sections published");
    assert.equal(on(shared, handle.index, "compareExchange"), 3);
    assert.equal(on(shared, handle.region.data, "compareExchange"), 2);
    // An accept alone reads the index, epoch and control words with plain loads; shared, it
    // loads them atomically: the leaf generation and the slot word, the epoch, the promise flag.
    // So does a walk over the index: alone, only the root and the allocation mark, once each.
    assert.ok(on(soloWalk, handle.index, "load") <= 2, `${on(soloWalk, handle.index, "load")}`);
    assert.ok(on(sharedWalk, handle.index, "load") > 64, "a leaf's words, atomically, once shared");
    for (const [buffer, atomic] of [[handle.index, 2], [handle.epochs, 1], [handle.control, 1]]) {
      assert.equal(on(soloAccept, buffer as ArrayBufferLike, "load"), 0);
      assert.ok(on(sharedAccept, buffer as ArrayBufferLike, "load") >= (atomic as number));
    }
    for (const slot of [1, 2, 1001, 1002]) {
      assert.deepEqual(log.readCommitted(slot)?.value, entryBytes(slot), `slot ${slot}`);
    }
  });
});

/** A device whose index checkpoint files open for reading are kept track of, with their reads. */
class IndexFiles extends WrappingDevice {
  /** The open files of the index checkpoint (not its temp file), with their reads so far. */
  readonly files = new Set<{ reads: number }>();

  protected override wrapFile(file: DeviceFile, path: string): DeviceFile {
    if (!path.endsWith("/index")) return forwardingFile(file);
    const handle = { reads: 0 };
    this.files.add(handle);
    return forwardingFile(file, {
      read: (into, position) => {
        handle.reads++;
        return file.read(into, position);
      },
      close: () => {
        this.files.delete(handle);
        file.close();
      },
    });
  }
}

/** The value of `slot` in the logs of the lazy-reopen tests. */
const lazyValue = (slot: number) => entryBytes(slot % 1000, 20);

/** A closed log in `/log` of `count` committed slots (0 to `count` − 1), on a new device. */
async function committedLog(count: number): Promise<MemoryDevice> {
  const device = new MemoryDevice();
  const log = await ConsensusLog.open({ dir: "/log", device, ...SMALL });
  for (let first = 0; first < count; first += 2000) {
    const slots = Array.from({ length: Math.min(2000, count - first) }, (_, i) => first + i);
    for (const slot of slots) log.accept(slot, b(1), lazyValue(slot));
    await log.commitMany(slots);
  }
  await log.close();
  return device;
}

/** Commits `slots` (new ones) in one batch. */
async function commitNew(log: ConsensusLog, slots: number[]): Promise<void> {
  for (const slot of slots) log.accept(slot, b(1), lazyValue(slot));
  await log.commitMany(slots);
}

/** Waits (a turn at a time, 2000 at most) until `log` has written `count` index checkpoints. */
async function indexCheckpoints(log: ConsensusLog, count: number): Promise<void> {
  for (let turn = 0; turn < 2000 && log.stats().indexCheckpoints < count; turn++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.equal(log.stats().indexCheckpoints, count);
}

describe("ConsensusLog after a lazy reopen", () => {
  test("close's index checkpoint, stats() and committed(range) take no leaf that was never looked up; the checkpoint is the one a whole load writes", async () => {
    const count = 20_000;
    const device = await committedLog(count);
    const truncatedBelow = 4321; // cuts a leaf
    // The same work on two copies of the log: one loads every slot first (committed() with no
    // range), one is left lazy.
    const work = async (copy: MemoryDevice, loadAll: boolean) => {
      const log = await ConsensusLog.open({ dir: "/log", device: copy, ...SMALL });
      if (loadAll) assert.equal([...log.committed()].length, count);
      for (const slot of [10, 4400, 12_345, 19_999]) {
        assert.deepEqual(log.readCommitted(slot)?.value, lazyValue(slot), `slot ${slot}`);
      }
      await commitNew(log, Array.from({ length: 300 }, (_, i) => count + 3 * i));
      log.accept(count + 1, b(1), lazyValue(0)); // accepted, never committed
      log.accept(count + 2000, b(1), lazyValue(0));
      await log.truncatePrefix(truncatedBelow);
      await commitNew(log, [count + 1000, count + 1001]);
      const before = log.stats();
      const listed = [...log.committed({ from: 9000, to: 9100 })].map((entry) => entry.slot);
      const after = log.stats();
      await log.close();
      return { before, after, listed, index: fileBytes(copy, "/log/index") };
    };
    const lazyCopy = device.crash();
    const lazy = await work(lazyCopy, false);
    const whole = await work(device.crash(), true);
    assert.deepEqual(lazy.index, whole.index, "the same checkpoint file");
    const committed = count - truncatedBelow + 302;
    for (const stats of [lazy.before, lazy.after, whole.before]) {
      assert.deepEqual([stats.committedCount, stats.acceptedCount], [committed, 2]);
    }
    assert.deepEqual(lazy.listed, Array.from({ length: 100 }, (_, i) => 9000 + i));
    assert.deepEqual(whole.listed, lazy.listed);
    // 20k slots are 313 leaves of 768 B; the lazy log holds the few it looked up or committed to.
    assert.ok(whole.before.indexBytes > 240_000, `${whole.before.indexBytes} index bytes`);
    assert.ok(lazy.before.indexBytes < 32 * 1024, `${lazy.before.indexBytes} index bytes`);
    // The listed range spans three leaves.
    const grown = lazy.after.indexBytes - lazy.before.indexBytes;
    assert.ok(grown > 0 && grown <= 3 * 768, `committed({ from, to }) took ${grown} bytes`);
    // The checkpoint covers everything, and every slot reads back.
    const log = await ConsensusLog.open({ dir: "/log", device: lazyCopy, ...SMALL });
    try {
      assert.equal(log.stats().recoveryReplayedBytes, 0);
      for (let slot = truncatedBelow - 5; slot < count; slot += 7) {
        if (slot < truncatedBelow) assert.equal(log.read(slot), undefined);
        else assert.deepEqual(log.readCommitted(slot)?.value, lazyValue(slot), `slot ${slot}`);
      }
    } finally {
      await log.close();
    }
  });

  test("a background index checkpoint after a lazy reopen takes no leaf; the log then reads slots never looked up from the new file", async () => {
    const count = 20_000;
    const device = new IndexFiles("index-files", await committedLog(count));
    const options = { dir: "/log", device, ...SMALL, indexCheckpointIntervalBytes: 64 * 1024 };
    {
      await using log = await ConsensusLog.open(options);
      const empty = log.stats().indexBytes;
      assert.equal(device.files.size, 1, "the old checkpoint is open");
      const [old] = device.files;
      assert.deepEqual(log.readCommitted(10)?.value, lazyValue(10));
      let next = count;
      // About 70 KiB of commit records: past the interval.
      for (let batch = 0; batch < 3; batch++) {
        await commitNew(log, Array.from({ length: 400 }, () => next++));
      }
      await log.truncatePrefix(100);
      await indexCheckpoints(log, 1);
      // 1200 new slots take 19 leaves; the 313 of the old checkpoint would take 240 KB.
      const grown = log.stats().indexBytes - empty;
      assert.ok(grown < 24 * 1024, `${grown} index bytes taken`);
      assert.equal(device.files.size, 1, "one checkpoint is open");
      const [current] = device.files;
      assert.notEqual(current, old, "the new one: the old one was closed");
      const reads = current.reads;
      assert.deepEqual(log.readCommitted(15_000)?.value, lazyValue(15_000));
      assert.equal(current.reads, reads + 1, "a slot never looked up is read from the new file");
      assert.equal(log.stats().committedCount, count - 100 + 1200);
    }
    await using log = await ConsensusLog.open(options);
    assert.equal(log.stats().recoveryReplayedBytes, 0);
    assert.equal(log.stats().committedCount, count - 100 + 1200);
    for (let slot = 95; slot < count + 1200; slot += 11) {
      if (slot < 100) assert.equal(log.read(slot), undefined);
      else assert.deepEqual(log.readCommitted(slot)?.value, lazyValue(slot), `slot ${slot}`);
    }
  });

  test("a damaged chunk of the old checkpoint met by the merge is replaced by a scan of the log; the new checkpoint lists every slot", async () => {
    const count = 3 * CHUNK_PAIRS + 100;
    const memory = await committedLog(count);
    // A byte of chunk 1, which nothing but the merge reads.
    const bytes = fileBytes(memory, "/log/index");
    bytes[INDEX_CHECKPOINT_HEADER_BYTES + 16 * (CHUNK_PAIRS + 50)] ^= 0x20;
    memory.remove("/log/index");
    const file = memory.open("/log/index", { create: true });
    file.write(bytes, 0);
    file.close();
    const device = new IndexFiles("index-files", memory);
    const options = { dir: "/log", device, ...SMALL, indexCheckpointIntervalBytes: 64 * 1024 };
    {
      await using log = await ConsensusLog.open(options);
      assert.deepEqual(log.readCommitted(10)?.value, lazyValue(10));
      assert.deepEqual(log.readCommitted(count - 1)?.value, lazyValue(count - 1));
      assert.equal(log.stats().committedCount, count, "counted from the directory");
      assert.equal(log.stats().recoveryReplayedBytes, 0, "no chunk found damaged yet");
      await log.truncatePrefix(70);
      let next = count;
      for (let batch = 0; batch < 3; batch++) {
        await commitNew(log, Array.from({ length: 400 }, () => next++));
      }
      await indexCheckpoints(log, 1);
      const stats = log.stats();
      assert.ok(stats.recoveryReplayedBytes > 0, "the merge found the damage, and scanned");
      assert.equal(stats.committedCount, count - 70 + 1200);
      assert.equal(device.files.size, 0, "every slot is in the index: no checkpoint attached");
    }
    await using log = await ConsensusLog.open(options);
    assert.equal(log.stats().recoveryReplayedBytes, 0);
    assert.equal(log.stats().committedCount, count - 70 + 1200);
    for (const entry of log.committed({ from: 60, to: count })) {
      assert.deepEqual(entry.value, lazyValue(entry.slot), `slot ${entry.slot}`);
    }
    assert.equal([...log.committed({ from: 60, to: count })].length, count - 70);
  });
});
