import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  type Checkpoint,
  decodeCheckpoint,
  encodeCheckpoint,
  readCheckpoint,
} from "../src/checkpoint.ts";
import { fsDevice } from "../src/fs_device.ts";
import {
  encodeSegmentHeader,
  parseSegmentFileName,
  segmentFileName,
  segmentHeaderProblem,
} from "../src/segment_format.ts";
import { seededRandom, tempDir } from "./_helpers.ts";

const point: Checkpoint = {
  logId: 1234,
  checkpointNumber: 7,
  commitNumber: 99,
  beginAddress: 64,
  committedUntilAddress: 2 ** 40,
  segmentSizeBytes: 1 << 20,
  clean: true,
  cookie: new Uint8Array([5, 6]),
};

describe("checkpoint slot", () => {
  test("round-trips every field", () => {
    assert.deepEqual(decodeCheckpoint(encodeCheckpoint(point)), point);
    const bare = { ...point, cookie: undefined, clean: false };
    assert.deepEqual(decodeCheckpoint(encodeCheckpoint(bare)), bare);
  });

  test("any flipped byte of the used part invalidates the slot", () => {
    const slot = encodeCheckpoint(point);
    for (let i = 0; i < 66; i++) {
      slot[i] ^= 0x10;
      assert.equal(decodeCheckpoint(slot), undefined, `byte ${i}`);
      slot[i] ^= 0x10;
    }
  });

  test("readCheckpoint sees only the file's own bytes: a short file never shows another's slot", () => {
    using dir = tempDir();
    const read = (name: string) => {
      const file = fsDevice.open(join(dir.path, name));
      try {
        return readCheckpoint(file).checkpointNumber;
      } finally {
        file.close();
      }
    };
    const slot = (checkpointNumber: number) => encodeCheckpoint({ ...point, checkpointNumber });
    const whole = new Uint8Array(2 * slot(0).length);
    whole.set(slot(8), 0);
    whole.set(slot(9), slot(0).length);
    fs.writeFileSync(join(dir.path, "whole"), whole);
    fs.writeFileSync(join(dir.path, "short"), slot(6)); // slot 1 missing: cut short
    assert.equal(read("whole"), 9);
    assert.equal(read("short"), 6, "slot 1 of the file read before is not this file's");
  });

  test("random slots are rejected without throwing (hostile cookie lengths included)", () => {
    const random = seededRandom(9);
    const slot = new Uint8Array(4096);
    for (let i = 0; i < 2000; i++) {
      for (let j = 0; j < 128; j++) slot[j] = random() * 256;
      slot.set([0x48, 0x4c, 0x43, 0x50], 4); // right magic, so the rest is what gets tested
      assert.equal(decodeCheckpoint(slot), undefined);
    }
  });
});

describe("segment header", () => {
  test("names and headers identify the log and the segment", () => {
    assert.equal(segmentFileName(3), "segment-000000000003.hlog");
    assert.equal(parseSegmentFileName("segment-000000000003.hlog"), 3);
    assert.equal(parseSegmentFileName("segment-3.hlog"), undefined);
    const header = encodeSegmentHeader(11, 3, 65536);
    assert.equal(segmentHeaderProblem(header, 11, 3, 65536), undefined);
    assert.match(segmentHeaderProblem(header, 12, 3, 65536)!, /belongs to log 11/);
    assert.match(segmentHeaderProblem(header, 11, 4, 65536)!, /index/);
    assert.match(segmentHeaderProblem(header, 11, 3, 131072)!, /size/);
    header[30] ^= 1;
    assert.match(segmentHeaderProblem(header, 11, 3, 65536)!, /checksum/);
  });
});
