/**
 * The record format of the durable tail. Every record starts at a multiple of 8 bytes with a
 * 16-byte little-endian header:
 *
 * | offset | size | field                                                      |
 * |-------:|-----:|------------------------------------------------------------|
 * |      0 |    4 | CRC-32 of bytes 4 .. 16 + length, seeded with the log id    |
 * |      4 |    4 | payload length in bytes                                    |
 * |      8 |    4 | the record's own address, low 32 bits                      |
 * |     12 |    2 | the record's own address, high 16 bits                     |
 * |     14 |    1 | kind: 1 entry, 2 padding, 3 commit marker                  |
 * |     15 |    1 | flags (reserved, 0)                                        |
 *
 * The checksum covers the address and is seeded with the log's identity, so a stale record in
 * reused space, a record written to the wrong place, or a segment of another log never validates.
 * Padding fills the end of a segment that the next record does not fit; its checksum covers only
 * its header. A commit marker ends every commit: recovery keeps exactly what precedes the last
 * valid marker.
 *
 * @module
 */
import type { RangeChecksum } from "../ffi/types.ts";
import { checksum, checksumWord } from "./checksum.ts";
import { RECORD_ALIGNMENT_BYTES, RECORD_HEADER_BYTES } from "./constants.ts";

/** Record kinds. */
export const RecordKind = { entry: 1, padding: 2, commit: 3 } as const;
/** A record kind value. */
export type RecordKind = typeof RecordKind[keyof typeof RecordKind];

/** Bytes of a commit marker payload before the cookie. */
export const COMMIT_MARKER_FIXED_BYTES = 16;
/** Commit marker flag: the commit was synced (durability other than "none"). */
export const COMMIT_FLAG_SYNCED = 1;

/** Total bytes a record with `payloadBytes` of payload occupies, header and alignment included. */
export function recordSizeBytes(payloadBytes: number): number {
  const raw = RECORD_HEADER_BYTES + payloadBytes;
  return (raw + RECORD_ALIGNMENT_BYTES - 1) & ~(RECORD_ALIGNMENT_BYTES - 1);
}

/**
 * Writes a header (checksum left 0) at byte `offset` of `bytes`/`words` (same buffer; `offset` a
 * multiple of 8).
 */
export function writeHeader(
  words: Uint32Array,
  offset: number,
  lengthBytes: number,
  address: number,
  kind: RecordKind,
): void {
  const w = offset >>> 2;
  words[w] = 0;
  words[w + 1] = lengthBytes;
  words[w + 2] = address >>> 0;
  words[w + 3] = ((address / 0x1_0000_0000) & 0xffff) | (kind << 16);
}

/** Checksummed bytes of the record at `offset`: `[offset + 4, offset + 16 + length)`. */
function checksummedLength(kind: number, lengthBytes: number): number {
  return kind === RecordKind.padding ? RECORD_HEADER_BYTES - 4 : RECORD_HEADER_BYTES - 4 +
    lengthBytes;
}

/** Computes and stores the checksum of the record whose header is at `offset`. */
export function sealRecord(
  bytes: Uint8Array,
  words: Uint32Array,
  offset: number,
  seed: number,
  rangeChecksum?: RangeChecksum,
) {
  const w = offset >>> 2;
  const kind = (words[w + 3] >>> 16) & 0xff;
  const span = checksummedLength(kind, words[w + 1]);
  // A range checksum sums `bytes.buffer` from its start, where `bytes` must start too.
  words[w] = rangeChecksum !== undefined
    ? rangeChecksum(offset + 4, span, seed)
    : checksum(bytes.subarray(offset + 4, offset + 4 + span), seed);
}

/**
 * The checksum of the header at `offset` alone (bytes 4 .. 16, seeded with `seed`): where a
 * record's checksum starts before it continues over the payload.
 */
export function headerChecksum(words: Uint32Array, offset: number, seed: number): number {
  const w = offset >>> 2;
  return checksumWord(words[w + 3], checksumWord(words[w + 2], checksumWord(words[w + 1], seed)));
}

/**
 * Seals the entry or commit record at `offset` of `bytes`/`words` whose payload was just copied
 * there from `head` (if any) followed by `body`, with no view made per record. With
 * `rangeChecksum` (over `bytes.buffer`, which `bytes` must start) it sums the record where it
 * lies. Without, it sums the header words in JS and then each part itself, which holds the bytes
 * of the copy unless another thread can write it (a part in shared memory: then the copy). The
 * header must be written.
 */
export function sealCopiedRecord(
  bytes: Uint8Array,
  words: Uint32Array,
  offset: number,
  head: Uint8Array | undefined,
  body: Uint8Array,
  seed: number,
  rangeChecksum: RangeChecksum | undefined,
): void {
  const w = offset >>> 2;
  if (rangeChecksum !== undefined) {
    words[w] = rangeChecksum(offset + 4, RECORD_HEADER_BYTES - 4 + words[w + 1], seed);
    return;
  }
  let sum = headerChecksum(words, offset, seed);
  let at = offset + RECORD_HEADER_BYTES;
  if (head !== undefined) {
    sum = checksumCopied(bytes, at, head, sum);
    at += head.length;
  }
  words[w] = checksumCopied(bytes, at, body, sum);
}

/** Checksum of `part`, copied to `bytes` at `at`: of the part, or of the copy if it is shared. */
function checksumCopied(bytes: Uint8Array, at: number, part: Uint8Array, seed: number): number {
  if (part.buffer instanceof ArrayBuffer) return checksum(part, seed);
  // A SharedArrayBuffer may change between the copy and here: the copy is what gets written.
  return checksum(bytes.subarray(at, at + part.length), seed);
}

/** Address stored in the header at `offset`. */
export function headerAddress(words: Uint32Array, offset: number): number {
  const w = offset >>> 2;
  return (words[w + 3] & 0xffff) * 0x1_0000_0000 + words[w + 2];
}

/** Kind stored in the header at `offset`. */
export function headerKind(words: Uint32Array, offset: number): number {
  return (words[(offset >>> 2) + 3] >>> 16) & 0xff;
}

/** Payload length stored in the header at `offset`. */
export function headerLength(words: Uint32Array, offset: number): number {
  return words[(offset >>> 2) + 1];
}

/** Why a record failed validation, or `undefined` if it is valid. */
export type RecordProblem =
  | "empty"
  | "address"
  | "kind"
  | "length"
  | "checksum";

/**
 * Validates the record at byte `offset` of a region that ends at `limit` (exclusive) and that
 * should sit at logical `address`. `"empty"` means the header is all zero (clean end of data).
 * `rangeChecksum`, over the buffer `bytes` views, sums the record where it lies (libdeflate: in
 * Deno, verifying a 1M-record replay spent a tenth of its time in `node:zlib`'s CRC and the view
 * it needs).
 */
export function checkRecord(
  bytes: Uint8Array,
  words: Uint32Array,
  offset: number,
  limit: number,
  address: number,
  seed: number,
  lengthBytesMax: number,
  rangeChecksum?: RangeChecksum,
): RecordProblem | undefined {
  if (offset + RECORD_HEADER_BYTES > limit) return "length";
  const w = offset >>> 2;
  if (words[w] === 0 && words[w + 1] === 0 && words[w + 2] === 0 && words[w + 3] === 0) {
    return "empty";
  }
  if (headerAddress(words, offset) !== address) return "address";
  const kind = headerKind(words, offset);
  if (kind !== RecordKind.entry && kind !== RecordKind.padding && kind !== RecordKind.commit) {
    return "kind";
  }
  const length = words[w + 1];
  // A hostile length is rejected before anything is read or allocated for it.
  if (kind !== RecordKind.padding && length > lengthBytesMax) return "length";
  if (offset + RECORD_HEADER_BYTES + (kind === RecordKind.padding ? 0 : length) > limit) {
    return "length";
  }
  const span = checksummedLength(kind, length);
  const sum = rangeChecksum !== undefined
    ? rangeChecksum(bytes.byteOffset + offset + 4, span, seed)
    : checksum(bytes.subarray(offset + 4, offset + 4 + span), seed);
  return sum === words[w] ? undefined : "checksum";
}
