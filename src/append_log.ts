/**
 * `AppendLog`: a FasterLog-style persistent log. Entries get logical byte addresses; `commit()`
 * makes everything enqueued before it durable with one shared sync; reads are zero-copy views of
 * the mapped segments or copies; recovery yields exactly the committed prefix.
 *
 * @module
 */
import {
  COOKIE_SIZE_BYTES_MAX,
  ENTRY_SIZE_BYTES_LIMIT,
  ENTRY_SIZE_BYTES_MAX_DEFAULT,
  RECORD_HEADER_BYTES,
  SEGMENT_HEADER_BYTES,
} from "./constants.ts";
import type { Device } from "./device.ts";
import { ClosedError, InvalidArgumentError } from "./errors.ts";
import type { Metrics, NumberSeries } from "./metrics.ts";
import { RecordKind } from "./record_format.ts";
import type { LogEntry } from "./entry_iterator.ts";
import { type CommitPoint, type Durability, DurableTail } from "./tail.ts";
import { checkLogOptions } from "./log_options.ts";
import { checkBytes, checkIndex, checkSizeOption, runNow } from "./validate.ts";

export type { CommitPoint, Durability, LogEntry };

/** Options of {@linkcode AppendLog.open}. */
export interface AppendLogOptions {
  /** The log directory; created (mode 0700) if missing. One open log per directory. */
  dir: string;
  /**
   * What a resolved commit promises: `"none"` = in the page cache (survives a process crash, not
   * power loss); `"data"` = `fdatasync` (default); `"full"` = `fsync`.
   */
  durability?: Durability;
  /** Segment file size, a power of two from 64 KiB to 1 GiB; fixed when the log is created. */
  segmentSizeBytes?: number;
  /** Staging buffer for enqueued entries before they are written out (default 1 MiB). */
  bufferSizeBytes?: number;
  /** Largest entry accepted (default 1 MiB; at most a segment minus headers). */
  entrySizeBytesMax?: number;
  /** Committed bytes between checkpoints, bounding the scan after a crash (default 8 MiB). */
  checkpointIntervalBytes?: number;
  /**
   * Run each commit's `fdatasync`/`fsync` on the JS thread instead of the runtime's worker pool
   * (default false). A lone commit then skips the hand-off to the pool and back (about 20 µs
   * here), at the price of blocking the event loop for every sync: tens of microseconds on an
   * idle SSD, milliseconds or more with much dirty data or a busy device. For a latency-bound
   * writer with nothing else on its loop; servers keep the default.
   */
  inlineSync?: boolean;
  /**
   * Write zeros through each new segment, off the JS thread and ahead of need, before the log
   * writes to it (default false). A preallocated segment's blocks are unwritten extents, and the
   * first write to each makes its sync also commit the file system's journal; into zero-filled
   * blocks a sync writes data only. Measured here: a commit of 100 × 100 B syncs in ~60 µs
   * instead of ~130, and a lone commit's p99 drops by a third (its p50 rises ~5 µs). Costs a
   * second write of every segment and one spare segment file on disk (kept across reopens); a
   * new log's `open` waits for its first segment to be filled (about 60 ms for 64 MiB here).
   */
  zeroFillSegments?: boolean;
  /** The storage device (default: the real file system). Tests inject faulty devices here. */
  device?: Device;
  /** The metrics registry the log records into (default `defaultMetrics`). */
  metrics?: Metrics;
}

/** Options of {@linkcode AppendLog.scan}. */
export interface ScanOptions {
  /** First address (an entry's address; default `beginAddress`). */
  from?: number;
  /** End, exclusive (default `committedUntilAddress`; at most `tailAddress`). */
  to?: number;
}

/** Options of {@linkcode AppendLog.tail}. */
export interface TailIterationOptions {
  /** First address (default `beginAddress`). */
  from?: number;
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
}

/** Counters of an open log (counts since it was opened, positions as of now). */
export interface AppendLogStats {
  /** Lowest readable address. */
  readonly beginAddress: number;
  /** Every entry below this address is committed. */
  readonly committedUntilAddress: number;
  /** The address the next entry will get. */
  readonly tailAddress: number;
  /** Number of the latest commit. */
  readonly commitNumber: number;
  /** Commit cycles completed (each may serve many `commit()` calls). */
  readonly commits: number;
  /** File and directory syncs issued. */
  readonly syncs: number;
  /** Staging-buffer write-outs. */
  readonly flushes: number;
  /** Checkpoints written. */
  readonly checkpoints: number;
  /** Bytes written to segment files. */
  readonly bytesWritten: number;
  /** Bytes of segment files mapped for reading. */
  readonly mappedBytes: number;
  /**
   * Spare segments made ready (`zeroFillSegments`): written with zeros and synced, recycled, or
   * kept from the last open.
   */
  readonly zeroFillPrepared: number;
  /**
   * Of those, the files of segments a truncation dropped, made ready with a rename instead of
   * being removed: no zeros written for them.
   */
  readonly zeroFillRecycled: number;
  /** Segments made from those spares. */
  readonly zeroFillInstalled: number;
  /** Spare preparations that failed; each segment is then preallocated as without the option. */
  readonly zeroFillFailed: number;
}

/**
 * A persistent, recoverable append-only log (FasterLog-style). Entries get logical byte addresses;
 * `commit()` makes everything enqueued before it durable with one shared sync; a reopened log has
 * exactly its committed entries.
 *
 * @example
 * ```ts
 * import { AppendLog } from "@hybridlog/hybridlog";
 *
 * await using log = await AppendLog.open({ dir: "./data/queue" });
 * const address = log.enqueue(new TextEncoder().encode("hello"));
 * await log.commit();
 * console.log(new TextDecoder().decode(log.read(address)));
 * ```
 */
export class AppendLog {
  #tail: DurableTail;
  #entrySizeBytesMax: number;
  #completed = false;
  #appends: NumberSeries;

  private constructor(tail: DurableTail, entrySizeBytesMax: number) {
    this.#tail = tail;
    this.#entrySizeBytesMax = entrySizeBytesMax;
    this.#appends = tail.metrics.appends();
  }

  /**
   * Opens the log in `options.dir`, creating it if new and recovering it otherwise: the log
   * reopens at its last commit, a torn tail is cut off (and that synced) before any write.
   *
   * @param options Where and how to open.
   * @returns The open log.
   * @throws {LockedError} Another open log holds the directory.
   * @throws {CorruptionError} Committed data failed validation.
   * @throws {InvalidArgumentError} An option is out of range.
   * @throws {IoError} A system call failed.
   */
  static open(options: AppendLogOptions): Promise<AppendLog> {
    return Promise.resolve().then(async () => {
      const what = "open log";
      const common = checkLogOptions(what, options);
      const entryLimit = Math.min(
        ENTRY_SIZE_BYTES_LIMIT,
        common.segmentSizeBytes - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES,
      );
      const entrySizeBytesMax = checkSizeOption(
        what,
        "entrySizeBytesMax",
        options.entrySizeBytesMax,
        Math.min(ENTRY_SIZE_BYTES_MAX_DEFAULT, entryLimit),
        0,
        entryLimit,
      );
      const startedMs = performance.now();
      const tail = DurableTail.open(common);
      const log = new AppendLog(tail, entrySizeBytesMax);
      await tail.zeroFillEmptyTail();
      tail.metrics.recovered(startedMs, tail.recoveredTruncatedTail);
      return log;
    });
  }

  /** The absolute path of the log directory. */
  get dir(): string {
    return this.#tail.dir;
  }
  /** The durability of commits. */
  get durability(): Durability {
    return this.#tail.durability;
  }
  /** Lowest readable address; entries below it read as `undefined`. */
  get beginAddress(): number {
    return this.#tail.beginAddress;
  }
  /** Every entry below this address is committed (durable per `durability`). */
  get committedUntilAddress(): number {
    return this.#tail.committedUntilAddress;
  }
  /** The address the next entry will get (past every enqueued entry). */
  get tailAddress(): number {
    return this.#tail.tailAddress;
  }
  /** Number of the latest commit (0 for a log never committed). */
  get commitNumber(): number {
    return this.#tail.commitNumber;
  }
  /** The cookie of the latest commit that carried one, recovered at open. */
  get cookie(): Uint8Array | undefined {
    return this.#tail.cookie?.slice();
  }
  /** True after {@linkcode AppendLog.complete}. */
  get completed(): boolean {
    return this.#completed;
  }
  /** True when the last open cut a torn or uncommitted tail off. */
  get recoveredTruncatedTail(): boolean {
    return this.#tail.recoveredTruncatedTail;
  }

  #assertEnqueue(what: string): void {
    this.#tail.assertWritable(what);
    if (this.#completed) throw new ClosedError(`Cannot ${what}: the log is completed`);
  }

  /**
   * Appends an entry and returns its address. The bytes are copied at once, so the caller may
   * reuse its buffer. When the staging buffer fills, it is written out (not synced) first.
   *
   * @param bytes The entry.
   * @returns The entry's address.
   * @throws {InvalidArgumentError} Not a `Uint8Array`, or larger than `entrySizeBytesMax`.
   * @throws {ClosedError} The log is closed or completed.
   * @throws {IoError} Writing out, or creating the next segment (e.g. `ENOSPC`), failed.
   */
  enqueue(bytes: Uint8Array): number {
    checkBytes("enqueue", "entry", bytes, this.#entrySizeBytesMax);
    this.#assertEnqueue("enqueue");
    this.#tail.prepareOne(bytes.length);
    const address = this.#tail.append(RecordKind.entry, undefined, bytes);
    this.#appends.value++;
    return address;
  }

  /**
   * Like {@linkcode AppendLog.enqueue}, but returns `undefined` instead of doing I/O (a full
   * staging buffer or a segment roll-over).
   *
   * @param bytes The entry.
   * @returns The entry's address, or `undefined` if appending it would need I/O.
   */
  tryEnqueue(bytes: Uint8Array): number | undefined {
    checkBytes("enqueue", "entry", bytes, this.#entrySizeBytesMax);
    this.#assertEnqueue("enqueue");
    const address = this.#tail.append(RecordKind.entry, undefined, bytes, false);
    if (address < 0) return undefined;
    this.#appends.value++;
    return address;
  }

  /**
   * Appends entries as one unit: all or nothing, also after a crash (a commit marker only ever
   * follows the whole batch). Every entry is checked before anything is written.
   *
   * @param entries The entries, in order.
   * @returns The entries' addresses, in order.
   */
  enqueueBatch(entries: readonly Uint8Array[]): number[] {
    if (!Array.isArray(entries)) {
      throw new InvalidArgumentError(
        "Cannot enqueue batch: entries must be an array of Uint8Array",
      );
    }
    entries.forEach((entry, i) =>
      checkBytes("enqueue batch", `entry ${i}`, entry, this.#entrySizeBytesMax)
    );
    this.#assertEnqueue("enqueue batch");
    this.#tail.prepare(entries.map((entry) => entry.length));
    const addresses = entries.map((entry) => this.#tail.append(RecordKind.entry, undefined, entry));
    this.#appends.value += entries.length;
    return addresses;
  }

  /**
   * Makes every entry enqueued before the call durable per `durability`. Concurrent calls share
   * one write and one sync (group commit); the sync runs off the JS thread.
   *
   * @param options `cookie`: up to 2 KiB stored with this commit and recovered at open.
   * @returns The commit point reached.
   * @throws {PoisonedError} An earlier write or sync failed; reopen the log.
   * @throws {IoError} The write or sync of this commit failed (the log is poisoned after it).
   *
   * @example
   * ```ts
   * import { AppendLog } from "@hybridlog/hybridlog";
   *
   * // A consumer keeps its position in the log itself: the cookie commits with the entries.
   * const dir = "./data/queue";
   * const log = await AppendLog.open({ dir });
   * log.enqueue(new TextEncoder().encode("job 1"));
   * const point = await log.commit({ cookie: new TextEncoder().encode("consumed up to 0") });
   * console.log(point.commitNumber); // 1
   * await log.close();
   *
   * await using reopened = await AppendLog.open({ dir });
   * console.log(new TextDecoder().decode(reopened.cookie)); // consumed up to 0
   * ```
   */
  commit(options?: { cookie?: Uint8Array }): Promise<CommitPoint> {
    return runNow(() => {
      const cookie = options?.cookie === undefined
        ? undefined
        : checkBytes("commit", "cookie", options.cookie, COOKIE_SIZE_BYTES_MAX);
      return this.#tail.commit(cookie);
    });
  }

  /**
   * Resolves once everything below `address` (default: the current tail) is committed by some
   * commit; it does not start one.
   *
   * @param address An entry's address; the wait covers that entry.
   */
  waitForCommit(address?: number): Promise<void> {
    return runNow(() => {
      this.#tail.assertOpen("wait for commit");
      const until = address === undefined
        ? this.#tail.tailAddress
        : checkIndex("wait for commit", "address", address) + 1;
      return this.#tail.waitFor(Math.min(until, this.#tail.tailAddress));
    });
  }

  /**
   * Enqueues `bytes`, commits, and resolves with the entry's address once durable.
   *
   * @param bytes The entry.
   * @returns The entry's address.
   */
  async enqueueAndWaitForCommit(bytes: Uint8Array): Promise<number> {
    const address = this.enqueue(bytes);
    await this.#tail.commit();
    return address;
  }

  #locateEntry(what: string, address: number): Uint8Array | undefined {
    checkIndex(what, "address", address);
    this.#tail.assertOpen(what);
    if (address < this.#tail.beginAddress || address >= this.#tail.tailAddress) return undefined;
    const found = this.#tail.recordAt(address);
    if (typeof found === "string") {
      throw new InvalidArgumentError(`Cannot ${what} at address ${address}: ${found}`);
    }
    if (found.kind !== RecordKind.entry) {
      throw new InvalidArgumentError(`Cannot ${what} at address ${address}: it holds no entry`);
    }
    return found.payload;
  }

  /**
   * Reads the entry at `address` as a copy; `undefined` below `beginAddress` or at/after
   * `tailAddress`. Entries not yet committed are readable too.
   *
   * @param address An entry's address, as returned by `enqueue`.
   * @returns A copy of the entry, or `undefined` outside `[beginAddress, tailAddress)`.
   * @throws {InvalidArgumentError} `address` is not a non-negative integer or not an entry's.
   * @throws {CorruptionError} The stored entry fails its checksum (verified on the first read of
   * an entry this process did not write).
   */
  read(address: number): Uint8Array | undefined {
    const copy = this.#tail.committedPayloadCopy(address, RecordKind.entry);
    if (copy !== undefined) return copy;
    return this.#locateEntry("read", address)?.slice();
  }

  /**
   * Reads the entry at `address` without copying: a view of the mapped segment, detached (length 0)
   * once the entry is truncated or the log closes, so it can never reach unmapped memory. Entries
   * still in the staging buffer are returned as copies.
   *
   * @param address An entry's address, as returned by `enqueue`.
   * @returns A view of the entry, or `undefined` outside `[beginAddress, tailAddress)`.
   */
  readView(address: number): Uint8Array | undefined {
    const view = this.#tail.committedPayload(address, RecordKind.entry);
    if (view !== undefined) return view;
    const payload = this.#locateEntry("read", address);
    if (payload === undefined) return undefined;
    return address >= this.#tail.committedUntilAddress ? payload.slice() : payload;
  }

  #checkRange(what: string, from: unknown, to: unknown): [number, number] {
    const start = from === undefined ? this.#tail.beginAddress : checkIndex(what, "from", from);
    const end = to === undefined ? this.#tail.committedUntilAddress : checkIndex(what, "to", to);
    return [start, Math.min(end, this.#tail.tailAddress)];
  }

  /**
   * Iterates entries in `[from, to)` in address order (default: every committed entry). Values are
   * zero-copy views (see {@linkcode LogEntry}).
   *
   * @param options `from` (an entry's address) and `to` (exclusive).
   * @returns The entries, each with the address of the next one to resume from.
   * @throws {CorruptionError} An entry fails validation.
   *
   * @example
   * ```ts
   * import { AppendLog } from "@hybridlog/hybridlog";
   *
   * await using log = await AppendLog.open({ dir: "./data/events" });
   * log.enqueueBatch(["created", "paid", "shipped"].map((e) => new TextEncoder().encode(e)));
   * await log.commit();
   * for (const { address, value } of log.scan()) {
   *   console.log(address, new TextDecoder().decode(value)); // copy `value` to keep it
   * }
   * ```
   */
  scan(options: ScanOptions = {}): IteratorObject<LogEntry, undefined> {
    this.#tail.assertOpen("scan");
    const [from, to] = this.#checkRange("scan", options.from, options.to);
    return this.#tail.entries(from, to);
  }

  /**
   * Iterates committed entries from `from`, then waits for new commits and yields them as they
   * land. Ends when `signal` aborts, the log is completed and drained, or the log closes.
   *
   * @param options `from`: the first address (default `beginAddress`); `signal` ends it.
   * @returns The committed entries, then each new one as its commit becomes durable.
   *
   * @example
   * ```ts
   * import { AppendLog } from "@hybridlog/hybridlog";
   *
   * await using log = await AppendLog.open({ dir: "./data/events" });
   * const consumer = (async () => {
   *   for await (const entry of log.tail()) console.log(new TextDecoder().decode(entry.value));
   * })();
   * for (const event of ["created", "paid"]) {
   *   log.enqueue(new TextEncoder().encode(event));
   *   await log.commit(); // the consumer sees the entry once it is durable
   * }
   * await log.complete(); // no more entries: the tail ends after the last one
   * await consumer;
   * ```
   */
  async *tail(options: TailIterationOptions = {}): AsyncGenerator<LogEntry> {
    this.#tail.assertOpen("tail");
    const signal = options.signal;
    let cursor = options.from === undefined
      ? this.#tail.beginAddress
      : checkIndex("tail", "from", options.from);
    while (!signal?.aborted) {
      const until = this.#tail.committedUntilAddress;
      for (const entry of this.#tail.entries(cursor, until)) {
        yield entry;
        if (signal?.aborted || this.#tail.closed) return;
      }
      cursor = Math.max(cursor, until);
      if (this.#tail.closed) return;
      if (this.#completed && cursor >= this.#tail.committedUntilAddress) return;
      if (cursor < this.#tail.committedUntilAddress) continue;
      await new Promise<void>((wake) => {
        this.#tail.onNextCommit(wake);
        signal?.addEventListener("abort", () => wake(), { once: true });
      });
    }
  }

  /**
   * Frees the log below `address` (an entry's address, or `committedUntilAddress`): it reads as
   * `undefined` at once, and whole segments below it are removed after the next commit.
   *
   * @param address The new begin address.
   * @throws {InvalidArgumentError} `address` is past `committedUntilAddress` or not an entry's.
   *
   * @example
   * ```ts
   * import { AppendLog } from "@hybridlog/hybridlog";
   *
   * await using log = await AppendLog.open({ dir: "./data/queue" });
   * const first = log.enqueue(new TextEncoder().encode("job 1"));
   * const second = log.enqueue(new TextEncoder().encode("job 2"));
   * await log.commit();
   * log.truncateUntil(second); // job 1 is done
   * console.log(log.read(first), log.beginAddress === second); // undefined true
   * ```
   */
  truncateUntil(address: number): void {
    checkIndex("truncate", "address", address);
    this.#tail.assertWritable("truncate");
    if (address > this.#tail.committedUntilAddress) {
      throw new InvalidArgumentError(
        `Cannot truncate until ${address}: it is past committedUntilAddress ${this.#tail.committedUntilAddress}`,
      );
    }
    if (address <= this.#tail.beginAddress) return;
    if (
      address !== this.#tail.committedUntilAddress &&
      typeof this.#tail.recordAt(address) === "string"
    ) {
      throw new InvalidArgumentError(`Cannot truncate until ${address}: no entry starts there`);
    }
    this.#tail.truncateUntil(address);
  }

  /** Ends the log for writers: no more enqueues, pending entries are committed, tails end. */
  async complete(): Promise<void> {
    this.#tail.assertOpen("complete");
    this.#completed = true;
    await this.#tail.commit();
  }

  /** Counters and positions. */
  stats(): AppendLogStats {
    const counters = this.#tail.stats();
    return {
      beginAddress: this.beginAddress,
      committedUntilAddress: this.committedUntilAddress,
      tailAddress: this.tailAddress,
      commitNumber: this.commitNumber,
      ...counters,
      mappedBytes: this.#tail.mappedBytes,
    };
  }

  /**
   * Commits what was enqueued, writes a clean checkpoint (so the next open scans nothing),
   * releases mappings (detaching views) and the directory lock. Idempotent.
   */
  close(): Promise<void> {
    return this.#tail.close();
  }

  /** Same as {@linkcode AppendLog.close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
