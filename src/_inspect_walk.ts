/**
 * The verify walk of the inspector (see src/inspect.ts). It mirrors recovery (src/recovery.ts):
 * records from the begin address must validate up to the checkpoint's commit point; after it,
 * damage is a torn tail unless a valid synced commit marker two commits later lies beyond it,
 * which proves the damaged bytes were durable.
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import type { Checkpoint } from "./checkpoint.ts";
import { RECORD_ALIGNMENT_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "./constants.ts";
import {
  checkRecord,
  headerAddress,
  headerKind,
  headerLength,
  RecordKind,
  recordSizeBytes,
} from "./record_format.ts";
import { decodeCommitMarker } from "./recovery.ts";
import { segmentFileName } from "./segment_format.ts";
import { recordStartFrom } from "./segments.ts";
import { readAt, type SegmentReport } from "./_inspect_files.ts";

/** Bytes of a consensus entry's header inside its record (src/consensus_log.ts). */
export const CONSENSUS_ENTRY_HEADER_BYTES = 24;
/** The verify walk reports progress at most once per this many bytes. */
const PROGRESS_STEP_BYTES = 4 * 1024 * 1024;

/** Outcome of a verify walk: exit codes 0, 1 and 2 of `hybridlog verify`. */
export type LogStatus = "clean" | "torn" | "corrupt";
/** Called by the verify walk with the bytes of address space walked so far and in all. */
export type ProgressCallback = (doneBytes: number, totalBytes: number) => void;

/** Holds one segment's bytes at a time (segments are read whole with `pread`, never mapped). */
class SegmentReader {
  readonly #segments: Map<number, SegmentReport>;
  readonly #sizeBytes: number;
  #bytes: Uint8Array | undefined;
  #words: Uint32Array | undefined;
  #loaded = -1;

  constructor(segments: readonly SegmentReport[], segmentSizeBytes: number) {
    this.#segments = new Map(segments.map((s) => [s.index, s]));
    this.#sizeBytes = segmentSizeBytes;
  }

  has(index: number): boolean {
    return this.#segments.has(index);
  }

  pathOf(index: number): string | undefined {
    return this.#segments.get(index)?.path;
  }

  /** The bytes of segment `index` (valid until the next call), or `undefined` if not held. */
  load(index: number): { bytes: Uint8Array; words: Uint32Array } | undefined {
    const segment = this.#segments.get(index);
    if (!segment) return undefined;
    if (this.#bytes === undefined) {
      this.#bytes = new Uint8Array(this.#sizeBytes);
      this.#words = new Uint32Array(this.#bytes.buffer);
    }
    if (this.#loaded !== index) {
      let count = 0;
      try {
        const fd = fs.openSync(segment.path, "r");
        try {
          count = readAt(fd, this.#bytes, 0);
        } finally {
          fs.closeSync(fd);
        }
      } catch (error) {
        // Removed since it was listed (a live log truncated it): it reads as zeros.
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
      this.#bytes.fill(0, count);
      this.#loaded = index;
    }
    return { bytes: this.#bytes, words: this.#words! };
  }
}

// ---- the verify walk -------------------------------------------------------------------------

/** Where the walk found the first problem. */
export interface LogProblem {
  /** The file holding the damage. */
  readonly path: string;
  readonly address: number;
  readonly reason: string;
}

/** Counters of the records before the last valid commit marker. */
export interface RecordCounts {
  entries: number;
  commitMarkers: number;
  paddingRecords: number;
  /** Entry payload bytes (consensus entry headers included). */
  payloadBytes: number;
  /** Bytes of entry and commit records, headers and alignment included. */
  recordBytes: number;
  paddingBytes: number;
}

/** Slots and ballots of consensus entries (decoded from each entry's 24-byte header). */
export interface ConsensusCounts {
  committed: number;
  accepted: number;
  committedSlotMin: number | undefined;
  committedSlotMax: number | undefined;
  acceptedSlotMin: number | undefined;
  acceptedSlotMax: number | undefined;
  /** Entries whose header does not decode as a consensus entry (an AppendLog has only these). */
  undecodable: number;
  /** Entries of slots below the hard state's truncation point: on disk, but no longer served. */
  truncated: number;
}

/** What the verify walk found. */
export interface WalkReport {
  readonly status: LogStatus;
  /** The first problem (for `torn`, where the tail is cut; for `corrupt`, the damage). */
  readonly problem: LogProblem | undefined;
  readonly beginAddress: number;
  /** End of the last valid commit marker: what recovery would keep. */
  readonly committedUntilAddress: number;
  /** Where the walk stopped (the next record address, or the damage). */
  readonly stopAddress: number;
  readonly commitNumber: number;
  readonly cookie: Uint8Array | undefined;
  /** Committed records (up to `committedUntilAddress`). */
  readonly counts: RecordCounts;
  /** Valid entries after the last commit marker (recovery drops them). */
  readonly uncommittedEntries: number;
  readonly consensus: ConsensusCounts;
  /** Bytes of address space walked and verified. */
  readonly verifiedBytes: number;
  /** Remarks that are not problems (stale segments below the begin address, spare segments). */
  readonly notes: readonly string[];
}

/** The decoded header of a consensus entry, or `undefined` if `payload` is not one. */
export function decodeConsensusEntry(
  payload: Uint8Array,
): { slot: number; round: number; node: number; type: "committed" | "accepted" } | undefined {
  if (payload.length < CONSENSUS_ENTRY_HEADER_BYTES) return undefined;
  const view = new DataView(payload.buffer, payload.byteOffset, CONSENSUS_ENTRY_HEADER_BYTES);
  const slot = view.getFloat64(0, true);
  const round = view.getFloat64(8, true);
  const type = view.getUint32(20, true);
  if (!Number.isSafeInteger(slot) || slot < 0 || !Number.isSafeInteger(round) || round < 0) {
    return undefined;
  }
  if (type !== 1 && type !== 2) return undefined;
  return {
    slot,
    round,
    node: view.getUint32(16, true),
    type: type === 1 ? "committed" : "accepted",
  };
}

function emptyConsensus(): ConsensusCounts {
  return {
    committed: 0,
    accepted: 0,
    committedSlotMin: undefined,
    committedSlotMax: undefined,
    acceptedSlotMin: undefined,
    acceptedSlotMax: undefined,
    undecodable: 0,
    truncated: 0,
  };
}

const min = (a: number | undefined, b: number | undefined) =>
  a === undefined ? b : b === undefined ? a : Math.min(a, b);
const max = (a: number | undefined, b: number | undefined) =>
  a === undefined ? b : b === undefined ? a : Math.max(a, b);

function mergeConsensus(into: ConsensusCounts, from: ConsensusCounts): void {
  into.committed += from.committed;
  into.accepted += from.accepted;
  into.undecodable += from.undecodable;
  into.truncated += from.truncated;
  into.committedSlotMin = min(into.committedSlotMin, from.committedSlotMin);
  into.committedSlotMax = max(into.committedSlotMax, from.committedSlotMax);
  into.acceptedSlotMin = min(into.acceptedSlotMin, from.acceptedSlotMin);
  into.acceptedSlotMax = max(into.acceptedSlotMax, from.acceptedSlotMax);
}

function countConsensus(counts: ConsensusCounts, payload: Uint8Array, below: number): void {
  const entry = decodeConsensusEntry(payload);
  if (!entry) counts.undecodable++;
  else if (entry.slot < below) counts.truncated++;
  else if (entry.type === "committed") {
    counts.committed++;
    counts.committedSlotMin = min(counts.committedSlotMin, entry.slot);
    counts.committedSlotMax = max(counts.committedSlotMax, entry.slot);
  } else {
    counts.accepted++;
    counts.acceptedSlotMin = min(counts.acceptedSlotMin, entry.slot);
    counts.acceptedSlotMax = max(counts.acceptedSlotMax, entry.slot);
  }
}

/** The segments recovery would adopt, and what it would say about the others. */
function adoptSegments(
  dir: string,
  segments: readonly SegmentReport[],
  point: Checkpoint,
  S: number,
) {
  const beginIndex = Math.floor(point.beginAddress / S);
  const pointIndex = Math.floor(Math.max(point.committedUntilAddress - 1, 0) / S);
  const notes: string[] = [];
  const stale = segments.filter((s) => s.index < beginIndex);
  if (stale.length) {
    notes.push(`${stale.length} segment(s) below the begin address (recovery removes them)`);
  }
  const adopted: SegmentReport[] = [];
  let problem: LogProblem | undefined;
  let corrupt = false;
  const kept = segments.filter((s) => s.index >= beginIndex);
  for (let i = 0; i < kept.length; i++) {
    const segment = kept[i];
    const reason = segment.index !== beginIndex + i
      ? "segment files are missing before it"
      : segment.problem;
    if (reason === undefined) {
      adopted.push(segment);
      continue;
    }
    const unborn = segment.index === 0 && point.commitNumber === 0 &&
      point.committedUntilAddress === SEGMENT_HEADER_BYTES;
    corrupt = segment.index <= pointIndex && !unborn;
    problem = { path: segment.path, address: segment.startAddress, reason };
    break;
  }
  const lastIndex = adopted.length ? adopted[adopted.length - 1].index : undefined;
  if (!corrupt && (lastIndex === undefined || lastIndex < pointIndex)) {
    const fresh = point.committedUntilAddress === SEGMENT_HEADER_BYTES && pointIndex === 0 &&
      lastIndex === undefined;
    if (!fresh) {
      corrupt = true;
      problem = {
        path: join(dir, segmentFileName(pointIndex)),
        address: point.committedUntilAddress,
        reason: "the segment holding the checkpoint's commit point is missing",
      };
    }
  }
  return { adopted, problem, corrupt, notes };
}

/** Options of {@linkcode walkLog}. */
export interface WalkOptions {
  /** Called with bytes of address space walked so far and in all. */
  onProgress?: ProgressCallback;
  /** Consensus entries of slots below this are counted as `truncated` (default 0). */
  truncatedBelowSlot?: number;
}

/** Where a scan stopped and what it counted. */
interface Scan {
  address: number;
  /** The scan reached the checkpoint's commit point (what precedes it must be intact). */
  crossed: boolean;
  markerNumber: number | undefined;
  markerEnd: number;
  cookie: Uint8Array | undefined;
  /** Why the record at `address` failed (`empty` is a clean end), if one did. */
  recordProblem: string | undefined;
  /** A contradiction with the checkpoint: corruption whatever follows. */
  checkpointProblem: string | undefined;
  counts: RecordCounts;
  consensus: ConsensusCounts;
  pendingEntries: number;
}

/** Walks records from the begin address until the first one that does not validate. */
function scanRecords(
  reader: SegmentReader,
  point: Checkpoint,
  options: WalkOptions,
  totalBytes: number,
): Scan {
  const S = point.segmentSizeBytes;
  const begin = point.beginAddress;
  const committedPoint = point.committedUntilAddress;
  const scan: Scan = {
    address: begin,
    crossed: false,
    markerNumber: begin === committedPoint ? point.commitNumber : undefined,
    markerEnd: begin,
    cookie: point.cookie,
    recordProblem: undefined,
    checkpointProblem: undefined,
    counts: {
      entries: 0,
      commitMarkers: 0,
      paddingRecords: 0,
      payloadBytes: 0,
      recordBytes: 0,
      paddingBytes: 0,
    },
    consensus: emptyConsensus(),
    pendingEntries: 0,
  };
  const counts = scan.counts;
  let pending = emptyConsensus();
  let pendingPayloadBytes = 0;
  let pendingRecordBytes = 0;
  let reported = begin;
  for (;;) {
    const address = scan.address;
    if (!scan.crossed && address >= committedPoint) {
      // Everything before the checkpoint's commit point was durable: it must end exactly there,
      // with the marker the checkpoint names.
      scan.crossed = true;
      if (address !== committedPoint) {
        scan.checkpointProblem = `a record spans the checkpoint's commit point ${committedPoint}`;
        break;
      }
      if (begin < committedPoint && scan.markerNumber !== point.commitNumber) {
        scan.checkpointProblem = `the last commit marker before the checkpoint's commit point is ${
          scan.markerNumber ?? "missing"
        }, the checkpoint says ${point.commitNumber}`;
        break;
      }
      scan.markerNumber = point.commitNumber;
      scan.markerEnd = committedPoint;
    }
    if (options.onProgress && address - reported >= PROGRESS_STEP_BYTES) {
      reported = address;
      options.onProgress(address - begin, totalBytes);
    }
    const index = Math.floor(address / S);
    const offset = address - index * S;
    if (offset === 0 || S - offset < RECORD_HEADER_BYTES) {
      // Segment end: records never straddle; continue at the next segment's first record.
      const next = offset === 0 ? index : index + 1;
      if (!reader.has(next)) break;
      scan.address = next * S + SEGMENT_HEADER_BYTES;
      continue;
    }
    const segment = reader.load(index);
    if (!segment) break;
    const { bytes, words } = segment;
    scan.recordProblem = checkRecord(bytes, words, offset, S, address, point.logId, S);
    if (scan.recordProblem !== undefined) break;
    const kind = headerKind(words, offset);
    if (kind === RecordKind.padding) {
      counts.paddingRecords++;
      counts.paddingBytes += S - offset;
      scan.address = (index + 1) * S;
      continue;
    }
    const length = headerLength(words, offset);
    const size = recordSizeBytes(length);
    const start = offset + RECORD_HEADER_BYTES;
    const payload = bytes.subarray(start, start + length);
    if (kind === RecordKind.commit) {
      const marker = decodeCommitMarker(payload);
      const expected = scan.markerNumber === undefined ? undefined : scan.markerNumber + 1;
      if (!marker || (expected !== undefined && marker.commitNumber !== expected)) {
        scan.recordProblem = marker
          ? `sequence: commit marker ${marker.commitNumber} where ${expected} was due`
          : "sequence: malformed commit marker";
        break;
      }
      scan.markerNumber = marker.commitNumber;
      scan.markerEnd = address + size;
      if (scan.crossed && marker.cookie) scan.cookie = marker.cookie;
      counts.commitMarkers++;
      counts.entries += scan.pendingEntries;
      counts.payloadBytes += pendingPayloadBytes;
      counts.recordBytes += pendingRecordBytes + size;
      mergeConsensus(scan.consensus, pending);
      pending = emptyConsensus();
      scan.pendingEntries = pendingPayloadBytes = pendingRecordBytes = 0;
    } else {
      scan.pendingEntries++;
      pendingPayloadBytes += length;
      pendingRecordBytes += size;
      countConsensus(pending, payload, options.truncatedBelowSlot ?? 0);
    }
    scan.address += size;
  }
  if (!scan.crossed) scan.cookie = undefined;
  return scan;
}

/** Clean, torn or corrupt, as recovery would decide, and where. */
function classify(
  dir: string,
  reader: SegmentReader,
  adoption: ReturnType<typeof adoptSegments>,
  point: Checkpoint,
  scan: Scan,
): { status: LogStatus; problem: LogProblem | undefined } {
  const S = point.segmentSizeBytes;
  const at = (address: number, reason: string): LogProblem => ({
    path: reader.pathOf(Math.floor(address / S)) ?? dir,
    address,
    reason,
  });
  const { address, recordProblem } = scan;
  if (adoption.corrupt) return { status: "corrupt", problem: adoption.problem };
  if (scan.checkpointProblem !== undefined) {
    return { status: "corrupt", problem: at(address, scan.checkpointProblem) };
  }
  const commitPoint = point.committedUntilAddress;
  if (!scan.crossed) {
    const reason = recordProblem === undefined
      ? `the log ends before the checkpoint's commit point ${commitPoint}`
      : `record fails validation (${recordProblem}) before the checkpoint's commit point ${commitPoint}`;
    return { status: "corrupt", problem: at(address, reason) };
  }
  if (recordProblem !== undefined && recordProblem !== "empty") {
    const from = scan.markerNumber! + 2;
    const proof = findLaterMarker(reader, adoption.adopted, S, point.logId, address, from);
    return proof === undefined
      ? {
        status: "torn",
        problem: at(
          address,
          `record fails validation (${recordProblem}) after the last commit marker (a torn tail: recovery cuts it off)`,
        ),
      }
      : {
        status: "corrupt",
        problem: at(
          address,
          `record fails validation (${recordProblem}) but durable commit ${proof} was written after it`,
        ),
      };
  }
  if (address !== scan.markerEnd) {
    const bytes = address - scan.markerEnd;
    return {
      status: "torn",
      problem: at(
        scan.markerEnd,
        `${bytes} bytes of uncommitted records after the last commit marker (recovery cuts them off)`,
      ),
    };
  }
  if (adoption.problem !== undefined) {
    // A segment beyond the commit point whose creation did not complete: recovery removes it.
    const reason = `${adoption.problem.reason} (beyond the commit point: recovery removes it)`;
    return { status: "torn", problem: { ...adoption.problem, reason } };
  }
  return { status: "clean", problem: undefined };
}

/**
 * Walks every record from the begin address, verifying checksums and commit-marker numbers, and
 * classifies the log as recovery would: `clean`, `torn` (damage or uncommitted records after the
 * last valid commit marker, which recovery cuts off) or `corrupt` (damage before the checkpoint's
 * commit point, or damage a later durable commit marker proves was acknowledged).
 *
 * @param dir The log directory (named in problems when no segment file is).
 * @param point The checkpoint recovery would use (`readCheckpointSlots(dir).newest`).
 * @param segments The segment files (`listSegments`).
 * @param options Progress callback; the truncation point of a consensus log.
 * @returns What the walk found, with the first problem's file and address.
 */
export function walkLog(
  dir: string,
  point: Checkpoint,
  segments: readonly SegmentReport[],
  options: WalkOptions = {},
): WalkReport {
  const S = point.segmentSizeBytes;
  const adoption = adoptSegments(dir, segments, point, S);
  const reader = new SegmentReader(adoption.adopted, S);
  const lastAdopted = adoption.adopted.at(-1);
  const begin = point.beginAddress;
  const totalBytes = lastAdopted ? Math.max((lastAdopted.index + 1) * S - begin, 0) : 0;
  const scan = scanRecords(reader, point, options, totalBytes);
  options.onProgress?.(totalBytes, totalBytes);
  const { status, problem } = classify(dir, reader, adoption, point, scan);
  const notes = [...adoption.notes];
  const tailIndex = Math.floor((scan.markerEnd - 1) / S);
  if (status !== "corrupt" && lastAdopted && lastAdopted.index > tailIndex) {
    notes.push(`segment ${lastAdopted.index} lies beyond the tail (recovery removes it)`);
  }
  return {
    status,
    problem,
    beginAddress: begin,
    committedUntilAddress: scan.markerEnd,
    stopAddress: scan.address,
    commitNumber: scan.markerNumber ?? point.commitNumber,
    cookie: scan.cookie,
    counts: scan.counts,
    uncommittedEntries: scan.pendingEntries,
    consensus: scan.consensus,
    verifiedBytes: Math.max(scan.address - begin, 0),
    notes,
  };
}

/**
 * Looks past damage at `from` for a valid, synced commit marker numbered at least `numberMin`
 * (the rule of recovery's `findLaterMarker`): every aligned position whose header names that very
 * address, so no record length from the damaged region is trusted.
 */
function findLaterMarker(
  reader: SegmentReader,
  segments: readonly SegmentReport[],
  S: number,
  seed: number,
  from: number,
  numberMin: number,
): number | undefined {
  for (const { index } of segments) {
    const base = index * S;
    if (base + S <= from) continue;
    const { bytes, words } = reader.load(index)!;
    let offset = Math.max(from - base + RECORD_ALIGNMENT_BYTES, SEGMENT_HEADER_BYTES);
    offset -= offset % RECORD_ALIGNMENT_BYTES;
    for (; offset + RECORD_HEADER_BYTES <= S; offset += RECORD_ALIGNMENT_BYTES) {
      if (headerAddress(words, offset) !== base + offset) continue;
      if (headerKind(words, offset) !== RecordKind.commit) continue;
      if (checkRecord(bytes, words, offset, S, base + offset, seed, S)) continue;
      const start = offset + RECORD_HEADER_BYTES;
      const marker = decodeCommitMarker(bytes.subarray(start, start + headerLength(words, offset)));
      if (marker && marker.synced && marker.commitNumber >= numberMin) return marker.commitNumber;
    }
  }
  return undefined;
}

/** An entry record read by {@linkcode readEntries}. */
export interface EntryRecord {
  readonly address: number;
  /** A view of the payload, valid until the iteration continues: copy what you keep. */
  readonly payload: Uint8Array;
}

/**
 * The entry records with `from <= address < to`, each checksum-verified. `to` should not exceed
 * the walk's committed-until address (what lies beyond is not committed).
 *
 * @throws {Error} A record in the range fails validation (the files changed after the walk).
 */
export function* readEntries(
  dir: string,
  point: Checkpoint,
  segments: readonly SegmentReport[],
  from: number,
  to: number,
): Generator<EntryRecord> {
  const S = point.segmentSizeBytes;
  const reader = new SegmentReader(adoptSegments(dir, segments, point, S).adopted, S);
  // Records never straddle segments, so every segment's records start at its first address.
  let address = Math.max(point.beginAddress, Math.floor(from / S) * S + SEGMENT_HEADER_BYTES);
  while (address < to) {
    const start = recordStartFrom(address, S);
    if (start !== address) {
      address = start;
      continue;
    }
    const index = Math.floor(address / S);
    const offset = address - index * S;
    const segment = reader.load(index);
    if (!segment) return;
    const { bytes, words } = segment;
    const problem = checkRecord(bytes, words, offset, S, address, point.logId, S);
    if (problem === "empty") return;
    if (problem !== undefined) {
      throw new Error(
        `record at address ${address} in ${reader.pathOf(index)} fails validation (${problem})`,
      );
    }
    const kind = headerKind(words, offset);
    if (kind === RecordKind.padding) {
      address = (index + 1) * S;
      continue;
    }
    const length = headerLength(words, offset);
    if (kind === RecordKind.entry && address >= from) {
      const start = offset + RECORD_HEADER_BYTES;
      yield { address, payload: bytes.subarray(start, start + length) };
    }
    address += recordSizeBytes(length);
  }
}
