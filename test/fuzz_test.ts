// Property-based fuzzing of every parser that reads bytes from disk: records, commit markers,
// checkpoint slots, segment headers, hard-state slots, index checkpoints and snapshot headers.
// Hostile input must be rejected without throwing, and hostile lengths must be refused before
// anything is allocated or read for them.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import * as fs from "node:fs";
import { join } from "node:path";
import { type Checkpoint, decodeCheckpoint, encodeCheckpoint } from "../src/checkpoint.ts";
import { decodeHardState } from "../src/hard_state.ts";
import { readIndexCheckpoint } from "../src/index_checkpoint.ts";
import { MemoryDevice } from "../src/memory_device.ts";
import {
  checkRecord,
  RecordKind,
  recordSizeBytes,
  sealRecord,
  writeHeader,
} from "../src/record_format.ts";
import { decodeCommitMarker, encodeCommitMarker } from "../src/recovery.ts";
import { encodeSegmentHeader, segmentHeaderProblem } from "../src/segment_format.ts";
import { SnapshotStore } from "../src/snapshot_store.ts";
import { CorruptionError } from "../src/errors.ts";

const RUNS = 300;
const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
const safeIndex = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

describe("fuzzing the on-disk parsers (fast-check)", () => {
  test("checkRecord never throws on arbitrary bytes, and never accepts them", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 512 }), fc.nat(1 << 20), (raw, max) => {
        const copy = new Uint8Array(raw.length - (raw.length % 8));
        copy.set(raw.subarray(0, copy.length));
        const words = new Uint32Array(copy.buffer);
        const problem = checkRecord(copy, words, 0, copy.length, 64, 0xabcd, max);
        assert.notEqual(problem, undefined);
      }),
      { numRuns: RUNS },
    );
  });

  test("a sealed record validates and any single flipped bit is detected", () => {
    fc.assert(
      fc.property(
        bytes(200),
        fc.integer({ min: 0, max: 2 ** 47 }).map((a) => a - (a % 8)),
        fc.nat(),
        (payload, address, flip) => {
          const record = new Uint8Array(recordSizeBytes(payload.length));
          const words = new Uint32Array(record.buffer);
          writeHeader(words, 0, payload.length, address, RecordKind.entry);
          record.set(payload, 16);
          sealRecord(record, words, 0, 7);
          assert.equal(checkRecord(record, words, 0, record.length, address, 7, 1000), undefined);
          const bit = flip % ((16 + payload.length) * 8);
          record[bit >> 3] ^= 1 << (bit & 7);
          assert.notEqual(
            checkRecord(record, words, 0, record.length, address, 7, 1000),
            undefined,
          );
        },
      ),
      { numRuns: RUNS },
    );
  });

  test("hostile record lengths are refused before reading (no allocation, no overrun)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1001, max: 0xffff_ffff }), (length) => {
        const record = new Uint8Array(64);
        const words = new Uint32Array(record.buffer);
        writeHeader(words, 0, length, 64, RecordKind.entry);
        assert.equal(checkRecord(record, words, 0, 64, 64, 7, 1000), "length");
      }),
      { numRuns: RUNS },
    );
  });

  test("commit markers round-trip, and arbitrary payloads decode or are refused without throwing", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.boolean(),
        fc.option(bytes(2048)),
        (n, synced, cookie) => {
          const marker = { commitNumber: n, synced, cookie: cookie ?? undefined };
          assert.deepEqual(decodeCommitMarker(encodeCommitMarker(marker)), marker);
        },
      ),
      { numRuns: RUNS },
    );
    fc.assert(fc.property(bytes(64), (raw) => void decodeCommitMarker(raw)), { numRuns: RUNS });
  });

  test("checkpoint slots round-trip; arbitrary slots are refused without throwing", () => {
    const point = fc.record({
      logId: fc.integer({ min: 0, max: 0xffff_ffff }),
      checkpointNumber: safeIndex,
      commitNumber: safeIndex,
      beginAddress: fc.integer({ min: 0, max: 2 ** 40 }),
      committedUntilAddress: fc.integer({ min: 2 ** 40, max: 2 ** 47 }),
      segmentSizeBytes: fc.integer({ min: 0, max: 0xffff_ffff }),
      clean: fc.boolean(),
      cookie: fc.option(bytes(2048), { nil: undefined }),
    });
    fc.assert(
      fc.property(
        point,
        (p: Checkpoint) => assert.deepEqual(decodeCheckpoint(encodeCheckpoint(p)), { ...p }),
      ),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 4096, maxLength: 4096 }),
        fc.boolean(),
        (raw, magic) => {
          if (magic) raw.set([0x48, 0x4c, 0x43, 0x50], 4);
          assert.equal(decodeCheckpoint(raw), undefined);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test("segment headers and hard-state slots: arbitrary bytes are refused without throwing", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), (raw) => {
        assert.notEqual(segmentHeaderProblem(raw, 1, 0, 65536), undefined);
        assert.equal(decodeHardState(1, raw), undefined);
      }),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), safeIndex, (logId, index) => {
        assert.equal(
          segmentHeaderProblem(encodeSegmentHeader(logId, index, 65536), logId, index, 65536),
          undefined,
        );
      }),
      { numRuns: RUNS },
    );
  });

  test("index checkpoint files of arbitrary bytes (hostile counts included) are ignored", () => {
    fc.assert(
      fc.property(bytes(400), fc.boolean(), fc.double(), fc.double(), fc.boolean(), (
        raw,
        magic,
        count,
        journaled,
        chunked,
      ) => {
        const device = new MemoryDevice();
        device.makeDirectory("/log");
        const file = device.open("/log/index", { create: true });
        const body = new Uint8Array(Math.max(raw.length, 64));
        body.set(raw);
        const view = new DataView(body.buffer);
        if (magic) {
          view.setUint32(4, 0x5849_4c48, true);
          view.setUint32(8, chunked ? 2 : 1, true); // both versions are read
          view.setUint32(12, 5, true);
          view.setFloat64(24, count, true);
          view.setFloat64(32, journaled, true);
        }
        file.write(body, 0);
        file.close();
        assert.equal(readIndexCheckpoint(device, "/log", 5), undefined);
      }),
      { numRuns: RUNS },
    );
  });

  test("snapshot files with arbitrary headers are reported and skipped, never served", async () => {
    const dir = fs.mkdtempSync(join(process.env.TMPDIR ?? "/tmp", "hybridlog-fuzz-"));
    try {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 300 }), async (raw) => {
          fs.writeFileSync(join(dir, "snapshot-0000000000000001.snap"), raw);
          const store = await SnapshotStore.open({ dir });
          try {
            assert.equal(await store.latest(), undefined);
            let failed = false;
            try {
              for await (const _ of store.open(1)) { /* drain */ }
            } catch (error) {
              failed = error instanceof CorruptionError ||
                (error as { code?: string }).code !== undefined;
            }
            assert.ok(failed, "a damaged snapshot is never streamed out as valid");
          } finally {
            await store.close();
          }
        }),
        { numRuns: 100 },
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
