// The mutable region's chunk claims, driven deterministically: two handles on one region stand
// for two threads, and an epoch table that runs the other thread's step inside a call lets a
// test stop one claim at the exact point another slips in.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { EPOCH_WORDS, EpochTable } from "../src/epoch.ts";
import { MutableRegion, regionEntrySize } from "../src/mutable_region.ts";

const CHUNK = 8 * 1024;
/** A value whose entry takes exactly half a chunk. */
const HALF = new Uint8Array(CHUNK / 2 - regionEntrySize(0)).fill(7);

/** An epoch table that runs `interleave` before its n-th `isSafe` answer. */
class InterleavingEpochs extends EpochTable {
  calls = 0;
  at = -1;
  interleave: () => void = () => {};

  override isSafe(epoch: number, excludeSelf: boolean): boolean {
    if (++this.calls === this.at) this.interleave();
    return super.isSafe(epoch, excludeSelf);
  }
}

/** One thread's handle: its region, and where each of its slots' entries is now. */
function thread(region: MutableRegion) {
  const at = new Map<number, number>();
  const onMove = (slot: number, from: number, to: number) => {
    if (at.get(slot) !== from) return false;
    at.set(slot, to);
    return true;
  };
  return {
    region,
    put(slot: number): boolean {
      const offset = region.put(slot, 1, 0, HALF, onMove);
      if (offset >= 0) at.set(slot, offset);
      return offset >= 0;
    },
    free(slot: number): void {
      region.free(at.get(slot)!);
      at.delete(slot);
    },
  };
}

describe("MutableRegion", () => {
  test("two claims racing for the last two chunks leave one for compaction, so room is never lost", () => {
    const words = new Int32Array(new SharedArrayBuffer(EPOCH_WORDS * 4));
    const epochsA = new InterleavingEpochs(words, true);
    epochsA.register();
    const epochsB = new EpochTable(words, false);
    epochsB.register();
    const a = thread(new MutableRegion(4 * CHUNK, epochsA));
    const b = thread(new MutableRegion(4 * CHUNK, epochsB, a.region.buffers));
    assert.equal(a.region.chunkCount, 4);

    // Chunk 0 holds slots 0 and 1, another chunk slot 6; the other two are emptied (retired or
    // free again).
    for (let slot = 0; slot < 6; slot++) assert.ok(a.put(slot), `put ${slot}`);
    for (let slot = 2; slot < 6; slot++) a.free(slot);
    a.region.detach();
    assert.ok(a.put(6));
    a.region.detach();
    assert.equal(a.region.liveBytes, 3 * HALF.length + 3 * regionEntrySize(0));

    // A counts two claimable chunks (1 and 2: isSafe is asked for each); right after it has
    // counted them, B claims one. A must not then take the other: it is the last.
    epochsA.calls = 0;
    epochsA.at = 2;
    let bPut = false;
    epochsA.interleave = () => (bPut = b.put(10));
    a.put(11);
    assert.ok(bPut, "B claimed a chunk inside A's claim");

    // Everyone seals; 4 half-chunk entries live in a 4-chunk region. One more must fit: the
    // region can always compact while its live entries leave room.
    a.free(0);
    a.region.detach();
    b.region.detach();
    assert.ok(a.put(12), "a put that the live bytes leave room for");
    assert.ok(b.put(13), "and another");
  });

  test("a steady fill and free cycles through the lowest chunks, not the whole region", () => {
    const epochs = new EpochTable(new Int32Array(new SharedArrayBuffer(EPOCH_WORDS * 4)), true);
    epochs.register();
    const region = new MutableRegion(16 * CHUNK, epochs);
    assert.equal(region.chunkCount, 16);
    const value = new Uint8Array(100).fill(3);
    const live: number[] = [];
    let highest = 0;
    // 40 entries live at a time (about 5.6 KiB), 4 times the region's bytes put in all.
    for (let slot = 0; slot < (4 * 16 * CHUNK) / regionEntrySize(value.length); slot++) {
      const offset = region.put(slot, 1, 0, value, () => false);
      assert.ok(offset >= 0, `put ${slot}`);
      highest = Math.max(highest, offset);
      live.push(offset);
      if (live.length > 40) region.free(live.shift()!);
    }
    // Claims going round the region touched every chunk; now only the first few are used.
    assert.ok(highest < 3 * CHUNK, `highest offset ${highest}, chunk ${CHUNK}`);
  });
});
