/**
 * The checkpoint: a double-buffered, checksummed commit record in the file `checkpoint`, two 4 KiB
 * slots. Checkpoint number N goes to slot N % 2, so a torn write can only damage the slot being
 * replaced; the newest valid slot wins. It records a commit point known to be durable, the begin
 * address and the latest cookie; recovery scans and verifies only what follows it.
 *
 * Slot layout (little-endian):
 *
 * | offset | size | field                                         |
 * |-------:|-----:|-----------------------------------------------|
 * |      0 |    4 | CRC-32 of bytes 4 .. 64 + cookie length       |
 * |      4 |    4 | magic `HLCP`                                  |
 * |      8 |    4 | format version                                |
 * |     12 |    4 | log id                                        |
 * |     16 |    8 | checkpoint number                             |
 * |     24 |    8 | commit number                                 |
 * |     32 |    8 | begin address                                 |
 * |     40 |    8 | committed-until address                       |
 * |     48 |    4 | segment size in bytes                         |
 * |     52 |    4 | flags (bit 0: written by a clean close)       |
 * |     56 |    4 | cookie length (0xffffffff: no cookie)         |
 * |     64 |    … | cookie                                        |
 *
 * @module
 */
import { checksum } from "./checksum.ts";
import {
  CHECKPOINT_FIXED_BYTES,
  CHECKPOINT_SLOT_BYTES,
  COOKIE_SIZE_BYTES_MAX,
  FORMAT_VERSION,
} from "./constants.ts";
import type { DeviceFile } from "./device.ts";
import { CorruptionError } from "./errors.ts";

const CHECKPOINT_MAGIC = 0x5043_4c48; // "HLCP" little-endian
const NO_COOKIE = 0xffff_ffff;
const FLAG_CLEAN = 1;

/** The file name of the checkpoint. */
export const CHECKPOINT_FILE_NAME = "checkpoint";
/** Size of the checkpoint file: two slots. */
export const CHECKPOINT_FILE_BYTES = 2 * CHECKPOINT_SLOT_BYTES;

/** What a checkpoint records. */
export interface Checkpoint {
  logId: number;
  checkpointNumber: number;
  commitNumber: number;
  beginAddress: number;
  committedUntilAddress: number;
  segmentSizeBytes: number;
  /** True if written by `close()` with nothing after it. */
  clean: boolean;
  cookie: Uint8Array | undefined;
}

/** Encodes one slot. */
export function encodeCheckpoint(point: Checkpoint): Uint8Array {
  const slot = new Uint8Array(CHECKPOINT_SLOT_BYTES);
  const view = new DataView(slot.buffer);
  const cookieLength = point.cookie?.length ?? 0;
  if (cookieLength > COOKIE_SIZE_BYTES_MAX) throw new Error("assertion failed: cookie too large");
  view.setUint32(4, CHECKPOINT_MAGIC, true);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, point.logId, true);
  view.setFloat64(16, point.checkpointNumber, true);
  view.setFloat64(24, point.commitNumber, true);
  view.setFloat64(32, point.beginAddress, true);
  view.setFloat64(40, point.committedUntilAddress, true);
  view.setUint32(48, point.segmentSizeBytes, true);
  view.setUint32(52, point.clean ? FLAG_CLEAN : 0, true);
  view.setUint32(56, point.cookie ? cookieLength : NO_COOKIE, true);
  if (point.cookie) slot.set(point.cookie, CHECKPOINT_FIXED_BYTES);
  view.setUint32(0, checksum(slot.subarray(4, CHECKPOINT_FIXED_BYTES + cookieLength), 0), true);
  return slot;
}

/** Decodes one slot, or `undefined` if it does not validate (torn, zero or damaged). */
export function decodeCheckpoint(slot: Uint8Array): Checkpoint | undefined {
  if (slot.length < CHECKPOINT_SLOT_BYTES) return undefined;
  const view = new DataView(slot.buffer, slot.byteOffset, CHECKPOINT_SLOT_BYTES);
  if (view.getUint32(4, true) !== CHECKPOINT_MAGIC) return undefined;
  const rawCookieLength = view.getUint32(56, true);
  const hasCookie = rawCookieLength !== NO_COOKIE;
  const cookieLength = hasCookie ? rawCookieLength : 0;
  // Hostile lengths are rejected before any read or allocation that depends on them.
  if (cookieLength > COOKIE_SIZE_BYTES_MAX) return undefined;
  const sum = checksum(slot.subarray(4, CHECKPOINT_FIXED_BYTES + cookieLength), 0);
  if (sum !== view.getUint32(0, true)) return undefined;
  if (view.getUint32(8, true) !== FORMAT_VERSION) return undefined;
  const point: Checkpoint = {
    logId: view.getUint32(12, true),
    checkpointNumber: view.getFloat64(16, true),
    commitNumber: view.getFloat64(24, true),
    beginAddress: view.getFloat64(32, true),
    committedUntilAddress: view.getFloat64(40, true),
    segmentSizeBytes: view.getUint32(48, true),
    clean: (view.getUint32(52, true) & FLAG_CLEAN) !== 0,
    cookie: hasCookie
      ? slot.slice(CHECKPOINT_FIXED_BYTES, CHECKPOINT_FIXED_BYTES + cookieLength)
      : undefined,
  };
  const addressesValid = [point.checkpointNumber, point.commitNumber, point.beginAddress]
    .concat(point.committedUntilAddress)
    .every((n) => Number.isSafeInteger(n) && n >= 0);
  if (!addressesValid || point.beginAddress > point.committedUntilAddress) return undefined;
  return point;
}

/**
 * What {@linkcode readCheckpoint} reads into, made once per thread: every open reads the
 * checkpoint, and a fresh 8 KiB buffer cost 5–8 µs there (allocation and the collections it brings
 * on). Nothing keeps a view of it: a decoded cookie is a copy.
 */
let readScratch: Uint8Array | undefined;

/** Reads both slots of `file` and returns the newest valid checkpoint. */
export function readCheckpoint(file: DeviceFile): Checkpoint {
  const bytes = readScratch ??= new Uint8Array(CHECKPOINT_FILE_BYTES);
  // Bytes past `count` are a previous file's: only slots read whole are decoded.
  const count = file.read(bytes, 0);
  const slots = [0, 1].map((i) =>
    count >= (i + 1) * CHECKPOINT_SLOT_BYTES
      ? decodeCheckpoint(bytes.subarray(i * CHECKPOINT_SLOT_BYTES, (i + 1) * CHECKPOINT_SLOT_BYTES))
      : undefined
  );
  const valid = slots.filter((slot): slot is Checkpoint => slot !== undefined);
  if (valid.length === 2 && valid[0].logId !== valid[1].logId) {
    throw new CorruptionError(file.path, 0, "the two checkpoint slots name different logs");
  }
  if (valid.length === 0) {
    throw new CorruptionError(file.path, 0, "no valid checkpoint slot");
  }
  return valid.reduce((a, b) => (b.checkpointNumber > a.checkpointNumber ? b : a));
}

/** Writes `point` into its slot (`checkpointNumber % 2`); the caller syncs. */
export function writeCheckpoint(file: DeviceFile, point: Checkpoint): void {
  file.write(encodeCheckpoint(point), (point.checkpointNumber % 2) * CHECKPOINT_SLOT_BYTES);
}
