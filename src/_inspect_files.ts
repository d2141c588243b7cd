/**
 * The file readers of the inspector (see src/inspect.ts): what a directory is, the checkpoint
 * slots, segment headers, the index checkpoint, the hard state, snapshots and LogManager names.
 * Every file is opened read-only with `node:fs`; nothing is locked, created or written.
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { type Checkpoint, CHECKPOINT_FILE_NAME, decodeCheckpoint } from "./checkpoint.ts";
import { checksum } from "./checksum.ts";
import { CHECKPOINT_SLOT_BYTES, FORMAT_VERSION, SEGMENT_HEADER_BYTES } from "./constants.ts";
import type { Device, DeviceFile } from "./device.ts";
import { decodeHardState, HARD_STATE_FILE_NAME, type HardState } from "./hard_state.ts";
import { INDEX_FILE_NAME, readIndexCheckpoint } from "./index_checkpoint.ts";
import { parseSegmentFileName, segmentFileName, segmentHeaderProblem } from "./segment_format.ts";

/** Hard-state slot size (src/hard_state.ts: two 4 KiB slots). */
const HARD_STATE_SLOT_BYTES = 4096;
/** LogManager layout (src/log_manager.ts): `log-<32 hex>` holding a `name` file. */
const MANAGED_DIRECTORY_PATTERN = /^log-[0-9a-f]{32}$/;
const MANAGED_NAME_FILE = "name";
const NAME_TYPE_STRING = 0x73; // "s"
const NAME_TYPE_BYTES = 0x62; // "b"
const LOG_NAME_BYTES_MAX = 1024;
/** Snapshot layout (src/snapshot_store.ts). */
const SNAPSHOT_MAGIC = 0x4e53_4c48; // "HLSN"
const SNAPSHOT_HEADER_BYTES = 64;
const SNAPSHOT_NAME_PATTERN = /^snapshot-(\d{16})\.snap$/;
/** Bytes read per chunk when checking snapshot data. */
const READ_CHUNK_BYTES = 1024 * 1024;

/** What a directory holds. */
export type DirectoryKind = "log" | "manager" | "snapshots";

// ---- files -----------------------------------------------------------------------------------

/** Reads up to `into.length` bytes at `position`; returns how many were read (short at EOF). */
export function readAt(fd: number, into: Uint8Array, position: number): number {
  let done = 0;
  while (done < into.length) {
    const count = fs.readSync(fd, into, done, into.length - done, position + done);
    if (count === 0) break;
    done += count;
  }
  return done;
}

/** The first `lengthBytes` of `path` (fewer if the file is shorter), or `undefined` if absent. */
function readHead(path: string, lengthBytes: number): Uint8Array | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  try {
    const bytes = new Uint8Array(lengthBytes);
    return bytes.subarray(0, readAt(fd, bytes, 0));
  } finally {
    fs.closeSync(fd);
  }
}

function isZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

function refuse(): never {
  throw new Error("assertion failed: the inspector never writes");
}

/** A device that can only list, stat and read: lets the inspector reuse the library's readers. */
const readOnlyDevice: Device = {
  name: "read-only",
  makeDirectory: refuse,
  list: (path) => fs.readdirSync(path).sort(),
  exists: (path) => fs.existsSync(path),
  open(path, options): DeviceFile {
    if (!options?.readOnly || options.create) refuse();
    const fd = fs.openSync(path, "r");
    let open = true;
    return {
      path,
      sizeBytes: () => fs.fstatSync(fd).size,
      read: (into, position) => readAt(fd, into, position),
      write: refuse,
      writeAsync: refuse,
      allocate: refuse,
      truncate: refuse,
      sync: refuse,
      syncNow: refuse,
      view: refuse,
      close() {
        if (open) fs.closeSync(fd);
        open = false;
      },
    };
  },
  rename: refuse,
  remove: refuse,
  syncDirectory: refuse,
  syncDirectoryNow: refuse,
  lock: refuse,
};

// ---- what a directory is ---------------------------------------------------------------------

/**
 * What `dir` holds: a log (AppendLog or ConsensusLog), a LogManager directory of many logs, or
 * a SnapshotStore directory; `undefined` if none of these.
 *
 * @throws {Error} The directory cannot be read (`code` `ENOENT`, `ENOTDIR`, `EACCES`).
 */
export function detectKind(dir: string): DirectoryKind | undefined {
  const names = fs.readdirSync(dir);
  if (names.includes(CHECKPOINT_FILE_NAME)) return "log";
  if (names.some((name) => parseSegmentFileName(name) !== undefined)) return "log";
  if (names.some((name) => MANAGED_DIRECTORY_PATTERN.test(name))) return "manager";
  if (names.some((name) => SNAPSHOT_NAME_PATTERN.test(name.replace(/\.tmp$/, "")))) {
    return "snapshots";
  }
  // A snapshot store that never stored anything holds only its lock file.
  if (names.length === 1 && names[0] === "LOCK") return "snapshots";
  return undefined;
}

// ---- checkpoint ------------------------------------------------------------------------------

/** One slot of the checkpoint file. */
export interface CheckpointSlotReport {
  readonly slot: number;
  readonly valid: boolean;
  /** All zero: never written (a new log writes slot 0 first). */
  readonly empty: boolean;
  readonly checkpoint: Checkpoint | undefined;
}

/** Both slots of the checkpoint file and the one recovery would use. */
export interface CheckpointReport {
  readonly path: string;
  readonly present: boolean;
  readonly slots: readonly CheckpointSlotReport[];
  /** The newest valid slot's checkpoint, unless `problem` is set. */
  readonly newest: Checkpoint | undefined;
  readonly newestSlot: number | undefined;
  /** Why recovery could not use the file (missing, no valid slot, slots of different logs). */
  readonly problem: string | undefined;
}

/** Reads and decodes both checkpoint slots of the log in `dir` (the rule of `readCheckpoint`). */
export function readCheckpointSlots(dir: string): CheckpointReport {
  const path = join(dir, CHECKPOINT_FILE_NAME);
  const bytes = readHead(path, 2 * CHECKPOINT_SLOT_BYTES);
  if (bytes === undefined) {
    return {
      path,
      present: false,
      slots: [],
      newest: undefined,
      newestSlot: undefined,
      problem: "the checkpoint file is missing",
    };
  }
  const slots = [0, 1].map((slot): CheckpointSlotReport => {
    const end = (slot + 1) * CHECKPOINT_SLOT_BYTES;
    const raw = bytes.subarray(end - CHECKPOINT_SLOT_BYTES, end);
    const checkpoint = bytes.length >= end ? decodeCheckpoint(raw) : undefined;
    return { slot, valid: checkpoint !== undefined, empty: isZero(raw), checkpoint };
  });
  const valid = slots.filter((s) => s.valid);
  let problem: string | undefined;
  if (valid.length === 0) problem = "no valid checkpoint slot";
  else if (valid.length === 2 && valid[0].checkpoint!.logId !== valid[1].checkpoint!.logId) {
    problem = "the two checkpoint slots name different logs";
  }
  const newest = problem
    ? undefined
    : valid.reduce((a, b) =>
      b.checkpoint!.checkpointNumber > a.checkpoint!.checkpointNumber ? b : a
    );
  return {
    path,
    present: true,
    slots,
    newest: newest?.checkpoint,
    newestSlot: newest?.slot,
    problem,
  };
}

// ---- segments --------------------------------------------------------------------------------

/** One segment file. */
export interface SegmentReport {
  readonly index: number;
  readonly path: string;
  readonly sizeBytes: number;
  /** Logical addresses `[index × segmentSizeBytes, (index + 1) × segmentSizeBytes)`. */
  readonly startAddress: number;
  /** Why the file is not a segment of this log (size, magic, checksum, owner), or `undefined`. */
  readonly problem: string | undefined;
}

/** The segment files in `dir`, ascending, with their headers checked against the log. */
export function listSegments(
  dir: string,
  logId: number,
  segmentSizeBytes: number,
): SegmentReport[] {
  const indexes = fs.readdirSync(dir)
    .map((name) => parseSegmentFileName(name))
    .filter((index): index is number => index !== undefined)
    .sort((a, b) => a - b);
  const reports: SegmentReport[] = [];
  for (const index of indexes) {
    const path = join(dir, segmentFileName(index));
    const header = readHead(path, SEGMENT_HEADER_BYTES);
    if (header === undefined) continue; // removed since listed: a live log truncated it
    const sizeBytes = fs.statSync(path, { throwIfNoEntry: false })?.size ?? 0;
    let problem: string | undefined;
    if (sizeBytes < segmentSizeBytes) {
      problem = `segment file is ${sizeBytes} bytes, expected ${segmentSizeBytes}`;
    } else if (header.length < SEGMENT_HEADER_BYTES) problem = "segment header is truncated";
    else problem = segmentHeaderProblem(header, logId, index, segmentSizeBytes);
    reports.push({ index, path, sizeBytes, startAddress: index * segmentSizeBytes, problem });
  }
  return reports;
}

// ---- consensus files -------------------------------------------------------------------------

/** The index checkpoint of a consensus log. */
export interface IndexCheckpointReport {
  readonly path: string;
  readonly present: boolean;
  /**
   * Valid for this log (recovery uses it); an invalid one is ignored, or the part of it that is
   * damaged replaced by a scan of the log.
   */
  readonly valid: boolean;
  readonly coveredAddress: number | undefined;
  readonly committedEntries: number;
  readonly acceptedEntries: number;
}

/** Reads the index checkpoint of log `logId` in `dir` with the library's own reader. */
export function readIndexCheckpointInfo(dir: string, logId: number): IndexCheckpointReport {
  const path = join(dir, INDEX_FILE_NAME);
  const present = fs.existsSync(path);
  const loaded = present ? readIndexCheckpoint(readOnlyDevice, dir, logId) : undefined;
  let committedEntries = 0;
  let acceptedEntries = 0;
  // Recovery checks each chunk of committed slots as it first uses it: a damaged one makes it
  // scan the log for the slots instead.
  let valid = false;
  if (loaded) {
    committedEntries = loaded.committed.count;
    acceptedEntries = loaded.journal.length / 2;
    valid = loaded.committed.verify(0, committedEntries);
    loaded.release();
  }
  return {
    path,
    present,
    valid,
    coveredAddress: loaded?.coveredAddress,
    committedEntries,
    acceptedEntries,
  };
}

/** The hard-state file of a consensus log. */
export interface HardStateReport {
  readonly path: string;
  readonly present: boolean;
  readonly slots: readonly {
    slot: number;
    valid: boolean;
    /** All zero: never written. */
    empty: boolean;
    state: HardState | undefined;
  }[];
  /** The newest valid slot, or `undefined` (absent: the initial state; present: damaged). */
  readonly newest: HardState | undefined;
}

/** Reads both slots of the hard-state file of log `logId` in `dir`. */
export function readHardStateInfo(dir: string, logId: number): HardStateReport {
  const path = join(dir, HARD_STATE_FILE_NAME);
  const bytes = readHead(path, 2 * HARD_STATE_SLOT_BYTES);
  if (bytes === undefined) return { path, present: false, slots: [], newest: undefined };
  const slots = [0, 1].map((slot) => {
    const end = (slot + 1) * HARD_STATE_SLOT_BYTES;
    const raw = bytes.subarray(end - HARD_STATE_SLOT_BYTES, end);
    const state = bytes.length >= end ? decodeHardState(logId, raw) : undefined;
    return { slot, valid: state !== undefined, empty: isZero(raw), state };
  });
  const valid = slots.filter((s) => s.valid).map((s) => s.state!);
  const newest = valid.length
    ? valid.reduce((a, b) => (b.sequence > a.sequence ? b : a))
    : undefined;
  return { path, present: true, slots, newest };
}

// ---- snapshots -------------------------------------------------------------------------------

/** One snapshot file. */
export interface SnapshotFileReport {
  readonly path: string;
  readonly slot: number;
  /** A `.tmp` file: a snapshot being written (or left by a crash; the store removes it). */
  readonly temporary: boolean;
  readonly valid: boolean;
  readonly sizeBytes: number | undefined;
  readonly createdAtMs: number | undefined;
  readonly problem: string | undefined;
}

function checkSnapshot(path: string, slot: number, verifyData: boolean) {
  const fd = fs.openSync(path, "r");
  try {
    const header = new Uint8Array(SNAPSHOT_HEADER_BYTES);
    if (readAt(fd, header, 0) < SNAPSHOT_HEADER_BYTES) return { problem: "header truncated" };
    const view = new DataView(header.buffer);
    if (view.getUint32(4, true) !== SNAPSHOT_MAGIC) return { problem: "bad magic" };
    if (view.getUint32(0, true) !== checksum(header.subarray(4), 0)) {
      return { problem: "header checksum mismatch" };
    }
    if (view.getUint32(8, true) !== FORMAT_VERSION) return { problem: "unsupported version" };
    if (view.getFloat64(16, true) !== slot) return { problem: "header slot differs from the name" };
    const sizeBytes = view.getFloat64(24, true);
    const createdAtMs = view.getFloat64(40, true);
    const fileBytes = fs.fstatSync(fd).size;
    if (fileBytes !== SNAPSHOT_HEADER_BYTES + sizeBytes) {
      return {
        sizeBytes,
        createdAtMs,
        problem: `file holds ${
          fileBytes - SNAPSHOT_HEADER_BYTES
        } data bytes, header says ${sizeBytes}`,
      };
    }
    if (verifyData) {
      const chunk = new Uint8Array(Math.min(READ_CHUNK_BYTES, Math.max(sizeBytes, 1)));
      let sum = 0;
      for (let at = 0; at < sizeBytes; at += chunk.length) {
        const part = chunk.subarray(0, Math.min(chunk.length, sizeBytes - at));
        if (readAt(fd, part, SNAPSHOT_HEADER_BYTES + at) < part.length) {
          return { sizeBytes, createdAtMs, problem: "data truncated" };
        }
        sum = checksum(part, sum);
      }
      if (sum !== view.getUint32(32, true)) {
        return { sizeBytes, createdAtMs, problem: "data checksum mismatch" };
      }
    }
    return { sizeBytes, createdAtMs, problem: undefined };
  } finally {
    fs.closeSync(fd);
  }
}

/** The snapshot files in `dir`, newest slot first; `verifyData` (default true) checks every byte. */
export function listSnapshots(
  dir: string,
  options: { verifyData?: boolean } = {},
): SnapshotFileReport[] {
  const reports: SnapshotFileReport[] = [];
  for (const name of fs.readdirSync(dir)) {
    const temporary = name.endsWith(".tmp");
    const match = SNAPSHOT_NAME_PATTERN.exec(temporary ? name.slice(0, -4) : name);
    if (!match) continue;
    const path = join(dir, name);
    const slot = Number(match[1]);
    const found = temporary
      ? { sizeBytes: undefined, createdAtMs: undefined, problem: "temporary file (incomplete)" }
      : checkSnapshot(path, slot, options.verifyData ?? true);
    reports.push({
      path,
      slot,
      temporary,
      valid: found.problem === undefined,
      sizeBytes: found.sizeBytes,
      createdAtMs: found.createdAtMs,
      problem: found.problem,
    });
  }
  return reports.sort((a, b) => b.slot - a.slot || Number(a.temporary) - Number(b.temporary));
}

// ---- LogManager directories ------------------------------------------------------------------

/** One log of a LogManager directory. */
export interface ManagedLogReport {
  readonly path: string;
  /** The name from its `name` file, or `undefined` if missing or malformed. */
  readonly name: string | Uint8Array | undefined;
}

/** The logs of the LogManager directory `dir`, by directory name. */
export function listManagedLogs(dir: string): ManagedLogReport[] {
  return fs.readdirSync(dir)
    .filter((child) => MANAGED_DIRECTORY_PATTERN.test(child))
    .sort()
    .map((child) => {
      const path = join(dir, child);
      const encoded = readHead(join(path, MANAGED_NAME_FILE), LOG_NAME_BYTES_MAX + 2);
      let name: string | Uint8Array | undefined;
      if (encoded && encoded.length >= 2 && encoded.length <= LOG_NAME_BYTES_MAX + 1) {
        if (encoded[0] === NAME_TYPE_STRING) name = new TextDecoder().decode(encoded.subarray(1));
        else if (encoded[0] === NAME_TYPE_BYTES) name = encoded.slice(1);
      }
      return { path, name };
    });
}
