// Seeded damage to every kind of file a log keeps — segments, the checkpoint, the index checkpoint,
// the hard-state record, snapshots — by every kind of mutation: a flipped byte, a zeroed 512-byte
// sector, two swapped sectors, a truncated file, a segment of another log. Whatever the damage, the
// log either refuses to open with CorruptionError, or opens and then serves exactly the bytes that
// were written or throws CorruptionError for the damaged part: never wrong bytes, never a crash.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { ConsensusLog, CorruptionError, SnapshotStore } from "../mod.ts";
import { entryBytes, sameBytes, seededRandom, tempDir } from "./_helpers.ts";

const SECTOR = 512;
const OPTIONS = {
  segmentSizeBytes: 64 * 1024,
  bufferSizeBytes: 8 * 1024,
  mutableSizeBytes: 256 * 1024,
};
const SLOTS = 300;
const value = (slot: number) => entryBytes(slot, 50 + (slot * 13) % 400);
type Mutation = "flip" | "zero-sector" | "swap-sectors" | "truncate" | "foreign";
const MUTATIONS: Mutation[] = ["flip", "zero-sector", "swap-sectors", "truncate", "foreign"];

async function buildLog(path: string, slotCount = SLOTS): Promise<void> {
  await using log = await ConsensusLog.open({ dir: path, ...OPTIONS, durableAccepts: true });
  await log.promise({ round: 2, node: 1 });
  await log.setHardState({ term: 4, vote: 1 });
  for (let slot = 0; slot < slotCount; slot++) {
    await log.accept(slot, { round: 2, node: 1 }, value(slot));
  }
  await log.commitMany(Array.from({ length: slotCount - 20 }, (_, i) => i));
}

function mutate(path: string, mutation: Mutation, random: () => number, foreign: string): string {
  const bytes = fs.readFileSync(path);
  const sectors = Math.max(1, Math.floor(bytes.length / SECTOR));
  const sector = () => Math.floor(random() * sectors) * SECTOR;
  switch (mutation) {
    case "flip": {
      const at = Math.floor(random() * bytes.length);
      bytes[at] ^= 1 + Math.floor(random() * 255);
      fs.writeFileSync(path, bytes);
      return `flip at ${at}`;
    }
    case "zero-sector": {
      const at = sector();
      bytes.fill(0, at, at + SECTOR);
      fs.writeFileSync(path, bytes);
      return `zero sector at ${at}`;
    }
    case "swap-sectors": {
      const a = sector();
      const b = sector();
      const copy = bytes.slice(a, a + SECTOR);
      bytes.copyWithin(a, b, b + SECTOR);
      bytes.set(copy, b);
      fs.writeFileSync(path, bytes);
      return `swap sectors ${a} and ${b}`;
    }
    case "truncate": {
      const length = Math.floor(random() * bytes.length);
      fs.truncateSync(path, length);
      return `truncate to ${length}`;
    }
    case "foreign": {
      const name = path.slice(path.lastIndexOf("/") + 1);
      const other = join(foreign, name);
      if (!fs.existsSync(other)) return mutate(path, "flip", random, foreign);
      fs.copyFileSync(other, path);
      return `replaced by the same file of another log`;
    }
  }
}

/** Opens and reads everything; returns what went wrong that must never go wrong. */
async function verify(path: string): Promise<string | undefined> {
  let log: ConsensusLog;
  try {
    log = await ConsensusLog.open({ dir: path, ...OPTIONS });
  } catch (error) {
    return error instanceof CorruptionError ? undefined : `open threw ${error}`;
  }
  try {
    for (let slot = 0; slot < SLOTS; slot++) {
      try {
        const entry = log.read(slot);
        if (entry && !sameBytes(entry.value, value(slot))) return `slot ${slot} served wrong bytes`;
        if (entry && entry.ballot.round !== 2) return `slot ${slot} served a wrong ballot`;
      } catch (error) {
        if (!(error instanceof CorruptionError)) return `read(${slot}) threw ${error}`;
      }
    }
    try {
      for (const entry of log.committed()) {
        if (!sameBytes(entry.value, value(entry.slot))) return `committed() served wrong bytes`;
      }
    } catch (error) {
      if (!(error instanceof CorruptionError)) return `committed() threw ${error}`;
    }
    const promised = log.promised;
    if (promised && promised.round !== 2) return `promised ${promised.round}`;
    return undefined;
  } finally {
    await log.close().catch(() => {});
  }
}

describe("corruption of every file kind by every mutation kind", () => {
  for (
    const file of [
      "segment-000000000000.hlog",
      "segment-000000000001.hlog",
      "checkpoint",
      "index",
      "state",
    ]
  ) {
    test(
      `${file}: seeded damage is detected or harmless, never served`,
      { timeout: 120_000 },
      async () => {
        using dir = tempDir();
        const foreign = join(dir.path, "foreign");
        await buildLog(foreign);
        const pristine = join(dir.path, "pristine");
        await buildLog(pristine);
        const problems: string[] = [];
        let seed = 0;
        for (const mutation of MUTATIONS) {
          for (let k = 0; k < 4; k++) {
            const random = seededRandom(++seed * 7919);
            const victim = join(dir.path, `victim-${seed}`);
            fs.cpSync(pristine, victim, { recursive: true });
            const target = join(victim, file);
            assert.ok(fs.existsSync(target), `${file} exists`);
            const what = mutate(target, mutation, random, foreign);
            const problem = await verify(victim);
            if (problem) problems.push(`${what}: ${problem}`);
            fs.rmSync(victim, { recursive: true, force: true });
          }
        }
        assert.deepEqual(problems, []);
      },
    );
  }

  test("snapshots: seeded damage is detected and the previous valid snapshot is used", async () => {
    using dir = tempDir();
    const problems: string[] = [];
    let seed = 0;
    for (const mutation of MUTATIONS.filter((m) => m !== "foreign")) {
      for (let k = 0; k < 4; k++) {
        const random = seededRandom(++seed * 104729);
        const path = join(dir.path, `snapshots-${seed}`);
        {
          await using store = await SnapshotStore.open({ dir: path });
          await store.create(10, entryBytes(10, 5000));
          await store.create(20, entryBytes(20, 5000));
        }
        const what = mutate(join(path, "snapshot-0000000000000020.snap"), mutation, random, "");
        await using store = await SnapshotStore.open({ dir: path });
        const latest = await store.latest();
        if (latest?.slot === 20) {
          // The damage missed every checked byte (e.g. swapping a sector with itself): all intact.
          const data = new Uint8Array(await new Response(store.open(20)).arrayBuffer());
          if (!sameBytes(data, entryBytes(20, 5000))) problems.push(`${what}: served wrong bytes`);
        } else if (latest?.slot !== 10) problems.push(`${what}: latest is ${latest?.slot}`);
      }
    }
    assert.deepEqual(problems, []);
  });
});
