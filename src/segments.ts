/**
 * The set of segment files of one log: creating (preallocated, with a header), opening, mapping,
 * finding the segment of an address, and removing. Each segment is mapped read-only once, for its
 * whole length; a removed segment's mapping is released, which detaches every view over it. A
 * segment adopted at open is mapped on first use, not at open, and its first few copying reads
 * (`PREADS_BEFORE_MAPPING`) use `pread` instead: a reopen that reads one entry maps nothing, and a
 * close of a log nobody read unmaps nothing.
 *
 * @module
 */
import { join } from "node:path";
import { RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES } from "./constants.ts";
import type { Device, DeviceFile, FileView } from "./device.ts";
import { checksum } from "./checksum.ts";
import { CorruptionError } from "./errors.ts";
import {
  checkRecord,
  headerKind,
  headerLength,
  RecordKind,
  type RecordProblem,
  recordSizeBytes,
} from "./record_format.ts";
import { recordBytesLimit } from "./recovery.ts";
import { encodeSegmentHeader, parseSegmentFileName, segmentFileName } from "./segment_format.ts";
import type { SparePreparer } from "./spare_segment.ts";

/** A view of nothing: what a released segment shows (as a released mapping's views do). */
const RELEASED_VIEW: FileView = {
  bytes: new Uint8Array(0),
  words: new Uint32Array(0),
  release() {},
};

/** One open segment. */
export class Segment {
  readonly index: number;
  readonly path: string;
  readonly file: DeviceFile;
  /** Written since its last sync. */
  dirty: boolean;
  /** Created since the directory was last synced: needs `fsync` and a directory sync. */
  fresh: boolean;
  /**
   * Records starting below this offset were not written by this process (the segment was found
   * at open): each is checksum-verified on its first read, then marked in `verified`. Records
   * this process wrote are trusted: the page cache holds the bytes it sealed.
   */
  readonly verifyBelow: number;
  /**
   * One bit per 8-byte unit: the record starting there passed its checksum. Chunks of 256 KiB of
   * segment, each made on first use.
   */
  verified: Array<Uint32Array | undefined> | undefined = undefined;
  /** The mapping as 64-bit floats, for entry headers (see {@linkcode segmentDoubles}). */
  doubles: Float64Array | undefined = undefined;
  /** Copying reads served by `pread` while unmapped (see {@linkcode readPayloadCopy}). */
  preads = 0;
  readonly #lengthBytes: number;
  #view: FileView | undefined;
  #released = false;

  constructor(
    index: number,
    file: DeviceFile,
    lengthBytes: number,
    view: FileView | undefined,
    written: boolean,
  ) {
    this.index = index;
    this.path = file.path;
    this.file = file;
    this.#lengthBytes = lengthBytes;
    this.#view = view;
    this.dirty = this.fresh = written;
    this.verifyBelow = written ? 0 : lengthBytes;
  }

  /** The read-only view of the whole segment, mapped on first use; empty once released. */
  get view(): FileView {
    if (this.#view !== undefined) return this.#view;
    if (this.#released) return RELEASED_VIEW;
    return this.#view = this.file.view(this.#lengthBytes);
  }

  /** True once {@linkcode Segment.view} has mapped the file (and until release). */
  get mapped(): boolean {
    return this.#view !== undefined;
  }

  /** Unmaps (detaching every view handed out) and closes the file. Idempotent. */
  release(): void {
    this.#released = true;
    const view = this.#view;
    this.#view = undefined;
    try {
      view?.release();
    } finally {
      this.file.close();
    }
  }
}

/** The segments of one log directory, indexed by segment number. */
export class SegmentSet {
  readonly dir: string;
  readonly device: Device;
  readonly segmentSizeBytes: number;
  readonly logId: number;
  #segments: Segment[] = [];
  #firstIndex = 0;
  /** Zero-filled spares new segments are made from when one is ready (`zeroFillSegments`). */
  spares: SparePreparer | undefined = undefined;

  constructor(device: Device, dir: string, logId: number, segmentSizeBytes: number) {
    this.device = device;
    this.dir = dir;
    this.logId = logId;
    this.segmentSizeBytes = segmentSizeBytes;
  }

  /**
   * Segment indexes of the segment files present in `dir`, ascending; from `names`, the
   * directory's listing, when the caller has it.
   */
  static listIndexes(device: Device, dir: string, names?: readonly string[]): number[] {
    const indexes: number[] = [];
    for (const name of names ?? device.list(dir)) {
      const index = parseSegmentFileName(name);
      if (index !== undefined) indexes.push(index);
    }
    return indexes.sort((a, b) => a - b);
  }

  /** Path of segment `index`. */
  pathOf(index: number): string {
    return join(this.dir, segmentFileName(index));
  }

  /** Last segment index held, or `undefined` when empty. */
  get lastIndex(): number | undefined {
    return this.#segments.length ? this.#firstIndex + this.#segments.length - 1 : undefined;
  }

  /** Bytes mapped by the segments (an adopted segment counts once first used). */
  get mappedBytes(): number {
    let count = 0;
    for (const segment of this.#segments) if (segment.mapped) count++;
    return count * this.segmentSizeBytes;
  }

  /** The segment with `index`, or `undefined`. */
  at(index: number): Segment | undefined {
    return this.#segments[index - this.#firstIndex];
  }

  /** The segment holding `address`, or `undefined`. */
  ofAddress(address: number): Segment | undefined {
    return this.#segments[Math.floor(address / this.segmentSizeBytes) - this.#firstIndex];
  }

  /** Every held segment, ascending. */
  all(): readonly Segment[] {
    return this.#segments;
  }

  /**
   * Adds an existing segment file (recovery), to be mapped on first use; the caller checked that
   * the file is at least a segment long. Must extend the set contiguously.
   */
  adopt(index: number, file: DeviceFile): Segment {
    return this.#push(new Segment(index, file, this.segmentSizeBytes, undefined, false));
  }

  /**
   * Creates segment `index`: from the ready zero-filled spare if there is one, else preallocated
   * to the full segment size (never sparse); header written, mapped. Then starts preparing the
   * next spare. On failure (e.g. `ENOSPC`) the partial file is removed and nothing changes.
   */
  create(index: number): Segment {
    const path = this.pathOf(index);
    // A file already at `path` is never replaced by a spare: the exclusive create reports it.
    const spared = this.spares?.ready && !this.device.exists(path)
      ? this.#fromSpare(index, path)
      : undefined;
    const segment = spared !== undefined ? this.#push(spared) : this.#allocated(index, path);
    this.spares?.start();
    return segment;
  }

  /** Adds segment `index` as a new file at `path`, preallocated, header written, mapped. */
  #allocated(index: number, path: string): Segment {
    const file = this.device.open(path, { create: true, exclusive: true });
    try {
      file.allocate(0, this.segmentSizeBytes);
      file.write(encodeSegmentHeader(this.logId, index, this.segmentSizeBytes), 0);
      const view = file.view(this.segmentSizeBytes);
      return this.#push(new Segment(index, file, this.segmentSizeBytes, view, true));
    } catch (error) {
      file.close();
      this.device.remove(path);
      throw error;
    }
  }

  /**
   * Replaces the last segment, `index`, which holds no record, with the ready spare (a new log's
   * first segment); false when no spare is ready. Either file is a valid empty segment, so a
   * crash at any point leaves one or the other.
   */
  replaceWithSpare(index: number): boolean {
    const old = this.at(index);
    if (old === undefined || index !== this.lastIndex) return false;
    let segment: Segment | undefined;
    try {
      segment = this.#fromSpare(index, old.path);
    } catch (error) {
      // Renamed over the old file but not opened: writes must not reach the old, unlinked file.
      this.#segments.pop();
      old.release();
      throw error;
    }
    if (segment === undefined) return false;
    old.release();
    this.#segments[this.#segments.length - 1] = segment;
    this.spares?.start();
    return true;
  }

  /**
   * Segment `index` made from the ready spare, renamed to `path` once its header is written and
   * synced; `undefined` when no spare is ready or it could not be made ready (it is removed).
   */
  #fromSpare(index: number, path: string): Segment | undefined {
    const spares = this.spares;
    if (spares === undefined || !spares.ready) return undefined;
    const taken = spares.take();
    try {
      const spare = this.device.open(taken);
      try {
        spare.write(encodeSegmentHeader(this.logId, index, this.segmentSizeBytes), 0);
        spare.syncNow("data"); // never retried: on failure the spare is removed
      } finally {
        spare.close();
      }
      this.device.rename(taken, path);
    } catch {
      spares.discard(taken);
      return undefined;
    }
    spares.installed();
    // The file at `path` is a whole segment now; failing to open it leaves it for recovery.
    const file = this.device.open(path);
    try {
      return new Segment(
        index,
        file,
        this.segmentSizeBytes,
        file.view(this.segmentSizeBytes),
        true,
      );
    } catch (error) {
      file.close();
      throw error;
    }
  }

  #push(segment: Segment): Segment {
    if (this.#segments.length === 0) this.#firstIndex = segment.index;
    const expected = this.#firstIndex + this.#segments.length;
    if (segment.index !== expected) {
      throw new Error(`assertion failed: segment ${segment.index} added, ${expected} expected`);
    }
    this.#segments.push(segment);
    return segment;
  }

  /**
   * Releases, closes and removes every segment with an index below `index` (oldest first). With
   * spares (`zeroFillSegments`), the files the spares take (up to two ready at once) become spares
   * instead of being removed (see `SparePreparer.recycle`).
   */
  removeBelow(index: number): number {
    let removed = 0;
    while (this.#segments.length && this.#firstIndex < index) {
      const segment = this.#segments.shift()!;
      this.#firstIndex++;
      segment.release();
      if (!this.spares?.recycle(segment.path)) this.device.remove(segment.path);
      removed++;
    }
    if (this.#segments.length === 0) this.#firstIndex = index;
    return removed;
  }

  /** Releases, closes and removes every segment with an index above `index` (newest first). */
  removeAbove(index: number): number {
    let removed = 0;
    while (this.#segments.length && this.lastIndex! > index) {
      this.#drop(this.#segments.pop()!, true);
      removed++;
    }
    return removed;
  }

  /** Releases every mapping and closes every file, keeping them on disk. */
  closeAll(): void {
    for (const segment of this.#segments) this.#drop(segment, false);
    this.#segments = [];
  }

  #drop(segment: Segment, remove: boolean): void {
    segment.release();
    if (remove) this.device.remove(segment.path);
  }

  /** Address of the first record slot of segment `index`. */
  firstAddressOf(index: number): number {
    return index * this.segmentSizeBytes + SEGMENT_HEADER_BYTES;
  }
}

/** Validates the record at `offset` of a mapped segment (see `checkRecord`). */
function checkSegmentRecord(
  view: FileView,
  offset: number,
  segmentSizeBytes: number,
  address: number,
  logId: number,
): RecordProblem | undefined {
  const limit = recordBytesLimit(segmentSizeBytes);
  const { bytes, words, checksum } = view;
  return checkRecord(bytes, words, offset, segmentSizeBytes, address, logId, limit, checksum);
}

/** A record found in a segment: its kind, payload (a view) and total size. */
export interface SegmentRecord {
  kind: number;
  payload: Uint8Array;
  size: number;
}

/**
 * The record at `address` in the mapped segment `view` (segment `index`), or a string saying why
 * none starts there. A damaged record throws `CorruptionError` naming `path`.
 */
export function recordInSegment(
  view: FileView,
  index: number,
  segmentSizeBytes: number,
  address: number,
  logId: number,
  path: string,
): SegmentRecord | string {
  const offset = address - index * segmentSizeBytes;
  if ((offset & 7) !== 0 || offset < SEGMENT_HEADER_BYTES) return "no record starts there";
  const { bytes, words } = view;
  const problem = checkSegmentRecord(view, offset, segmentSizeBytes, address, logId);
  if (problem === "address" || problem === "empty") return "no record starts there";
  if (problem !== undefined) {
    throw new CorruptionError(path, address, `record fails validation (${problem})`);
  }
  const length = headerLength(words, offset);
  const start = offset + RECORD_HEADER_BYTES;
  return {
    kind: headerKind(words, offset),
    payload: bytes.subarray(start, start + length),
    size: recordSizeBytes(length),
  };
}

/**
 * Whether the record header at word `w` of `words` is one of `kind` stored at `address` whose
 * payload fits in `room` bytes. Compares the whole stored address, so a non-integer or
 * misaligned `address` never matches.
 */
function headerMatches(
  words: Uint32Array,
  w: number,
  address: number,
  kind: number,
  room: number,
): boolean {
  const high = words[w + 3];
  return (high & 0xffff) * 0x1_0000_0000 + words[w + 2] === address &&
    ((high >>> 16) & 0xff) === kind && words[w + 1] <= room;
}

/**
 * The offset in `segment` of the payload of the record of `kind` at `address`, or -1 when no
 * valid record of that kind starts there (the caller's slow path, e.g.
 * {@linkcode recordInSegment}, then says why); the payload's length is the header's length word,
 * `segment.view.words[(offset >>> 2) - 3]`. The read fast path: header words only, and the
 * checksum only on the first read of a record this process did not write.
 */
export function payloadOffset(
  segment: Segment,
  segmentSizeBytes: number,
  address: number,
  kind: number,
  logId: number,
): number {
  const offset = address - segment.index * segmentSizeBytes;
  if (offset < SEGMENT_HEADER_BYTES || offset > segmentSizeBytes - RECORD_HEADER_BYTES) return -1;
  const start = offset + RECORD_HEADER_BYTES;
  if (!headerMatches(segment.view.words, offset >>> 2, address, kind, segmentSizeBytes - start)) {
    return -1;
  }
  if (offset < segment.verifyBelow && !isVerified(segment, offset)) {
    if (checkSegmentRecord(segment.view, offset, segmentSizeBytes, address, logId)) return -1;
    markVerified(segment, offset, segmentSizeBytes);
  }
  return start;
}

/** Like {@linkcode payloadOffset}, returning the payload as a new view of the mapping. */
export function payloadView(
  segment: Segment,
  segmentSizeBytes: number,
  address: number,
  kind: number,
  logId: number,
): Uint8Array | undefined {
  const start = payloadOffset(segment, segmentSizeBytes, address, kind, logId);
  if (start < 0) return undefined;
  const { bytes, words } = segment.view;
  return new Uint8Array(bytes.buffer, bytes.byteOffset + start, words[(start >>> 2) - 3]);
}

/**
 * Copying reads of a segment not mapped yet that are served with `pread` before the next one maps
 * it. A reopen that reads a few entries then maps nothing: mapping a 64 MiB segment and unmapping
 * it cost 20 µs in Deno and 85–95 µs in Bun here, and both runtimes count the mapping as external
 * memory, so it also brings collections forward; two `pread`s of one entry cost a few µs.
 */
export const PREADS_BEFORE_MAPPING = 8;

/** A record header read by {@linkcode readPayloadCopy}, and its checksummed part. */
export interface HeaderScratch {
  bytes: Uint8Array;
  words: Uint32Array;
  /** `bytes` from byte 4: what the record's checksum covers of its header. */
  summed: Uint8Array;
}

/** A {@linkcode HeaderScratch} to reuse across reads. */
export function headerScratch(): HeaderScratch {
  const bytes = new Uint8Array(RECORD_HEADER_BYTES);
  return { bytes, words: new Uint32Array(bytes.buffer), summed: bytes.subarray(4) };
}

/**
 * A copy of the payload of the record of `kind` at `address` of an unmapped `segment`, read
 * with two `pread`s and checked as the mapped path checks it, checksum included (the record was
 * not written by this process). `undefined` when anything is off: the caller then takes the
 * mapped path, which reports what.
 */
export function readPayloadCopy(
  segment: Segment,
  segmentSizeBytes: number,
  address: number,
  kind: number,
  logId: number,
  scratch: HeaderScratch,
): Uint8Array | undefined {
  const offset = address - segment.index * segmentSizeBytes;
  if (offset < SEGMENT_HEADER_BYTES || offset > segmentSizeBytes - RECORD_HEADER_BYTES) {
    return undefined;
  }
  const { bytes, words } = scratch;
  if (segment.file.read(bytes, offset) !== RECORD_HEADER_BYTES) return undefined;
  const room = segmentSizeBytes - offset - RECORD_HEADER_BYTES;
  if (!headerMatches(words, 0, address, kind, room)) return undefined;
  const length = words[1];
  const payload = new Uint8Array(length);
  if (length > 0 && segment.file.read(payload, offset + RECORD_HEADER_BYTES) !== length) {
    return undefined;
  }
  return checksum(payload, checksum(scratch.summed, logId)) === words[0] ? payload : undefined;
}

/** The segment's bytes as 64-bit floats (made on first use; detached with the mapping). */
export function segmentDoubles(segment: Segment): Float64Array {
  const bytes = segment.view.bytes;
  return segment.doubles ??= new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 3);
}

/** Segment bytes one chunk of a verified bitmap covers: 256 KiB, at one bit per 8 bytes. */
const VERIFIED_CHUNK_SHIFT = 18;
const VERIFIED_CHUNK_WORDS = 1 << (VERIFIED_CHUNK_SHIFT - 8);

/** Whether the record at `offset` of `segment` passed its checksum in this process. */
export function isVerified(segment: Segment, offset: number): boolean {
  const chunk = segment.verified?.[offset >>> VERIFIED_CHUNK_SHIFT];
  return chunk !== undefined &&
    ((chunk[(offset >>> 8) & (VERIFIED_CHUNK_WORDS - 1)] >>> ((offset >>> 3) & 31)) & 1) === 1;
}

function markVerified(segment: Segment, offset: number, segmentSizeBytes: number): void {
  // One bit per 8-byte unit, in chunks made on the first verified read in each 256 KiB: a reopen
  // that reads one entry allocates 4 KiB, not 1/64 of the segment (1 MiB, which cost 90 µs of
  // garbage collection per reopen in Bun).
  const chunks = segment.verified ??= new Array(
    Math.ceil(segmentSizeBytes / 2 ** VERIFIED_CHUNK_SHIFT),
  ).fill(undefined);
  const chunk = chunks[offset >>> VERIFIED_CHUNK_SHIFT] ??= new Uint32Array(VERIFIED_CHUNK_WORDS);
  chunk[(offset >>> 8) & (VERIFIED_CHUNK_WORDS - 1)] |= 1 << ((offset >>> 3) & 31);
}

/**
 * Where a walk at `address` finds a record: `address` itself, or past the segment header when
 * `address` is a segment's start, or the next segment's first record when too little of this
 * segment is left for a header (records never straddle segments).
 */
export function recordStartFrom(address: number, segmentSizeBytes: number): number {
  const index = Math.floor(address / segmentSizeBytes);
  const offset = address - index * segmentSizeBytes;
  if (offset === 0) return address + SEGMENT_HEADER_BYTES;
  if (segmentSizeBytes - offset < RECORD_HEADER_BYTES) {
    return (index + 1) * segmentSizeBytes + SEGMENT_HEADER_BYTES;
  }
  return address;
}

/**
 * Walks the records in `[from, to)` (`from` a record address or a segment start), skipping
 * segment headers and padding; `recordAt` finds each one. Yields entries and commit markers.
 */
export function* walkRecords(
  from: number,
  to: number,
  segmentSizeBytes: number,
  recordAt: (address: number) => SegmentRecord,
): Generator<{ address: number; nextAddress: number; record: SegmentRecord }> {
  const S = segmentSizeBytes;
  let address = from;
  while (address < to) {
    const start = recordStartFrom(address, S);
    if (start !== address) {
      address = start;
      continue;
    }
    const index = Math.floor(address / S);
    const record = recordAt(address);
    const nextAddress = record.kind === RecordKind.padding
      ? (index + 1) * S
      : address + record.size;
    yield { address, nextAddress, record };
    address = nextAddress;
  }
}
