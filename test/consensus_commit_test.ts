/**
 * The accept and commit paths of `ConsensusLog`: ballots read once, the promised ballot.
 *
 * @module
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BallotError, ConsensusLog } from "../mod.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import { entryBytes } from "./_helpers.ts";

const BALLOT = { round: 1, node: 1 };
/** Small segments (roll-overs every few hundred records) and the smallest staging buffer. */
const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 4096 };

function open(device: MemoryDevice, options: object = {}): Promise<ConsensusLog> {
  return ConsensusLog.open({ dir: "/log", device, durability: "data", ...SMALL, ...options });
}

/** Asserts `slot` is committed with `entryBytes(slot, length)` under `ballot`. */
function assertCommitted(log: ConsensusLog, slot: number, length: number, ballot = BALLOT): void {
  assert.deepEqual(
    log.readCommitted(slot),
    { slot, ballot, committed: true, value: entryBytes(slot, length) },
    `slot ${slot}`,
  );
}

describe("ConsensusLog commit path", () => {
  test("accept reads a ballot's round and node once: a getter cannot slip a value past the checks", async () => {
    const log = await open(new MemoryDevice());
    let reads = 0;
    const shifty = {
      get round() {
        return reads++ === 0 ? 5 : -1; // valid when checked, invalid if read again
      },
      get node() {
        return reads++ === 1 ? 3 : 2 ** 40;
      },
    };
    log.accept(1, shifty, entryBytes(1, 8));
    assert.equal(reads, 2, "each field is read once");
    assert.deepEqual(log.read(1)?.ballot, { round: 5, node: 3 });
    await log.commit(1);
    assertCommitted(log, 1, 8, { round: 5, node: 3 });
    await log.close();
  });

  test("the promised ballot bounds accepts by round, then by node", async () => {
    const log = await open(new MemoryDevice());
    await log.promise({ round: 5, node: 2 });
    for (const lower of [{ round: 5, node: 1 }, { round: 4, node: 9 }]) {
      assert.throws(() => log.accept(1, lower, entryBytes(1, 8)), BallotError);
    }
    assert.equal(log.read(1), undefined, "a refused accept stores nothing");
    for (
      const [slot, ballot] of [[1, { round: 5, node: 2 }], [2, { round: 5, node: 3 }], [3, {
        round: 6,
        node: 0,
      }]] as const
    ) {
      log.accept(slot, ballot, entryBytes(slot, 8));
      assert.deepEqual(log.read(slot)?.ballot, ballot);
    }
    await log.close();
  });
});
