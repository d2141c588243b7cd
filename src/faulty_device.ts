/**
 * A fault-injecting device (FASTER's `SimulatedFlakyDevice`, TigerBeetle's fault-injecting
 * storage). It wraps another {@linkcode Device}, usually a `MemoryDevice`, numbers every call on
 * the write path in one sequence, and can be armed to fail the n-th of them with an errno, to
 * store only part of a write, or to acknowledge syncs without making anything durable.
 *
 * Counted, in one sequence: `open` with `create` (`"create"`), and a file's `write` (and
 * `writeAsync`, counted as `"write"`), `allocate`, `truncate`, `sync`, `syncNow`; the device's
 * `rename`, `remove`, `syncDirectory` and `syncDirectoryNow`. Reads, `makeDirectory`, `list`, `exists`, `lock`, `view` and `close` pass
 * through uncounted.
 *
 * @module
 */
import type {
  Device,
  DeviceFile,
  DirectoryLock,
  FileView,
  OpenOptions,
  SyncMode,
} from "./device.ts";
import { nextTurn } from "./validate.ts";
import { InvalidArgumentError, IoError } from "./errors.ts";

/** The kinds of counted calls. */
export type DeviceCallKind =
  | "create"
  | "write"
  | "allocate"
  | "truncate"
  | "sync"
  | "syncNow"
  | "rename"
  | "remove"
  | "syncDirectory"
  | "syncDirectoryNow";

/** Every {@linkcode DeviceCallKind}, in a fixed order. */
export const DEVICE_CALL_KINDS: readonly DeviceCallKind[] = [
  "create",
  "write",
  "allocate",
  "truncate",
  "sync",
  "syncNow",
  "rename",
  "remove",
  "syncDirectory",
  "syncDirectoryNow",
];

/** The errnos a fault can carry: an I/O error, a full disk, an exhausted quota, a signal. */
export type FaultErrno = "EIO" | "ENOSPC" | "EDQUOT" | "EINTR";

/** One counted call. */
export interface DeviceCall {
  /** 1-based position in the device's sequence of counted calls. */
  readonly index: number;
  readonly kind: DeviceCallKind;
  /** The file or directory (for a rename, the source). */
  readonly path: string;
  /** The fault injected into this call, if any. */
  readonly fault: FaultErrno | "short-write" | undefined;
}

/** Options of {@linkcode FaultyDevice.failAt}. */
export interface FailOptions {
  /** The errno of the injected `IoError` (default `"EIO"`). */
  errno?: FaultErrno;
  /** Fail every later matching call too, as a disk that stays full or broken (default false). */
  persistent?: boolean;
  /** Only calls of these kinds match and are counted for `n` (default: every kind). */
  kinds?: readonly DeviceCallKind[];
}

interface Rule {
  remaining: number;
  kinds: ReadonlySet<DeviceCallKind> | undefined;
  errno: FaultErrno;
  persistent: boolean;
  shortWrite: boolean;
  fired: boolean;
}

type Recorder = (kind: DeviceCallKind, path: string) => Rule | undefined;

const ERRNOS: readonly string[] = ["EIO", "ENOSPC", "EDQUOT", "EINTR"];

function syscallOf(kind: DeviceCallKind, mode?: SyncMode): string {
  switch (kind) {
    case "create":
      return "open";
    case "write":
      return "write";
    case "allocate":
      return "fallocate";
    case "truncate":
      return "ftruncate";
    case "sync":
    case "syncNow":
      return mode === "full" ? "fsync" : "fdatasync";
    case "rename":
      return "rename";
    case "remove":
      return "unlink";
    case "syncDirectory":
    case "syncDirectoryNow":
      return "fsync";
  }
}

class FaultyFile implements DeviceFile {
  readonly path: string;
  #inner: DeviceFile;
  #record: Recorder;
  #device: FaultyDevice;

  constructor(inner: DeviceFile, record: Recorder, device: FaultyDevice) {
    this.path = inner.path;
    this.#inner = inner;
    this.#record = record;
    this.#device = device;
  }

  #fail(kind: DeviceCallKind, mode?: SyncMode): void {
    const rule = this.#record(kind, this.path);
    if (rule) throw new IoError(syscallOf(kind, mode), rule.errno, this.path);
  }

  sizeBytes(): number {
    return this.#inner.sizeBytes();
  }

  write(bytes: Uint8Array, positionBytes: number): void {
    const rule = this.#record("write", this.path);
    if (rule?.shortWrite) {
      this.#inner.write(bytes.subarray(0, bytes.length >>> 1), positionBytes);
      throw new IoError("write", rule.errno, this.path);
    }
    if (rule) throw new IoError("write", rule.errno, this.path);
    this.#inner.write(bytes, positionBytes);
  }

  async writeAsync(bytes: Uint8Array, positionBytes: number): Promise<void> {
    const rule = this.#record("write", this.path);
    if (rule) {
      await nextTurn(); // the failure arrives from the worker thread, later
      if (rule.shortWrite) this.#inner.write(bytes.subarray(0, bytes.length >>> 1), positionBytes);
      throw new IoError("write", rule.errno, this.path);
    }
    return this.#inner.writeAsync(bytes, positionBytes);
  }

  read(into: Uint8Array, positionBytes: number): number {
    return this.#inner.read(into, positionBytes);
  }

  allocate(offsetBytes: number, lengthBytes: number): void {
    this.#fail("allocate");
    this.#inner.allocate(offsetBytes, lengthBytes);
  }

  truncate(lengthBytes: number): void {
    this.#fail("truncate");
    this.#inner.truncate(lengthBytes);
  }

  async sync(mode: SyncMode): Promise<void> {
    const rule = this.#record("sync", this.path);
    if (rule || this.#device.liesAboutSync) {
      // A real failure (or a lying disk's success) arrives from the sync thread, later.
      await nextTurn();
      if (rule) throw new IoError(syscallOf("sync", mode), rule.errno, this.path);
      return;
    }
    return this.#inner.sync(mode);
  }

  syncNow(mode: SyncMode): void {
    this.#fail("syncNow", mode);
    if (!this.#device.liesAboutSync) this.#inner.syncNow(mode);
  }

  view(lengthBytes: number): FileView {
    return this.#inner.view(lengthBytes);
  }

  close(): void {
    this.#inner.close();
  }
}

/**
 * A {@linkcode Device} that wraps another and injects faults into its write path.
 *
 * @example
 * ```ts
 * import { FaultyDevice } from "./faulty_device.ts";
 * import { MemoryDevice } from "./memory_device.ts";
 *
 * const device = new FaultyDevice(new MemoryDevice());
 * device.failAt(1, { errno: "ENOSPC", kinds: ["sync", "syncNow"] });
 * device.makeDirectory("/db");
 * const file = device.open("/db/a", { create: true });
 * file.write(new Uint8Array(8), 0);
 * try {
 *   file.syncNow("data");
 * } catch (error) {
 *   console.log((error as Error).message); // Cannot fdatasync /db/a: ENOSPC
 * }
 * ```
 */
export class FaultyDevice implements Device {
  /** Always `"faulty"`. */
  readonly name = "faulty";
  /** The wrapped device. */
  readonly inner: Device;
  /**
   * When true, every sync (`sync`, `syncNow`, `syncDirectory`, `syncDirectoryNow`) succeeds
   * without reaching the wrapped device: a disk that acknowledges what it never made durable.
   * For negative controls: a durability check must catch it.
   */
  liesAboutSync = false;
  #calls: DeviceCall[] = [];
  #rules: Rule[] = [];

  /** @param inner The device that performs every call that is not failed. */
  constructor(inner: Device) {
    this.inner = inner;
  }

  /** Number of counted calls so far (failed ones included). */
  get calls(): number {
    return this.#calls.length;
  }

  /** Every counted call, in order. */
  get callLog(): readonly DeviceCall[] {
    return this.#calls;
  }

  /** The counted calls that had a fault injected, in order. */
  get faults(): readonly DeviceCall[] {
    return this.#calls.filter((call) => call.fault !== undefined);
  }

  /**
   * Arms a fault: the `n`-th matching call from now (1-based) throws (or, for an async sync,
   * rejects with) `IoError(<syscall>, errno, path)` without being performed.
   *
   * @param n Which matching call fails, counting from this call.
   * @param options Errno, persistence, and which call kinds match.
   * @throws {InvalidArgumentError} `n` is not a positive integer, or an option is unknown.
   */
  failAt(n: number, options: FailOptions = {}): void {
    const errno = options.errno ?? "EIO";
    if (!ERRNOS.includes(errno)) {
      throw new InvalidArgumentError(`Cannot arm fault: unknown errno ${errno}`);
    }
    for (const kind of options.kinds ?? []) {
      if (!DEVICE_CALL_KINDS.includes(kind)) {
        throw new InvalidArgumentError(`Cannot arm fault: unknown call kind ${kind}`);
      }
    }
    this.#arm(n, {
      kinds: options.kinds ? new Set(options.kinds) : undefined,
      errno,
      persistent: options.persistent === true,
      shortWrite: false,
    });
  }

  /**
   * Arms a short write: the `n`-th `write` from now (1-based) stores only the first half of its
   * bytes, then throws `IoError("write", "EIO", path)`.
   *
   * @param n Which write is cut short, counting from this call.
   * @throws {InvalidArgumentError} `n` is not a positive integer.
   */
  shortWriteAt(n: number): void {
    this.#arm(n, {
      kinds: new Set<DeviceCallKind>(["write"]),
      errno: "EIO",
      persistent: false,
      shortWrite: true,
    });
  }

  /** Removes every armed fault (calls keep being counted). */
  disarm(): void {
    this.#rules = [];
  }

  #arm(n: number, rule: Omit<Rule, "remaining" | "fired">): void {
    if (!Number.isSafeInteger(n) || n < 1) {
      throw new InvalidArgumentError(`Cannot arm fault: n must be a positive integer, got ${n}`);
    }
    this.#rules.push({ ...rule, remaining: n, fired: false });
  }

  /** Counts a call and returns the rule that fails it, if any. */
  #record = (kind: DeviceCallKind, path: string): Rule | undefined => {
    let failing: Rule | undefined;
    for (const rule of this.#rules) {
      if (rule.kinds !== undefined && !rule.kinds.has(kind)) continue;
      if (rule.fired) {
        if (rule.persistent) failing ??= rule;
        continue;
      }
      if (--rule.remaining === 0) {
        rule.fired = true;
        failing ??= rule;
      }
    }
    const fault = failing === undefined
      ? undefined
      : failing.shortWrite
      ? "short-write"
      : failing.errno;
    this.#calls.push({ index: this.#calls.length + 1, kind, path, fault });
    return failing;
  };

  #fail(kind: DeviceCallKind, path: string): void {
    const rule = this.#record(kind, path);
    if (rule) throw new IoError(syscallOf(kind), rule.errno, path);
  }

  /** Passes through, uncounted. */
  makeDirectory(path: string): string[] {
    return this.inner.makeDirectory(path);
  }

  /** Passes through, uncounted. */
  list(path: string): string[] {
    return this.inner.list(path);
  }

  /** Passes through, uncounted. */
  exists(path: string): boolean {
    return this.inner.exists(path);
  }

  /** Counted (as `"create"`) only with `options.create`; files it returns are wrapped. */
  open(path: string, options: OpenOptions = {}): DeviceFile {
    if (options.create) this.#fail("create", path);
    return new FaultyFile(this.inner.open(path, options), this.#record, this);
  }

  /** Counted. */
  rename(from: string, to: string): void {
    this.#fail("rename", from);
    this.inner.rename(from, to);
  }

  /** Counted. */
  remove(path: string): void {
    this.#fail("remove", path);
    this.inner.remove(path);
  }

  /** Counted; a failure rejects on a later macrotask. */
  async syncDirectory(path: string): Promise<void> {
    const rule = this.#record("syncDirectory", path);
    if (rule || this.liesAboutSync) {
      await nextTurn();
      if (rule) throw new IoError("fsync", rule.errno, path);
      return;
    }
    return this.inner.syncDirectory(path);
  }

  /** Counted. */
  syncDirectoryNow(path: string): void {
    this.#fail("syncDirectoryNow", path);
    if (!this.liesAboutSync) this.inner.syncDirectoryNow(path);
  }

  /** Passes through, uncounted. */
  lock(path: string): DirectoryLock {
    return this.inner.lock(path);
  }
}
