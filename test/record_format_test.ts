import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  checkRecord,
  headerAddress,
  headerKind,
  headerLength,
  RecordKind,
  recordSizeBytes,
  sealCopiedRecord,
  sealRecord,
  writeHeader,
} from "../src/record_format.ts";
import { native as runtimeNative } from "../ffi/mod.ts";
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

  test("a record sealed as it is staged has the checksum sealRecord gives it, on every path", () => {
    // A staging buffer with records at every 8-byte offset class, payloads of 0 to 300 bytes in
    // one or two parts, and seeds on both sides of 2^31 (checksum() splits those).
    const buffer = new ArrayBuffer(64 * 1024);
    const staged = new Uint8Array(buffer);
    const words = new Uint32Array(buffer);
    const native = runtimeNative.rangeChecksum(buffer);
    const random = seededRandom(11);
    let offset = 0;
    for (let i = 0; i < 400; i++) {
      const length = i < 40 ? i : Math.floor(random() * 301);
      const payload = Uint8Array.from({ length }, () => random() * 256);
      const split = Math.min(length, i % 3 === 0 ? 24 : 0);
      const head = split > 0 ? payload.slice(0, split) : undefined;
      const body = payload.slice(split);
      const seed = i % 2 ? 0x8000_0000 + i * 7919 : i * 7919;
      const address = 2 ** 33 + offset;
      const expected = record(address, payload, seed).words[0];
      for (const rangeChecksum of [undefined, native]) {
        words.fill(0xffff_ffff, offset >>> 2, (offset >>> 2) + 4);
        writeHeader(words, offset, length, address, RecordKind.entry);
        if (head) staged.set(head, offset + 16);
        staged.set(body, offset + 16 + split);
        sealCopiedRecord(staged, words, offset, head, body, seed, rangeChecksum);
        assert.equal(
          words[offset >>> 2],
          expected,
          `record ${i} ${rangeChecksum ? "native" : "JS"}`,
        );
        const limit = offset + recordSizeBytes(length);
        assert.equal(checkRecord(staged, words, offset, limit, address, seed, 300), undefined);
      }
      offset += recordSizeBytes(length);
    }
  });

  test("a record staged from shared memory is summed as copied, not as the part is now", () => {
    // Another thread may write a SharedArrayBuffer between the copy and the sum: the copy is what
    // reaches the disk, so it must be what the checksum covers. A plain buffer cannot change in
    // between (one thread), so its part is summed directly. Simulated: the copy differs.
    const copied = new Uint8Array([1, 2, 3, 4, 5, 6]);
    const shared = new Uint8Array(new SharedArrayBuffer(6));
    shared.set([9, 9, 9, 9, 9, 9]);
    const staged = new Uint8Array(64);
    const words = new Uint32Array(staged.buffer);
    writeHeader(words, 0, 6, 64, RecordKind.entry);
    staged.set(copied, 16);
    sealCopiedRecord(staged, words, 0, undefined, shared, 77, undefined);
    assert.equal(words[0], record(64, copied).words[0]);
    assert.equal(checkRecord(staged, words, 0, 64, 64, 77, 100), undefined);
    sealCopiedRecord(staged, words, 0, undefined, shared.slice(), 77, undefined);
    assert.equal(words[0], record(64, shared).words[0], "a plain part is summed itself");
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
