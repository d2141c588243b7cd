/**
 * Opening a log directory: create it if new, otherwise find the newest valid checkpoint, check the
 * segment files, scan forward from the checkpoint verifying every record, and cut the log back to
 * the last valid commit marker. A torn tail is expected after a crash and is physically removed
 * (and that removal synced) before any new write; damage that a later durable commit proves was
 * acknowledged is corruption and fails the open.
 *
 * Why "a later commit proves it": commit N+1's bytes are written only after commit N's sync
 * completed. So if the scan stops at a damaged record after commit marker K, and a valid synced
 * marker numbered K+2 or more lies beyond the damage, marker K+1 and all before it were on stable
 * storage: the damage is not a torn write but corruption.
 *
 * @module
 */
import { dirname, join } from "node:path";
import {
  type Checkpoint,
  CHECKPOINT_FILE_BYTES,
  CHECKPOINT_FILE_NAME,
  encodeCheckpoint,
  readCheckpoint,
} from "./checkpoint.ts";
import { RECORD_ALIGNMENT_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "./constants.ts";
import type { Device, DeviceFile } from "./device.ts";
import { CorruptionError, InvalidArgumentError } from "./errors.ts";
import {
  checkRecord,
  COMMIT_FLAG_SYNCED,
  COMMIT_MARKER_FIXED_BYTES,
  headerAddress,
  headerKind,
  headerLength,
  RecordKind,
  type RecordProblem,
  recordSizeBytes,
} from "./record_format.ts";
import { segmentHeaderProblem } from "./segment_format.ts";
import { SegmentSet } from "./segments.ts";

/** What recovery hands to the tail. */
export interface RecoveredLog {
  checkpointFile: DeviceFile;
  checkpoint: Checkpoint;
  segments: SegmentSet;
  /** Where the next record goes; equals the committed-until address after recovery. */
  tailAddress: number;
  commitNumber: number;
  cookie: Uint8Array | undefined;
  /** True when recovery cut off a torn or uncommitted tail. */
  truncatedTail: boolean;
}

/** Options that shape a new log and bound what recovery accepts. */
export interface RecoveryOptions {
  segmentSizeBytes: number;
  /** Sync created files and directories (false for durability "none"). */
  syncs: boolean;
  /**
   * The names in `dir`, listed under its lock by the caller (a listing cost 5–17 µs here, Deno
   * the slower); listed here if absent. Files recovery creates or removes are not segments, so
   * one listing serves all of it.
   */
  names?: readonly string[];
}

/** A commit marker decoded from its payload. */
export interface CommitMarker {
  commitNumber: number;
  synced: boolean;
  cookie: Uint8Array | undefined;
}

const NO_COOKIE = 0xffff_ffff;

/** Encodes a commit marker payload. */
export function encodeCommitMarker(marker: CommitMarker): Uint8Array {
  const payload = new Uint8Array(COMMIT_MARKER_FIXED_BYTES + (marker.cookie?.length ?? 0));
  writeCommitMarker(new DataView(payload.buffer), payload, 0, marker);
  return payload;
}

/**
 * Writes a commit marker payload at byte `at` of `bytes` (with `view` over the same buffer): the
 * tail encodes it in place in its staging buffer.
 */
export function writeCommitMarker(
  view: DataView,
  bytes: Uint8Array,
  at: number,
  marker: CommitMarker,
): void {
  view.setFloat64(at, marker.commitNumber, true);
  view.setUint32(at + 8, marker.synced ? COMMIT_FLAG_SYNCED : 0, true);
  view.setUint32(at + 12, marker.cookie ? marker.cookie.length : NO_COOKIE, true);
  if (marker.cookie) bytes.set(marker.cookie, at + COMMIT_MARKER_FIXED_BYTES);
}

/** Decodes a commit marker payload (already checksum-verified), or `undefined` if malformed. */
export function decodeCommitMarker(payload: Uint8Array): CommitMarker | undefined {
  if (payload.length < COMMIT_MARKER_FIXED_BYTES) return undefined;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const commitNumber = view.getFloat64(0, true);
  const cookieLength = view.getUint32(12, true);
  const hasCookie = cookieLength !== NO_COOKIE;
  if (!Number.isSafeInteger(commitNumber) || commitNumber < 1) return undefined;
  if (payload.length !== COMMIT_MARKER_FIXED_BYTES + (hasCookie ? cookieLength : 0)) {
    return undefined;
  }
  return {
    commitNumber,
    synced: (view.getUint32(8, true) & COMMIT_FLAG_SYNCED) !== 0,
    cookie: hasCookie ? payload.slice(COMMIT_MARKER_FIXED_BYTES) : undefined,
  };
}

function randomLogId(): number {
  const id = new Uint32Array(1);
  do crypto.getRandomValues(id); while (id[0] === 0);
  return id[0];
}

/** Creates the checkpoint of a new log atomically: temp file, sync, rename, directory sync. */
function createCheckpointFile(
  device: Device,
  dir: string,
  options: RecoveryOptions,
): void {
  const point: Checkpoint = {
    logId: randomLogId(),
    checkpointNumber: 0,
    commitNumber: 0,
    beginAddress: SEGMENT_HEADER_BYTES,
    committedUntilAddress: SEGMENT_HEADER_BYTES,
    segmentSizeBytes: options.segmentSizeBytes,
    clean: true,
    cookie: undefined,
  };
  const tempPath = join(dir, `${CHECKPOINT_FILE_NAME}.tmp`);
  device.remove(tempPath);
  const file = device.open(tempPath, { create: true, exclusive: true });
  try {
    file.allocate(0, CHECKPOINT_FILE_BYTES);
    file.write(encodeCheckpoint(point), 0);
    if (options.syncs) file.syncNow("full");
  } finally {
    file.close();
  }
  device.rename(tempPath, join(dir, CHECKPOINT_FILE_NAME));
}

/**
 * Syncs `dir` and every directory above it. A log exists once its checkpoint's name is durable
 * and so is every directory leading to it; an attempt that created them may have failed before
 * syncing, so any open of a log still at its first checkpoint syncs the whole path.
 */
function syncPath(device: Device, dir: string): void {
  for (let path = dir;; path = dirname(path)) {
    device.syncDirectoryNow(path);
    if (dirname(path) === path) return;
  }
}

/** Opens (creating if new) and recovers the log in `dir`. The directory must be locked. */
export function recoverLog(device: Device, dir: string, options: RecoveryOptions): RecoveredLog {
  const checkpointPath = join(dir, CHECKPOINT_FILE_NAME);
  const names = options.names ?? device.list(dir);
  if (!names.includes(CHECKPOINT_FILE_NAME)) {
    const leftovers = SegmentSet.listIndexes(device, dir, names);
    if (leftovers.length) {
      throw new CorruptionError(
        checkpointPath,
        0,
        "segment files exist but the checkpoint is missing",
      );
    }
    createCheckpointFile(device, dir, options);
  }
  const checkpointFile = device.open(checkpointPath);
  try {
    return recoverFrom(device, dir, checkpointFile, { ...options, names });
  } catch (error) {
    checkpointFile.close();
    throw error;
  }
}

function recoverFrom(
  device: Device,
  dir: string,
  checkpointFile: DeviceFile,
  options: RecoveryOptions,
): RecoveredLog {
  const checkpoint = readCheckpoint(checkpointFile);
  // Its newest slot may be only in the page cache (its sync failed, then the process died): make
  // it durable before acting on it, e.g. removing segments below its begin address. A clean one
  // that recovery finds nothing to change for is left as it is: what it says is true of the
  // durable data either way (a clean close writes it only after every commit's sync), so losing
  // it to a power failure only means the next open scans from the one before; and the first
  // write after it syncs the checkpoint file anyway, when it marks the log unclean.
  let settled = !options.syncs;
  const settle = () => {
    if (settled) return;
    settled = true;
    checkpointFile.syncNow("data");
    if (checkpoint.checkpointNumber === 0) syncPath(device, dir);
  };
  if (!checkpoint.clean || checkpoint.checkpointNumber === 0) settle();
  const segmentSizeBytes = checkpoint.segmentSizeBytes;
  if (segmentSizeBytes !== options.segmentSizeBytes) {
    throw new InvalidArgumentError(
      `Cannot open ${dir}: segmentSizeBytes is ${options.segmentSizeBytes}, the log was created with ${segmentSizeBytes}`,
    );
  }
  const segments = new SegmentSet(device, dir, checkpoint.logId, segmentSizeBytes);
  try {
    return recoverSegments(device, dir, checkpointFile, checkpoint, segments, options, settle);
  } catch (error) {
    segments.closeAll();
    throw error;
  }
}

function recoverSegments(
  device: Device,
  dir: string,
  checkpointFile: DeviceFile,
  checkpoint: Checkpoint,
  segments: SegmentSet,
  options: RecoveryOptions,
  /** Makes the checkpoint durable; called before recovery changes anything on disk. */
  settle: () => void,
): RecoveredLog {
  const S = segments.segmentSizeBytes;
  const beginIndex = Math.floor(checkpoint.beginAddress / S);
  // The checkpoint's commit point lies in this segment (or at its very end).
  const pointIndex = Math.floor(Math.max(checkpoint.committedUntilAddress - 1, 0) / S);
  let directoryChanged = false;

  const present = SegmentSet.listIndexes(device, dir, options.names);
  for (const index of present) {
    if (index < beginIndex) {
      // Left by a truncation whose checkpoint was durable but whose removal was not.
      settle();
      device.remove(segments.pathOf(index));
      directoryChanged = true;
    }
  }
  const kept = present.filter((index) => index >= beginIndex);
  // Adopt segments contiguously from the begin segment; stop at a gap or a bad header.
  for (let i = 0; i < kept.length; i++) {
    const index = kept[i];
    const path = segments.pathOf(index);
    const problem = index !== beginIndex + i
      ? "segment files are missing before it"
      : adoptSegment(device, segments, index, path);
    if (problem === undefined) continue;
    // A new log that never committed may have died while creating its first segment: nothing in
    // it can be committed data, so it is recreated below rather than reported.
    const unborn = index === 0 && checkpoint.commitNumber === 0 &&
      checkpoint.committedUntilAddress === SEGMENT_HEADER_BYTES;
    if (index <= pointIndex && !unborn) throw new CorruptionError(path, index * S, problem);
    // Beyond the durable commit point: a segment whose creation did not complete.
    settle();
    for (const later of kept.slice(i)) device.remove(segments.pathOf(later));
    directoryChanged = true;
    break;
  }
  if (segments.lastIndex === undefined || segments.lastIndex < pointIndex) {
    const fresh = checkpoint.committedUntilAddress === SEGMENT_HEADER_BYTES && pointIndex === 0 &&
      segments.lastIndex === undefined;
    if (!fresh) {
      throw new CorruptionError(
        segments.pathOf(pointIndex),
        checkpoint.committedUntilAddress,
        "the segment holding the checkpoint's commit point is missing",
      );
    }
    // A new log whose first segment was not created before a crash.
    settle();
    const segment = segments.create(0);
    if (options.syncs) segment.file.syncNow("full");
    segment.dirty = segment.fresh = false;
    directoryChanged = true;
  }

  const scan = scanForward(segments, checkpoint);
  const tailAddress = scan.lastMarkerEnd;
  const damaged = scan.problem !== undefined && scan.problem !== "empty";
  if (damaged && scan.problem !== undefined) {
    const proof = findLaterMarker(segments, scan.stopAddress, scan.lastMarkerNumber + 2);
    if (proof !== undefined) {
      throw new CorruptionError(
        segments.ofAddress(scan.stopAddress)?.path ?? dir,
        scan.stopAddress,
        `record fails validation (${scan.problem}) but durable commit ${proof} was written after it`,
      );
    }
  }

  // Cut back to the last commit marker: drop the torn or uncommitted tail, and zero what follows
  // it so stale bytes can never pass as records later. Skipped only after a clean close.
  const truncatedTail = scan.stopAddress !== tailAddress || damaged;
  if (
    !checkpoint.clean || truncatedTail || segments.lastIndex! > tailSegmentIndex(tailAddress, S)
  ) {
    settle();
    const tailIndex = tailSegmentIndex(tailAddress, S);
    const segment = segments.at(tailIndex)!;
    const offset = tailAddress - tailIndex * S;
    if (offset < S) {
      segment.file.truncate(offset);
      segment.file.allocate(offset, S - offset);
      if (options.syncs) segment.file.syncNow("full");
    }
    if (segments.removeAbove(tailIndex) > 0) directoryChanged = true;
  }
  if (options.syncs && tailAddress > checkpoint.committedUntilAddress) {
    // Commits past the checkpoint may exist only in the page cache (a crash while their sync ran):
    // make them durable before they are served, or a power failure later could take back what
    // this process reads and builds on.
    settle();
    for (let index = pointIndex; index <= tailSegmentIndex(tailAddress, S); index++) {
      segments.at(index)?.file.syncNow("full");
    }
    directoryChanged = true; // segments created since the checkpoint: their names too
  }
  if (directoryChanged && options.syncs) {
    settle();
    device.syncDirectoryNow(dir);
  }

  return {
    checkpointFile,
    checkpoint,
    segments,
    tailAddress,
    commitNumber: scan.lastMarkerNumber,
    cookie: scan.cookie,
    truncatedTail,
  };
}

/**
 * Largest payload a valid record can declare: what fits a segment. This, not the caller's entry
 * limit, bounds validation: a log reopened with a smaller `entrySizeBytesMax` must still read
 * (and never cut off) the larger entries it committed before.
 */
export function recordBytesLimit(segmentSizeBytes: number): number {
  return segmentSizeBytes - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
}

/** The segment a tail address writes into: an address at a segment's very end stays in it. */
export function tailSegmentIndex(tailAddress: number, segmentSizeBytes: number): number {
  return Math.floor((tailAddress - 1) / segmentSizeBytes);
}

function adoptSegment(
  device: Device,
  segments: SegmentSet,
  index: number,
  path: string,
): string | undefined {
  const file = device.open(path);
  let adopted = false;
  try {
    const size = file.sizeBytes();
    if (size < segments.segmentSizeBytes) {
      return `segment file is ${size} bytes, expected ${segments.segmentSizeBytes}`;
    }
    const header = new Uint8Array(SEGMENT_HEADER_BYTES);
    file.read(header, 0);
    const problem = segmentHeaderProblem(header, segments.logId, index, segments.segmentSizeBytes);
    if (problem) return problem;
    segments.adopt(index, file);
    adopted = true;
    return undefined;
  } finally {
    if (!adopted) file.close();
  }
}

const headerScratch = new Uint8Array(RECORD_HEADER_BYTES);

/** True when the record header at `offset` of `file` reads as all zero bytes. */
export function headerIsZero(file: DeviceFile, offset: number): boolean {
  if (file.read(headerScratch, offset) !== RECORD_HEADER_BYTES) return false;
  for (const byte of headerScratch) if (byte !== 0) return false;
  return true;
}

interface ScanResult {
  stopAddress: number;
  problem: RecordProblem | "sequence" | undefined;
  lastMarkerEnd: number;
  lastMarkerNumber: number;
  cookie: Uint8Array | undefined;
}

/** Walks records from the checkpoint, verifying each, until the first invalid one. */
function scanForward(segments: SegmentSet, checkpoint: Checkpoint) {
  const recordBytesMax = recordBytesLimit(segments.segmentSizeBytes);
  const S = segments.segmentSizeBytes;
  const seed = segments.logId;
  const result: ScanResult = {
    stopAddress: checkpoint.committedUntilAddress,
    problem: undefined,
    lastMarkerEnd: checkpoint.committedUntilAddress,
    lastMarkerNumber: checkpoint.commitNumber,
    cookie: checkpoint.cookie,
  };
  let address = checkpoint.committedUntilAddress;
  for (;;) {
    const index = Math.floor(address / S);
    let offset = address - index * S;
    if (offset === 0 || S - offset < RECORD_HEADER_BYTES) {
      // Segment end: records never straddle; continue at the next segment's first record.
      const next = segments.at(offset === 0 ? index : index + 1);
      if (!next) break;
      address = segments.firstAddressOf(next.index);
      continue;
    }
    const segment = segments.at(index);
    if (!segment) break;
    // Where a clean close left the log, the scan meets zeros at once: a read of the header tells
    // so without mapping the segment (the first read that needs it maps it).
    if (!segment.mapped && headerIsZero(segment.file, offset)) {
      result.problem = "empty";
      break;
    }
    const { bytes, words, checksum } = segment.view;
    const problem = checkRecord(bytes, words, offset, S, address, seed, recordBytesMax, checksum);
    if (problem !== undefined) {
      result.problem = problem;
      break;
    }
    const kind = headerKind(words, offset);
    if (kind === RecordKind.padding) {
      address = (index + 1) * S;
      continue;
    }
    const length = headerLength(words, offset);
    if (kind === RecordKind.commit) {
      const start = offset + RECORD_HEADER_BYTES;
      const marker = decodeCommitMarker(bytes.subarray(start, start + length));
      if (!marker || marker.commitNumber !== result.lastMarkerNumber + 1) {
        result.problem = "sequence";
        break;
      }
      result.lastMarkerNumber = marker.commitNumber;
      result.lastMarkerEnd = address + recordSizeBytes(length);
      if (marker.cookie) result.cookie = marker.cookie;
    }
    offset += recordSizeBytes(length);
    address += recordSizeBytes(length);
  }
  result.stopAddress = address;
  return result;
}

/**
 * Looks past damage at `from` for a valid, synced commit marker numbered at least `numberMin`:
 * proof that the damage hit data that was already durable. Checks every aligned position whose
 * header names that very address, so it needs no record lengths from the damaged region.
 */
function findLaterMarker(
  segments: SegmentSet,
  from: number,
  numberMin: number,
): number | undefined {
  const S = segments.segmentSizeBytes;
  for (const segment of segments.all()) {
    const base = segment.index * S;
    if (base + S <= from) continue;
    const { bytes, words } = segment.view;
    let offset = Math.max(from - base + RECORD_ALIGNMENT_BYTES, SEGMENT_HEADER_BYTES);
    offset -= offset % RECORD_ALIGNMENT_BYTES;
    for (; offset + RECORD_HEADER_BYTES <= S; offset += RECORD_ALIGNMENT_BYTES) {
      if (headerAddress(words, offset) !== base + offset) continue;
      if (headerKind(words, offset) !== RecordKind.commit) continue;
      if (
        checkRecord(bytes, words, offset, S, base + offset, segments.logId, recordBytesLimit(S))
      ) {
        continue;
      }
      const start = offset + RECORD_HEADER_BYTES;
      const marker = decodeCommitMarker(bytes.subarray(start, start + headerLength(words, offset)));
      if (marker && marker.synced && marker.commitNumber >= numberMin) return marker.commitNumber;
    }
  }
  return undefined;
}
