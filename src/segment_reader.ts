/**
 * A Worker's own read-only mappings of a log's segment files. Committed records are read in
 * place from the same files the owner writes (the page cache is shared, so a `pwrite` by the
 * owner is visible through these mappings), without any message to the owner. The mappings are
 * this thread's: the owner truncating (which unlinks segment files) or closing cannot unmap them
 * under a reader, and they are released only by this thread, below the log's begin address or
 * at detach.
 *
 * @module
 */
import type { Device, DeviceFile, FileView } from "./device.ts";
import { CorruptionError, IoError } from "./errors.ts";
import { join } from "node:path";
import { segmentFileName } from "./segment_format.ts";
import { recordInSegment, type SegmentRecord, walkRecords } from "./segments.ts";

interface Mapped {
  file: DeviceFile;
  view: FileView;
  path: string;
}

/** Read-only access to the committed records of one log, for an attached thread. */
export class SegmentReader {
  #segments = new Map<number, Mapped>();
  #releasedBelow = 0;

  constructor(
    readonly device: Device,
    readonly dir: string,
    readonly logId: number,
    readonly segmentSizeBytes: number,
  ) {
  }

  #segment(index: number): Mapped | undefined {
    let mapped = this.#segments.get(index);
    if (mapped) return mapped;
    const path = join(this.dir, segmentFileName(index));
    let file: DeviceFile;
    try {
      file = this.device.open(path, { readOnly: true });
    } catch (error) {
      // Truncated away (or never created): the caller decides what that means.
      if (error instanceof IoError && error.errno === "ENOENT") return undefined;
      throw error;
    }
    try {
      mapped = { file, view: file.view(this.segmentSizeBytes), path };
    } catch (error) {
      file.close();
      throw error;
    }
    this.#segments.set(index, mapped);
    return mapped;
  }

  /**
   * The record at `address`, or `undefined` if its segment is gone (truncated, when `address` is
   * below `beginAddress`). A missing record anywhere else is corruption.
   */
  recordAt(address: number, beginAddress: () => number): SegmentRecord | undefined {
    const begin = beginAddress();
    if (begin > this.#releasedBelow) this.releaseBelow(begin);
    const index = Math.floor(address / this.segmentSizeBytes);
    const segment = address >= begin ? this.#segment(index) : undefined;
    if (!segment) {
      // The owner publishes a new begin address before it removes the files below it.
      if (address < beginAddress()) return undefined;
      throw new CorruptionError(this.dir, address, "the segment of a committed record is missing");
    }
    const found = recordInSegment(
      segment.view,
      index,
      this.segmentSizeBytes,
      address,
      this.logId,
      segment.path,
    );
    if (typeof found === "string") {
      throw new CorruptionError(segment.path, address, `an indexed record is missing: ${found}`);
    }
    return found;
  }

  /** Records of `[from, to)`, entries and markers alike (`from` clamped to `beginAddress`). */
  records(from: number, to: number, beginAddress: () => number) {
    const recordAt = (address: number) => {
      const found = this.recordAt(address, beginAddress);
      if (!found) throw new CorruptionError(this.dir, address, "scan reached a truncated record");
      return found;
    };
    return walkRecords(Math.max(from, beginAddress()), to, this.segmentSizeBytes, recordAt);
  }

  /** Releases mappings of segments that lie wholly below `beginAddress`. */
  releaseBelow(beginAddress: number): void {
    this.#releasedBelow = beginAddress;
    const first = Math.floor(beginAddress / this.segmentSizeBytes);
    for (const [index, mapped] of this.#segments) {
      if (index >= first) continue;
      this.#segments.delete(index);
      mapped.view.release();
      mapped.file.close();
    }
  }

  /** Releases every mapping (no view handed out refers to them: values are copies). */
  close(): void {
    this.releaseBelow(Number.MAX_SAFE_INTEGER);
  }
}
