/**
 * `LogManager`: many named consensus logs under one directory, opened on first use, shared by
 * reference-counted leases, and closed least-recently-used when too many are open or they map too
 * many bytes. A replica that partitions consensus per table or per key keeps thousands of them.
 *
 * Names are arbitrary strings or bytes. Each maps to the directory `log-<32 hex digits>` (the
 * first 128 bits of SHA-256 of a type byte and the name), so no name — `/`, `..`, NUL or emoji —
 * can reach outside `dir`; the name itself is stored in a `name` file inside it (the registry that
 * `names()` reads back).
 *
 * @module
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import { join, resolve } from "node:path";
import { ConsensusLog, type ConsensusLogOptions } from "./consensus_log.ts";
import type { Device } from "./device.ts";
import { ClosedError, InvalidArgumentError, LeaseLeakError } from "./errors.ts";
import { fsDevice } from "./fs_device.ts";
import { checkMetrics, LOG_LABEL, ManagerMetrics } from "./metrics.ts";
import { checkSizeOption } from "./validate.ts";

/** Longest name, in bytes (UTF-8 for strings). */
export const LOG_NAME_BYTES_MAX = 1024;
/** Default limit of open logs. */
export const LOG_COUNT_MAX_DEFAULT = 256;
/** Default limit of bytes mapped by open logs' segments: 4 GiB. */
export const MAPPED_BYTES_MAX_DEFAULT = 4 * 1024 * 1024 * 1024;
/** Managed logs are many: smaller defaults than a lone log (4 MiB segments, 4 MiB region). */
const MANAGED_SEGMENT_SIZE_BYTES = 4 * 1024 * 1024;
const MANAGED_MUTABLE_SIZE_BYTES = 4 * 1024 * 1024;
const NAME_FILE = "name";
const TYPE_STRING = 0x73; // "s"
const TYPE_BYTES = 0x62; // "b"
const DIRECTORY_PATTERN = /^log-[0-9a-f]{32}$/;

/** A log name. */
export type LogName = string | Uint8Array;

/** Options of {@linkcode LogManager}: where, limits, and the options every log opens with. */
export interface LogManagerOptions extends Omit<ConsensusLogOptions, "dir"> {
  /** The directory holding one subdirectory per log. */
  dir: string;
  /** Most logs kept open (idle ones beyond it are closed, least recently used first). */
  logCountMax?: number;
  /** Most bytes mapped by open logs' segments (idle logs beyond it are closed). */
  mappedBytesMax?: number;
}

/** A reference to an open log; the log stays open until every lease is released. */
export interface LogLease extends AsyncDisposable {
  /** The log. Do not use it after `release()`. */
  readonly log: ConsensusLog;
  /** The name it was acquired by. */
  readonly name: LogName;
  /** Gives the lease back. Releasing twice is harmless. */
  release(): void;
}

/** What {@linkcode LogManager.stats} reports. */
export interface LogManagerStats {
  /** Logs open now (leased or idle). */
  readonly openLogs: number;
  /** Leases acquired and not yet released. */
  readonly liveLeases: number;
  /** Idle logs closed to stay within `logCountMax` or `mappedBytesMax`, since construction. */
  readonly evictions: number;
  /** Bytes mapped by the open logs' segments. */
  readonly mappedBytes: number;
}

interface Entry {
  key: string;
  name: LogName;
  log: ConsensusLog | undefined;
  opening: Promise<ConsensusLog> | undefined;
  closing: Promise<void> | undefined;
  leases: number;
  lastReleased: number;
}

function encodeName(name: unknown): Uint8Array {
  let bytes: Uint8Array;
  let type: number;
  if (typeof name === "string") {
    bytes = new TextEncoder().encode(name);
    type = TYPE_STRING;
  } else if (name instanceof Uint8Array) {
    bytes = name;
    type = TYPE_BYTES;
  } else {
    throw new InvalidArgumentError("Cannot acquire log: the name must be a string or a Uint8Array");
  }
  if (bytes.length === 0 || bytes.length > LOG_NAME_BYTES_MAX) {
    throw new InvalidArgumentError(
      `Cannot acquire log: the name is ${bytes.length} bytes, it must be 1 to ${LOG_NAME_BYTES_MAX}`,
    );
  }
  const encoded = new Uint8Array(bytes.length + 1);
  encoded[0] = type;
  encoded.set(bytes, 1);
  return encoded;
}

function decodeName(encoded: Uint8Array): LogName | undefined {
  if (encoded.length < 2 || encoded.length > LOG_NAME_BYTES_MAX + 1) return undefined;
  const body = encoded.slice(1);
  if (encoded[0] === TYPE_BYTES) return body;
  if (encoded[0] === TYPE_STRING) return new TextDecoder().decode(body);
  return undefined;
}

function directoryOf(encoded: Uint8Array): string {
  return `log-${createHash("sha256").update(encoded).digest("hex").slice(0, 32)}`;
}

/**
 * Many named consensus logs under one directory, opened on first use, shared by
 * reference-counted leases, and closed least recently used first beyond `logCountMax` or
 * `mappedBytesMax`. A leased log is never closed.
 *
 * @example
 * ```ts
 * import { LogManager } from "@hybridlog/hybridlog";
 *
 * const manager = new LogManager({ dir: "./data/tables" });
 * {
 *   await using lease = await manager.acquire("table:users");
 *   lease.log.accept(1, { round: 1, node: 1 }, new TextEncoder().encode("alice"));
 *   await lease.log.commit(1);
 * }
 * await manager.closeAll({ timeoutMs: 1000 });
 * ```
 */
export class LogManager {
  /** The absolute path of the directory holding the logs. */
  readonly dir: string;
  #device: Device;
  #logOptions: Omit<ConsensusLogOptions, "dir">;
  #logCountMax: number;
  #mappedBytesMax: number;
  #entries = new Map<string, Entry>();
  #byString = new Map<string, Entry>();
  #evictions = 0;
  #closed = false;
  #tick = 0;
  #drained: Array<() => void> = [];
  #syncs: boolean;
  #metrics: ManagerMetrics;

  /**
   * Creates a manager; nothing is opened or created on disk until the first
   * {@linkcode LogManager.acquire}.
   *
   * @param options Where the logs live, limits, and options for every log.
   * @throws {InvalidArgumentError} `dir` is empty, or a limit is out of range.
   */
  constructor(options: LogManagerOptions) {
    const what = "create log manager";
    if (typeof options?.dir !== "string" || options.dir === "") {
      throw new InvalidArgumentError(`Cannot ${what}: dir must be a non-empty string`);
    }
    const { dir, logCountMax, mappedBytesMax, ...logOptions } = options;
    this.dir = resolve(dir);
    this.#device = options.device ?? fsDevice;
    this.#syncs = options.durability !== "none";
    this.#logCountMax = checkSizeOption(
      what,
      "logCountMax",
      logCountMax,
      LOG_COUNT_MAX_DEFAULT,
      1,
      1 << 20,
    );
    this.#mappedBytesMax = checkSizeOption(
      what,
      "mappedBytesMax",
      mappedBytesMax,
      MAPPED_BYTES_MAX_DEFAULT,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    this.#metrics = new ManagerMetrics(checkMetrics(what, options.metrics), this.dir);
    this.#logOptions = {
      segmentSizeBytes: MANAGED_SEGMENT_SIZE_BYTES,
      mutableSizeBytes: MANAGED_MUTABLE_SIZE_BYTES,
      ...logOptions,
    };
  }

  /**
   * Leases the log called `name`, opening (or creating) it on first use. Every lease of a name
   * shares one open log; release each (or use `await using`) when done.
   *
   * @param name Any string or bytes, 1 to 1,024 bytes.
   * @returns The lease; `lease.log` is the open {@linkcode ConsensusLog}.
   * @throws {InvalidArgumentError} The name is empty, over 1,024 bytes, or not a string/bytes.
   * @throws {ClosedError} The manager is closing.
   */
  async acquire(name: LogName): Promise<LogLease> {
    // A known string name skips encoding and hashing: the hot path is one Map lookup.
    let entry = typeof name === "string" ? this.#byString.get(name) : undefined;
    const encoded = entry ? undefined : encodeName(name);
    if (this.#closed) throw new ClosedError("Cannot acquire log: the manager is closed");
    const key = entry?.key ?? directoryOf(encoded!);
    entry ??= this.#entries.get(key);
    if (!entry) {
      entry = {
        key,
        name: typeof name === "string" ? name : name.slice(),
        log: undefined,
        opening: undefined,
        closing: undefined,
        leases: 0,
        lastReleased: 0,
      };
      this.#entries.set(key, entry);
      if (typeof name === "string") this.#byString.set(name, entry);
    }
    entry.leases++;
    try {
      while (entry.closing) await entry.closing;
      if (!entry.log) {
        entry.opening ??= this.#open(entry, encoded ?? encodeName(name));
        entry.log = await entry.opening;
      }
    } catch (error) {
      entry.opening = undefined;
      this.#release(entry);
      throw error;
    } finally {
      entry.opening = undefined;
    }
    await this.#evict();
    return this.#lease(entry, entry.log!);
  }

  #lease(entry: Entry, log: ConsensusLog): LogLease {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#release(entry);
    };
    return {
      log,
      name: entry.name,
      release,
      [Symbol.asyncDispose]: () => {
        release();
        return Promise.resolve();
      },
    };
  }

  #release(entry: Entry): void {
    entry.leases--;
    entry.lastReleased = ++this.#tick;
    if (entry.leases === 0 && !entry.log) this.#forget(entry);
    if (this.#liveLeases() === 0) { for (const wake of this.#drained.splice(0)) wake(); }
    if (entry.leases === 0) this.#evict().catch(() => {});
  }

  async #open(entry: Entry, encoded: Uint8Array): Promise<ConsensusLog> {
    const path = join(this.dir, entry.key);
    this.#refuseSymlink(path);
    // Series are labelled with the log's name when it is a string, else with its directory.
    const options: ConsensusLogOptions & { [LOG_LABEL]?: string } = {
      ...this.#logOptions,
      dir: path,
      [LOG_LABEL]: typeof entry.name === "string" ? entry.name : undefined,
    };
    const log = await ConsensusLog.open(options);
    try {
      const namePath = join(path, NAME_FILE);
      if (!this.#device.exists(namePath)) await this.#writeName(path, encoded);
    } catch (error) {
      await log.close();
      throw error;
    }
    return log;
  }

  /** A symlink planted where a log directory belongs could lead outside `dir`: refuse it. */
  #refuseSymlink(path: string): void {
    if (this.#device.name !== "fs") return;
    try {
      if (fs.lstatSync(path).isSymbolicLink()) {
        throw new InvalidArgumentError(`Cannot open log at ${path}: it is a symbolic link`);
      }
    } catch (error) {
      if ((error as { code?: string }).code !== "ENOENT") throw error;
    }
  }

  async #writeName(path: string, encoded: Uint8Array): Promise<void> {
    const device = this.#device;
    const temp = join(path, `${NAME_FILE}.tmp`);
    device.remove(temp);
    const file = device.open(temp, { create: true, exclusive: true });
    try {
      file.write(encoded, 0);
      if (this.#syncs) await file.sync("full");
    } finally {
      file.close();
    }
    device.rename(temp, join(path, NAME_FILE));
    if (this.#syncs) await device.syncDirectory(path);
  }

  /** Closes idle logs, least recently released first, while over a limit. */
  async #evict(): Promise<void> {
    let openCount = 0;
    let mappedTotal = 0;
    for (const e of this.#entries.values()) {
      if (!e.log || e.closing) continue;
      openCount++;
      mappedTotal += e.log.mappedBytes;
    }
    if (openCount <= this.#logCountMax && mappedTotal <= this.#mappedBytesMax) return;
    const open = [...this.#entries.values()].filter((e) => e.log && !e.closing);
    let count = open.length;
    let mapped = open.reduce((sum, e) => sum + e.log!.mappedBytes, 0);
    if (count <= this.#logCountMax && mapped <= this.#mappedBytesMax) return;
    const idle = open.filter((e) => e.leases === 0).sort((a, b) => a.lastReleased - b.lastReleased);
    const closing: Promise<void>[] = [];
    for (const entry of idle) {
      if (count <= this.#logCountMax && mapped <= this.#mappedBytesMax) break;
      count--;
      mapped -= entry.log!.mappedBytes;
      this.#evictions++;
      this.#metrics.evictions.value++;
      closing.push(this.#close(entry));
    }
    await Promise.all(closing);
  }

  #close(entry: Entry): Promise<void> {
    const log = entry.log!;
    entry.closing = log.close().finally(() => {
      entry.log = undefined;
      entry.closing = undefined;
      if (entry.leases === 0) this.#forget(entry);
    });
    return entry.closing;
  }

  #forget(entry: Entry): void {
    this.#entries.delete(entry.key);
    if (typeof entry.name === "string") this.#byString.delete(entry.name);
  }

  #liveLeases(): number {
    let leases = 0;
    for (const entry of this.#entries.values()) leases += entry.leases;
    return leases;
  }

  /**
   * Every log name in `dir` (open or not), read back from each log's registry file; byte names
   * come back as `Uint8Array`.
   *
   * @example
   * ```ts
   * import { LogManager } from "@hybridlog/hybridlog";
   *
   * await using manager = new LogManager({ dir: "./data/tables" });
   * for (const name of ["table:users", "../../etc", "🙂"]) {
   *   await using _lease = await manager.acquire(name); // created on first use
   * }
   * console.log(manager.names().sort()); // [ "../../etc", "table:users", "🙂" ]
   * ```
   */
  names(): LogName[] {
    const device = this.#device;
    if (!device.exists(this.dir)) return [];
    const names: LogName[] = [];
    for (const child of device.list(this.dir)) {
      if (!DIRECTORY_PATTERN.test(child)) continue;
      const namePath = join(this.dir, child, NAME_FILE);
      if (!device.exists(namePath)) continue; // created, crashed before its name was durable
      const file = device.open(namePath, { readOnly: true });
      try {
        const bytes = new Uint8Array(Math.min(file.sizeBytes(), LOG_NAME_BYTES_MAX + 1));
        file.read(bytes, 0);
        const name = decodeName(bytes);
        if (name !== undefined && directoryOf(bytes) === child) names.push(name);
      } finally {
        file.close();
      }
    }
    return names;
  }

  /** Open logs, live leases, evictions so far, bytes mapped by open logs. */
  stats(): LogManagerStats {
    let openLogs = 0;
    let mappedBytes = 0;
    for (const entry of this.#entries.values()) {
      if (!entry.log) continue;
      openLogs++;
      mappedBytes += entry.log.mappedBytes;
    }
    return { openLogs, liveLeases: this.#liveLeases(), evictions: this.#evictions, mappedBytes };
  }

  /**
   * Refuses new leases, waits up to `timeoutMs` for live leases to be released, and closes every
   * log. If leases remain, closes the idle logs and throws {@linkcode LeaseLeakError} naming the
   * leased ones (a leak report, never a silent hang).
   */
  async closeAll(options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    this.#closed = true;
    if (this.#liveLeases() > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((done) => {
        this.#drained.push(done);
        timer = setTimeout(done, timeoutMs);
      });
      clearTimeout(timer);
    }
    const entries = [...this.#entries.values()];
    await Promise.all(entries.filter((e) => e.log && e.leases === 0).map((e) => this.#close(e)));
    this.#metrics.release();
    const leaked = entries.filter((e) => e.leases > 0);
    if (leaked.length) throw new LeaseLeakError(leaked.map((e) => e.name), timeoutMs);
  }

  /** Same as `closeAll()` with the default timeout. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.closeAll();
  }
}
