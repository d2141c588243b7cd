/**
 * The index checkpoint: the slot index of a consensus log as of a committed address, so a reopen
 * loads it and verifies only the records written after it, instead of scanning the whole log.
 * It is an accelerator: if it is missing, stale or damaged, recovery scans from the begin address.
 *
 * File `index` (written whole: temp file, sync, rename, directory sync):
 * 64-byte header — 0 CRC-32 of bytes 4..end · 4 magic `HLIX` · 8 version · 12 log id ·
 * 16 covered address (float64) · 24 entry count (float64) — then per entry 16 bytes:
 * slot (float64) and the address of its record (float64; negative −(address+1) for a journaled
 * accept, positive for a committed entry).
 *
 * @module
 */
import { join } from "node:path";
import { checksum } from "./checksum.ts";
import { FORMAT_VERSION } from "./constants.ts";
import type { Device, FileView } from "./device.ts";

const MAGIC = 0x5849_4c48; // "HLIX"
const HEADER_BYTES = 64;
const ENTRY_BYTES = 16;

/** The file name of the index checkpoint. */
export const INDEX_FILE_NAME = "index";

/** A loaded index checkpoint. */
export interface IndexCheckpoint {
  /** Every record below this address is reflected in `entries`. */
  coveredAddress: number;
  /** Pairs: slot, then record address (negative −(a+1) marks a journaled accept). */
  entries: Float64Array;
  /** Ends `entries` (a view of the mapped file, when the device maps): detached after. */
  release(): void;
}

/** Bytes of the checkpoint's header: `entries` placed this far into their buffer are not copied. */
export const INDEX_CHECKPOINT_HEADER_BYTES = HEADER_BYTES;

/** Bytes the checksum of a checkpoint covers between pauses (about half a millisecond). */
const CHECKSUM_STEP_BYTES = 4 * 1024 * 1024;
/** Bytes of a checkpoint written per call. */
const WRITE_STEP_BYTES = 1024 * 1024;

/**
 * Writes the checkpoint for `entries` (pairs as in {@linkcode IndexCheckpoint}) atomically.
 * `syncs` false (durability "none") skips the syncs. When `entries` start exactly
 * {@linkcode INDEX_CHECKPOINT_HEADER_BYTES} into an `ArrayBuffer`, the header is written into
 * those first bytes and the file from that buffer: a checkpoint of millions of slots is not
 * copied (a 24 MB copy into a fresh buffer took 18–20 ms, mostly page faults). The bytes are
 * written off the JS thread, 1 MiB per call; `pause`, if given, is awaited between 4 MiB steps of
 * the checksum.
 */
export async function writeIndexCheckpoint(
  device: Device,
  dir: string,
  logId: number,
  coveredAddress: number,
  entries: Float64Array,
  syncs: boolean,
  pause?: () => Promise<void>,
): Promise<void> {
  const count = entries.length / 2;
  const inPlace = entries.byteOffset === HEADER_BYTES && entries.buffer instanceof ArrayBuffer;
  const bytes = inPlace
    ? new Uint8Array(entries.buffer, 0, HEADER_BYTES + entries.byteLength)
    : new Uint8Array(HEADER_BYTES + count * ENTRY_BYTES);
  const view = new DataView(bytes.buffer, 0, HEADER_BYTES);
  for (let at = 0; at < HEADER_BYTES; at += 4) view.setUint32(at, 0, true);
  view.setUint32(4, MAGIC, true);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, logId, true);
  view.setFloat64(16, coveredAddress, true);
  view.setFloat64(24, count, true);
  if (!inPlace) new Float64Array(bytes.buffer, HEADER_BYTES).set(entries);
  let sum = 0;
  for (let at = 4; at < bytes.length; at += CHECKSUM_STEP_BYTES) {
    if (at !== 4) await pause?.();
    sum = checksum(bytes.subarray(at, Math.min(at + CHECKSUM_STEP_BYTES, bytes.length)), sum);
  }
  view.setUint32(0, sum, true);
  const path = join(dir, INDEX_FILE_NAME);
  const tempPath = `${path}.tmp`;
  device.remove(tempPath);
  const file = device.open(tempPath, { create: true, exclusive: true });
  try {
    // In steps: a runtime's async write copies or writes much of a large buffer on the JS thread
    // (a 22 MB write held it 8 ms in Bun and 23–51 ms in Deno; 1 MiB, 0.01–0.7 ms).
    for (let at = 0; at < bytes.length; at += WRITE_STEP_BYTES) {
      await file.writeAsync(bytes.subarray(at, Math.min(at + WRITE_STEP_BYTES, bytes.length)), at);
    }
    if (syncs) await file.sync("full");
  } finally {
    file.close();
  }
  device.rename(tempPath, path);
  if (syncs) await device.syncDirectory(dir);
}

/**
 * Reads the index checkpoint of log `logId`, or `undefined` if absent or invalid. The file is
 * mapped when the device can (release the result when done with it), else read: reading 16 MB
 * (1M slots) into a new buffer took 10–13 ms here, mostly faults on its fresh pages, and mapping
 * it 0.5–1.8 ms.
 */
export function readIndexCheckpoint(
  device: Device,
  dir: string,
  logId: number,
): IndexCheckpoint | undefined {
  const path = join(dir, INDEX_FILE_NAME);
  if (!device.exists(path)) return undefined;
  const file = device.open(path, { readOnly: true });
  let mapped: FileView | undefined;
  try {
    const size = file.sizeBytes();
    if (size < HEADER_BYTES || (size - HEADER_BYTES) % ENTRY_BYTES !== 0) return undefined;
    try {
      mapped = file.view(size);
    } catch {
      mapped = undefined; // the CLI's read-only device maps nothing: read the file instead
    }
    let bytes = mapped?.bytes;
    if (bytes === undefined) {
      bytes = new Uint8Array(size);
      if (file.read(bytes, 0) !== size) return undefined;
    }
    const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
    if (view.getUint32(4, true) !== MAGIC || view.getUint32(8, true) !== FORMAT_VERSION) {
      return undefined;
    }
    if (view.getUint32(12, true) !== logId) return undefined;
    if (view.getFloat64(24, true) * ENTRY_BYTES !== size - HEADER_BYTES) return undefined;
    const sum = mapped?.checksum?.(4, size - 4, 0) ?? checksum(bytes.subarray(4), 0);
    if (view.getUint32(0, true) !== sum) return undefined;
    const release = mapped === undefined ? () => {} : mapped.release;
    const checkpoint = {
      coveredAddress: view.getFloat64(16, true),
      entries: new Float64Array(
        bytes.buffer,
        bytes.byteOffset + HEADER_BYTES,
        (size - HEADER_BYTES) / Float64Array.BYTES_PER_ELEMENT,
      ),
      release,
    };
    mapped = undefined; // the caller releases it
    return checkpoint;
  } finally {
    mapped?.release();
    file.close();
  }
}
