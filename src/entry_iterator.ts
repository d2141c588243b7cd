/**
 * The scan of committed entries: a hand-written iterator over the mapped segments. It reads record
 * headers as 32-bit words, skips segment headers, padding and commit markers, and yields a new
 * view per entry; a record it cannot read this way (staged, damaged, missing) goes through the
 * tail's checked path, which copies staged bytes and names the file of a damaged record. Unlike
 * nested generators, nothing but the entry and its view is allocated per step.
 *
 * @module
 */
import { RECORD_HEADER_BYTES } from "./constants.ts";
import { CorruptionError } from "./errors.ts";
import { RecordKind, recordSizeBytes } from "./record_format.ts";
import { isVerified, payloadView, recordStartFrom, type Segment } from "./segments.ts";

/** An entry yielded by a scan or a tail. */
export interface LogEntry {
  /** The entry's address. */
  readonly address: number;
  /** The address after the entry, to resume a scan. */
  readonly nextAddress: number;
  /**
   * The entry's bytes: a zero-copy view of the mapped segment (a copy for entries not yet written
   * out). The view is detached (length 0) once the entry is truncated or the log closes; copy it
   * to keep it longer.
   */
  readonly value: Uint8Array;
}

/** What the iterator needs from the tail it walks. */
export interface EntrySource {
  readonly segmentSizeBytes: number;
  readonly logId: number;
  /** Records at or above it are staged in memory, not yet in a segment. */
  readonly stagingBase: number;
  /** The segment holding `address`, or `undefined`. */
  segmentOf(address: number): Segment | undefined;
  /** The checked read of the record at `address`, or a string saying why none starts there. */
  recordAt(address: number): { kind: number; payload: Uint8Array; size: number } | string;
  /** The path a damaged record at `address` is reported with. */
  pathOf(address: number): string;
}

/** Iterates the entries in `[from, to)` of `source` (`from` a record address or segment start). */
export class EntryIterator extends Iterator<LogEntry, undefined, unknown> {
  #source: EntrySource;
  #address: number;
  #to: number;
  #result: { done: boolean; value: LogEntry | undefined } = { done: false, value: undefined };
  // The segment the fast path reads, and the addresses it may read there: [.., #fastEnd).
  #segment: Segment | undefined;
  #segmentBase = 0;
  #segmentEnd = 0;
  #fastEnd = 0;
  #words: Uint32Array | undefined;
  #buffer: ArrayBufferLike | undefined;
  #bufferOffset = 0;

  constructor(source: EntrySource, from: number, to: number) {
    super();
    this.#source = source;
    this.#address = from;
    this.#to = to;
  }

  override next(): IteratorResult<LogEntry, undefined> {
    const result = this.#result;
    // The fast path: an entry of the cached segment, verified (or trusted) and below the end.
    const address = this.#address;
    if (address < this.#fastEnd) {
      const offset = address - this.#segmentBase;
      const words = this.#words!;
      const w = offset >>> 2;
      const high = words[w + 3];
      if (
        (high >>> 16) === RecordKind.entry &&
        (high & 0xffff) * 0x1_0000_0000 + words[w + 2] === address &&
        (offset >= this.#segment!.verifyBelow || isVerified(this.#segment!, offset))
      ) {
        const length = words[w + 1];
        const start = offset + RECORD_HEADER_BYTES;
        if (start + length <= this.#segmentEnd) {
          const nextAddress = address + ((RECORD_HEADER_BYTES + length + 7) & ~7);
          this.#address = nextAddress;
          const value = new Uint8Array(this.#buffer!, this.#bufferOffset + start, length);
          result.value = { address, nextAddress, value };
          return result as IteratorResult<LogEntry, undefined>;
        }
      }
    }
    return this.#nextChecked();
  }

  /** Everything but the fast path: segment changes, markers, padding, staged or damaged records. */
  #nextChecked(): IteratorResult<LogEntry, undefined> {
    const source = this.#source;
    const S = source.segmentSizeBytes;
    const result = this.#result;
    let address = this.#address;
    this.#fastEnd = 0;
    while (address < this.#to) {
      const start = recordStartFrom(address, S);
      if (start !== address) {
        address = start;
        continue;
      }
      const index = Math.floor(address / S);
      const segment = address < source.stagingBase ? source.segmentOf(address) : undefined;
      const value = segment === undefined
        ? undefined
        : payloadView(segment, S, address, RecordKind.entry, source.logId);
      if (segment !== undefined && value !== undefined) {
        const nextAddress = address + recordSizeBytes(value.length);
        this.#address = nextAddress;
        this.#cache(segment, index * S, Math.min(this.#to, source.stagingBase, (index + 1) * S));
        result.value = { address, nextAddress, value };
        return result as IteratorResult<LogEntry, undefined>;
      }
      // Not an entry readable in place: a commit marker, padding, a staged or damaged record.
      const found = source.recordAt(address);
      if (typeof found === "string") {
        throw new CorruptionError(source.pathOf(address), address, `scan found ${found}`);
      }
      const nextAddress = found.kind === RecordKind.padding
        ? (index + 1) * S
        : address + found.size;
      if (found.kind === RecordKind.entry) {
        this.#address = nextAddress;
        // A staged payload lives in the reused staging buffer: hand out a copy.
        const value = address >= source.stagingBase ? found.payload.slice() : found.payload;
        result.value = { address, nextAddress, value };
        return result as IteratorResult<LogEntry, undefined>;
      }
      address = nextAddress;
    }
    this.#address = address;
    return { done: true, value: undefined };
  }

  /**
   * Lets the fast path read `segment` (based at `base`) for records starting below `end`: record
   * headers there are compared with their address and kind, and the payload must end inside the
   * segment. Anything else falls back to {@linkcode EntryIterator.#nextChecked}.
   */
  #cache(segment: Segment, base: number, end: number): void {
    const bytes = segment.view.bytes;
    this.#segment = segment;
    this.#segmentBase = base;
    this.#segmentEnd = this.#source.segmentSizeBytes;
    this.#words = segment.view.words;
    this.#buffer = bytes.buffer;
    this.#bufferOffset = bytes.byteOffset;
    // A header must fit below the segment's end for the fast path to read it.
    this.#fastEnd = Math.min(end, base + this.#segmentEnd - RECORD_HEADER_BYTES);
  }

  /** Ends the iteration early (a `break` out of `for...of`). */
  override return(): IteratorResult<LogEntry, undefined> {
    this.#to = this.#fastEnd = 0;
    return { done: true, value: undefined };
  }

  override [Symbol.iterator](): this {
    return this;
  }
}
