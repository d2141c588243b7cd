/**
 * Segment files: `segment-<index, 12 digits>.hlog`, preallocated to `segmentSizeBytes`, starting
 * with a 64-byte header (little-endian) that names the log and the segment's place:
 *
 * | offset | size | field                                  |
 * |-------:|-----:|----------------------------------------|
 * |      0 |    4 | CRC-32 of bytes 4 .. 64, seeded 0      |
 * |      4 |    4 | magic `HLSG`                           |
 * |      8 |    4 | format version                         |
 * |     12 |    4 | log id                                 |
 * |     16 |    8 | segment index (float64)                |
 * |     24 |    4 | segment size in bytes                  |
 *
 * @module
 */
import { checksum } from "./checksum.ts";
import { FORMAT_VERSION, SEGMENT_HEADER_BYTES } from "./constants.ts";

const SEGMENT_MAGIC = 0x4753_4c48; // "HLSG" little-endian
const NAME_PATTERN = /^segment-(\d{12})\.hlog$/;

/** The file name of segment `index`. */
export function segmentFileName(index: number): string {
  return `segment-${String(index).padStart(12, "0")}.hlog`;
}

/** The segment index a file name denotes, or `undefined` if it is not a segment file. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = NAME_PATTERN.exec(name);
  return match ? Number(match[1]) : undefined;
}

/** Encodes the header of segment `index` of log `logId`. */
export function encodeSegmentHeader(
  logId: number,
  index: number,
  segmentSizeBytes: number,
): Uint8Array {
  const bytes = new Uint8Array(SEGMENT_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  view.setUint32(4, SEGMENT_MAGIC, true);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, logId, true);
  view.setFloat64(16, index, true);
  view.setUint32(24, segmentSizeBytes, true);
  view.setUint32(0, checksum(bytes.subarray(4), 0), true);
  return bytes;
}

/**
 * Why the header in `bytes` (at least 64 bytes) does not belong to segment `index` of this log, or
 * `undefined` if it does.
 */
export function segmentHeaderProblem(
  bytes: Uint8Array,
  logId: number,
  index: number,
  segmentSizeBytes: number,
): string | undefined {
  const found = readSegmentHeader(bytes, logId, segmentSizeBytes);
  if (typeof found === "string") return found;
  return found === index
    ? undefined
    : `segment header says index ${found}, file name says ${index}`;
}

/**
 * The segment index in `bytes` (at least 64 bytes) if they hold a valid header of a segment of
 * this log and segment size, else `undefined`.
 */
export function segmentHeaderIndex(
  bytes: Uint8Array,
  logId: number,
  segmentSizeBytes: number,
): number | undefined {
  const found = readSegmentHeader(bytes, logId, segmentSizeBytes);
  return typeof found === "string" ? undefined : found;
}

/** The index stored in the header in `bytes`, or why it is not one of this log's headers. */
function readSegmentHeader(
  bytes: Uint8Array,
  logId: number,
  segmentSizeBytes: number,
): number | string {
  const view = new DataView(bytes.buffer, bytes.byteOffset, SEGMENT_HEADER_BYTES);
  if (view.getUint32(4, true) !== SEGMENT_MAGIC) return "not a segment header (bad magic)";
  if (view.getUint32(0, true) !== checksum(bytes.subarray(4, SEGMENT_HEADER_BYTES), 0)) {
    return "segment header checksum mismatch";
  }
  const version = view.getUint32(8, true);
  if (version !== FORMAT_VERSION) return `unsupported format version ${version}`;
  const owner = view.getUint32(12, true);
  if (owner !== logId) return `segment belongs to log ${owner}, not ${logId}`;
  const size = view.getUint32(24, true);
  if (size !== segmentSizeBytes) return `segment size ${size}, log uses ${segmentSizeBytes}`;
  return view.getFloat64(16, true);
}
