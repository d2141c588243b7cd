/**
 * Read-only analysis of hybridlog directories, for the `hybridlog` command-line tool and for
 * anyone who must look at a log without opening it. Nothing here locks, recovers or writes: files
 * are opened read-only with `node:fs` and read with `pread` (never mapped), so it works on a log
 * another process has open, and sees what that process had written when each file was read.
 *
 * The verify walk classifies a log as recovery would (src/recovery.ts): `clean`; `torn` (damage
 * or uncommitted records after the last valid commit marker, which recovery cuts off); `corrupt`
 * (damage before the checkpoint's commit point, or damage a later durable commit proves was
 * acknowledged, which fails the open or the read that meets it).
 *
 * @example
 * ```ts
 * import { AppendLog } from "./append_log.ts";
 * import { inspectLog, statusOf } from "./inspect.ts";
 *
 * await using log = await AppendLog.open({ dir: "./data/orders" }); // open: inspecting is safe
 * log.enqueue(new TextEncoder().encode("order 1"));
 * await log.commit();
 * const report = inspectLog("./data/orders");
 * console.log(statusOf(report), report.walk?.commitNumber); // clean 1
 * ```
 *
 * @module
 */
import * as fs from "node:fs";
import { HARD_STATE_FILE_NAME } from "./hard_state.ts";
import { INDEX_FILE_NAME } from "./index_checkpoint.ts";
import { parseSegmentFileName } from "./segment_format.ts";
import {
  type CheckpointReport,
  type HardStateReport,
  type IndexCheckpointReport,
  listSegments,
  listSnapshots,
  readCheckpointSlots,
  readHardStateInfo,
  readIndexCheckpointInfo,
  type SegmentReport,
  type SnapshotFileReport,
} from "./_inspect_files.ts";
import {
  type LogProblem,
  type LogStatus,
  walkLog,
  type WalkOptions,
  type WalkReport,
} from "./_inspect_walk.ts";

export {
  type CheckpointReport,
  type CheckpointSlotReport,
  detectKind,
  type DirectoryKind,
  type HardStateReport,
  type IndexCheckpointReport,
  listManagedLogs,
  listSegments,
  listSnapshots,
  type ManagedLogReport,
  readCheckpointSlots,
  readHardStateInfo,
  readIndexCheckpointInfo,
  type SegmentReport,
  type SnapshotFileReport,
} from "./_inspect_files.ts";
export {
  CONSENSUS_ENTRY_HEADER_BYTES,
  type ConsensusCounts,
  decodeConsensusEntry,
  type EntryRecord,
  type LogProblem,
  type LogStatus,
  type ProgressCallback,
  readEntries,
  type RecordCounts,
  walkLog,
  type WalkOptions,
  type WalkReport,
} from "./_inspect_walk.ts";

/**
 * Walks a log at most this often when they find corruption that differs between walks: a live
 * writer (a new checkpoint, a truncation, a record being copied mid-read) can make one read look
 * damaged; damage on disk is found again at the same place.
 */
const WALK_ATTEMPTS_MAX = 3;

/** Everything {@linkcode inspectLog} finds in a log directory. */
export interface LogReport {
  readonly dir: string;
  /** `consensus` when the log has an index or hard-state file, or every entry decodes as one. */
  readonly kind: "append" | "consensus";
  readonly checkpoint: CheckpointReport;
  /** Set when the checkpoint is unusable: the log cannot be read at all (corrupt). */
  readonly problem: LogProblem | undefined;
  readonly segmentSizeBytes: number | undefined;
  readonly segments: readonly SegmentReport[];
  readonly walk: WalkReport | undefined;
  readonly index: IndexCheckpointReport | undefined;
  readonly hardState: HardStateReport | undefined;
  /** Snapshot files kept in the log's own directory, if any. */
  readonly snapshots: readonly SnapshotFileReport[];
}

/** The status of a whole report: `corrupt` when the checkpoint is unusable. */
export function statusOf(report: LogReport): LogStatus {
  return report.problem ? "corrupt" : report.walk!.status;
}

function problemOf(report: LogReport): LogProblem | undefined {
  return report.problem ?? report.walk?.problem;
}

function inspectOnce(dir: string, options: WalkOptions): LogReport {
  const checkpoint = readCheckpointSlots(dir);
  const names = fs.readdirSync(dir);
  const snapshots = names.some((n) => n.startsWith("snapshot-")) ? listSnapshots(dir) : [];
  const point = checkpoint.newest;
  if (!point) {
    const anySegments = names.some((name) => parseSegmentFileName(name) !== undefined);
    const reason = !checkpoint.present && anySegments
      ? "segment files exist but the checkpoint is missing"
      : checkpoint.problem!;
    return {
      dir,
      kind: "append",
      checkpoint,
      problem: { path: checkpoint.path, address: 0, reason },
      segmentSizeBytes: undefined,
      segments: [],
      walk: undefined,
      index: undefined,
      hardState: undefined,
      snapshots,
    };
  }
  const segments = listSegments(dir, point.logId, point.segmentSizeBytes);
  const hasFiles = names.includes(INDEX_FILE_NAME) || names.includes(HARD_STATE_FILE_NAME);
  const hardState = hasFiles ? readHardStateInfo(dir, point.logId) : undefined;
  const walk = walkLog(dir, point, segments, {
    ...options,
    truncatedBelowSlot: hardState?.newest?.truncatedBelowSlot ?? 0,
  });
  const c = walk.consensus;
  const consensus = hasFiles || (c.undecodable === 0 && c.committed + c.accepted > 0);
  return {
    dir,
    kind: consensus ? "consensus" : "append",
    checkpoint,
    problem: undefined,
    segmentSizeBytes: point.segmentSizeBytes,
    segments,
    walk,
    index: consensus ? readIndexCheckpointInfo(dir, point.logId) : undefined,
    hardState: consensus ? hardState ?? readHardStateInfo(dir, point.logId) : undefined,
    snapshots,
  };
}

/**
 * Inspects and verifies the log in `dir` without opening it: the checkpoint slots, the segments,
 * the verify walk, and for consensus logs the index checkpoint and hard state. Corruption is
 * reported only once two walks find it at the same place (see `WALK_ATTEMPTS_MAX`).
 *
 * @param dir A log directory (AppendLog or ConsensusLog).
 * @param options `onProgress` is called during each walk with bytes done and in all.
 * @returns The report; `statusOf(report)` says clean, torn or corrupt.
 * @throws {Error} `dir` cannot be read (a `node:fs` error with `code`).
 */
export function inspectLog(dir: string, options: WalkOptions = {}): LogReport {
  let previous: LogReport | undefined;
  for (let attempt = 1;; attempt++) {
    const report = inspectOnce(dir, options);
    if (statusOf(report) !== "corrupt") return report;
    const problem = problemOf(report)!;
    const before = previous && problemOf(previous);
    const same = before !== undefined && before.path === problem.path &&
      before.address === problem.address && before.reason === problem.reason;
    if (same) return report;
    if (attempt === WALK_ATTEMPTS_MAX) {
      const note = "the log changed between walks (a live writer?): run verify again";
      return report.walk
        ? { ...report, walk: { ...report.walk, notes: [...report.walk.notes, note] } }
        : report;
    }
    previous = report;
  }
}
