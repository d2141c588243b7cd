import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  checkRecord,
  headerAddress,
  headerKind,
  headerLength,
  RecordKind,
  recordSizeBytes,
  sealRecord,
  writeHeader,
} from "../src/record_format.ts";
import { decodeCommitMarker, encodeCommitMarker } from "../src/recovery.ts";
import { seededRandom } from "./_helpers.ts";

function record(
  address: number,
  payload: Uint8Array,
  seed = 77,
  kind: RecordKind = RecordKind.entry,
) {
  const bytes = new Uint8Array(recordSizeBytes(payload.length) + 16);
  const words = new Uint32Array(bytes.buffer);
  writeHeader(words, 0, payload.length, address, kind);
  bytes.set(payload, 16);
  sealRecord(bytes, words, 0, seed);
  return { bytes, words };
}

describe("record format", () => {
  test("records are aligned to 8 bytes and include the 16-byte header", () => {
    assert.equal(recordSizeBytes(0), 16);
    assert.equal(recordSizeBytes(1), 24);
    assert.equal(recordSizeBytes(8), 24);
    assert.equal(recordSizeBytes(100), 120);
  });

  test("a sealed record validates and round-trips address, kind and length", () => {
    const address = 2 ** 40 + 72;
    const { bytes, words } = record(address, new Uint8Array([1, 2, 3]));
    assert.equal(checkRecord(bytes, words, 0, bytes.length, address, 77, 100), undefined);
    assert.equal(headerAddress(words, 0), address);
    assert.equal(headerKind(words, 0), RecordKind.entry);
    assert.equal(headerLength(words, 0), 3);
  });

  test("the checksum covers the address and the log identity", () => {
    const { bytes, words } = record(64, new Uint8Array([1, 2, 3]));
    assert.equal(checkRecord(bytes, words, 0, bytes.length, 72, 77, 100), "address");
    assert.equal(checkRecord(bytes, words, 0, bytes.length, 64, 78, 100), "checksum");
  });

  test("every single-bit flip of header or payload is detected", () => {
    const { bytes, words } = record(64, new Uint8Array([9, 8, 7, 6, 5]));
    for (let byte = 0; byte < 16 + 5; byte++) {
      for (let bit = 0; bit < 8; bit++) {
        bytes[byte] ^= 1 << bit;
        assert.notEqual(checkRecord(bytes, words, 0, bytes.length, 64, 77, 100), undefined);
        bytes[byte] ^= 1 << bit;
      }
    }
  });

  test("an all-zero header is the clean end, and hostile lengths are refused before reading", () => {
    const bytes = new Uint8Array(64);
    const words = new Uint32Array(bytes.buffer);
    assert.equal(checkRecord(bytes, words, 0, 64, 64, 77, 100), "empty");
    writeHeader(words, 0, 0xffff_fff0, 64, RecordKind.entry);
    assert.equal(checkRecord(bytes, words, 0, 64, 64, 77, 2 ** 31), "length");
    assert.equal(checkRecord(bytes, words, 0, 64, 64, 77, 100), "length");
  });

  test("fuzzed headers never validate or throw", () => {
    const random = seededRandom(5);
    const bytes = new Uint8Array(256);
    const words = new Uint32Array(bytes.buffer);
    for (let i = 0; i < 5000; i++) {
      for (let j = 0; j < 64; j++) bytes[j] = random() * 256;
      const problem = checkRecord(bytes, words, 0, bytes.length, 64, 77, 1 << 20);
      assert.notEqual(problem, undefined);
    }
  });

  test("commit markers round-trip their number, sync flag and cookie", () => {
    const cookie = new Uint8Array([1, 2, 3]);
    const decoded = decodeCommitMarker(
      encodeCommitMarker({ commitNumber: 42, synced: true, cookie }),
    );
    assert.deepEqual(decoded, { commitNumber: 42, synced: true, cookie });
    const bare = decodeCommitMarker(
      encodeCommitMarker({ commitNumber: 1, synced: false, cookie: undefined }),
    );
    assert.deepEqual(bare, { commitNumber: 1, synced: false, cookie: undefined });
    assert.equal(decodeCommitMarker(new Uint8Array(8)), undefined);
  });
});
