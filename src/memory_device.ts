/**
 * An in-memory device that models what reached stable storage, so tests can cut the power at any
 * moment and see exactly what a disk would keep.
 *
 * The model, per file: the current bytes and size (what every reader sees, like the page cache),
 * the durable bytes and size (what survives a power loss), and the 4 KiB pages written since the
 * file's last sync. `sync`/`syncNow` of either mode make the file's pages and its size durable.
 * Per directory: the current entries and the durable entries; a create, rename or remove is
 * volatile until `syncDirectory`/`syncDirectoryNow` of that directory (a directory made by
 * `makeDirectory` is durable once its parent is synced). An async `sync` captures what it will
 * make durable when called and applies it when it resolves (on a later macrotask), so a power
 * loss taken while it is in flight keeps none of it.
 *
 * {@linkcode MemoryDevice.powerLoss} returns a new device holding only what reached the disk;
 * {@linkcode MemoryDevice.crash} returns a new device as a restarted process finds it (the page
 * cache survives, locks do not). Neither touches the original, whose open logs may keep running.
 *
 * @module
 */
import { basename, dirname, join, resolve } from "node:path";
import { SEGMENT_SIZE_BYTES_MAX } from "./constants.ts";
import type {
  Device,
  DeviceFile,
  DirectoryLock,
  FileView,
  OpenOptions,
  SyncMode,
} from "./device.ts";
import { nextTurn } from "./validate.ts";
import { InvalidArgumentError, IoError, LockedError } from "./errors.ts";
import {
  copyTree,
  Directory,
  Inode,
  type Node,
  type PowerLossMode,
  seededRandom,
  survivingTree,
} from "./_memory_volume.ts";

export { MEMORY_PAGE_BYTES, MEMORY_SECTOR_BYTES, type PowerLossMode } from "./_memory_volume.ts";

/** Default largest file: the largest segment, so any log this project creates fits. */
export const MEMORY_FILE_SIZE_BYTES_MAX_DEFAULT = SEGMENT_SIZE_BYTES_MAX;

/** Options of {@linkcode MemoryDevice.powerLoss}. */
export interface PowerLossOptions {
  /** What survives; see {@linkcode PowerLossMode}. */
  mode: PowerLossMode;
  /** Seed of the choices of `"random-pages"` and `"torn-sector"` (default 0). */
  seed?: number;
  /** A source of numbers in `[0, 1)` used instead of `seed`. */
  random?: () => number;
  /**
   * For `"random-pages"`: decides which unsynced pages persist instead of the random source
   * (`pageIndex` counts 4 KiB pages from the start of the file at the absolute `path`).
   */
  persistPage?: (path: string, pageIndex: number) => boolean;
}

/** Options of the {@linkcode MemoryDevice} constructor. */
export interface MemoryDeviceOptions {
  /**
   * Largest file in bytes (default 1 GiB); larger writes fail with `EFBIG`. Each file reserves
   * this much address space once, so its buffer can grow in place under live views.
   */
  fileSizeBytesMax?: number;
}

/** Counters of what a power loss now would lose. */
export interface MemoryDeviceStats {
  /** Files reachable from the root through current entries. */
  readonly files: number;
  /** Pages written (or zeroed by a truncate) and not yet synced, over every reachable file. */
  readonly unsyncedPages: number;
  /** Directories whose current entries differ from their durable ones. */
  readonly unsyncedDirectories: number;
  /** Async syncs called and not yet resolved. */
  readonly pendingSyncs: number;
}

/** The state behind one device instance, shared with its open files. */
interface Volume {
  root: Directory;
  /** Last change number handed out (pages remember theirs). */
  sequence: number;
  pendingSyncs: number;
  fileSizeBytesMax: number;
}

function checkRange(syscall: string, path: string, ...values: number[]): void {
  for (const value of values) {
    if (!Number.isSafeInteger(value) || value < 0) throw new IoError(syscall, "EINVAL", path);
  }
}

class MemoryFile implements DeviceFile {
  readonly path: string;
  #inode: Inode | undefined;
  #volume: Volume;
  #readOnly: boolean;

  constructor(path: string, inode: Inode, volume: Volume, readOnly: boolean) {
    this.path = path;
    this.#inode = inode;
    this.#volume = volume;
    this.#readOnly = readOnly;
  }

  get #open(): Inode {
    if (this.#inode === undefined) throw new IoError("use", "EBADF", this.path);
    return this.#inode;
  }

  #writable(syscall: string): Inode {
    const inode = this.#open;
    if (this.#readOnly) throw new IoError(syscall, "EBADF", this.path);
    return inode;
  }

  sizeBytes(): number {
    return this.#open.sizeBytes;
  }

  write(bytes: Uint8Array, positionBytes: number): void {
    const inode = this.#writable("write");
    checkRange("write", this.path, positionBytes);
    const end = positionBytes + bytes.length;
    inode.reserve(end, "write", this.path);
    inode.bytes.set(bytes, positionBytes);
    inode.sizeBytes = Math.max(inode.sizeBytes, end);
    inode.markDirty(positionBytes, end, ++this.#volume.sequence, true);
  }

  async writeAsync(bytes: Uint8Array, positionBytes: number): Promise<void> {
    this.#writable("write");
    await nextTurn();
    this.write(bytes, positionBytes);
  }

  read(into: Uint8Array, positionBytes: number): number {
    const inode = this.#open;
    checkRange("read", this.path, positionBytes);
    const count = Math.max(0, Math.min(into.length, inode.sizeBytes - positionBytes));
    into.set(inode.bytes.subarray(positionBytes, positionBytes + count));
    return count;
  }

  allocate(offsetBytes: number, lengthBytes: number): void {
    const inode = this.#writable("fallocate");
    checkRange("fallocate", this.path, offsetBytes, lengthBytes);
    const end = offsetBytes + lengthBytes;
    inode.reserve(end, "fallocate", this.path);
    // Allocated bytes past the old end read as zero; the buffer is zero there already.
    inode.sizeBytes = Math.max(inode.sizeBytes, end);
  }

  truncate(lengthBytes: number): void {
    const inode = this.#writable("ftruncate");
    checkRange("ftruncate", this.path, lengthBytes);
    if (lengthBytes < inode.sizeBytes) {
      // Zeroed in place, so live views see the cut; the cut pages are unsynced changes.
      inode.bytes.fill(0, lengthBytes, inode.sizeBytes);
      inode.markDirty(lengthBytes, inode.sizeBytes, ++this.#volume.sequence, false);
    } else {
      inode.reserve(lengthBytes, "ftruncate", this.path);
    }
    inode.sizeBytes = lengthBytes;
  }

  async sync(_mode: SyncMode): Promise<void> {
    const inode = this.#open;
    const snapshot = inode.snapshot();
    this.#volume.pendingSyncs++;
    try {
      await nextTurn();
    } finally {
      this.#volume.pendingSyncs--;
    }
    inode.apply(snapshot);
  }

  syncNow(_mode: SyncMode): void {
    const inode = this.#open;
    inode.apply(inode.snapshot());
  }

  view(lengthBytes: number): FileView {
    const inode = this.#open;
    checkRange("mmap", this.path, lengthBytes);
    // A real mapping past the end of the file faults (SIGBUS) when touched; refuse it up front.
    if (lengthBytes > inode.sizeBytes) throw new IoError("mmap", "EINVAL", this.path);
    return {
      bytes: new Uint8Array(inode.buffer, 0, lengthBytes),
      words: new Uint32Array(inode.buffer, 0, lengthBytes >>> 2),
      // The buffer is never unmapped, so a view kept after release stays safe to touch.
      release() {},
    };
  }

  close(): void {
    this.#inode = undefined;
  }
}

/**
 * A {@linkcode Device} in memory that knows what reached stable storage: use it to test that a
 * log keeps every acknowledged write through process crashes and power losses.
 *
 * Paths are resolved against `/`; the device starts with an empty, durable root directory.
 * File views are live (writes show through existing views, like `MAP_SHARED`), and truncation
 * zeroes the cut bytes in place.
 *
 * @example
 * ```ts
 * import { MemoryDevice } from "./memory_device.ts";
 *
 * const device = new MemoryDevice();
 * device.makeDirectory("/db");
 * const file = device.open("/db/a", { create: true });
 * file.write(new Uint8Array([1, 2, 3]), 0);
 * const afterLoss = device.powerLoss({ mode: "drop" });
 * console.log(afterLoss.exists("/db")); // false: the root directory was never synced
 * ```
 */
export class MemoryDevice implements Device {
  /** Always `"memory"`. */
  readonly name = "memory";
  #volume: Volume;
  #locks = new Map<string, object>();

  /**
   * Creates an empty device.
   *
   * @param options Limits of the device.
   * @throws {InvalidArgumentError} `fileSizeBytesMax` is not a positive safe integer.
   */
  constructor(options: MemoryDeviceOptions = {}) {
    const fileSizeBytesMax = options.fileSizeBytesMax ?? MEMORY_FILE_SIZE_BYTES_MAX_DEFAULT;
    if (!Number.isSafeInteger(fileSizeBytesMax) || fileSizeBytesMax <= 0) {
      throw new InvalidArgumentError(
        `Cannot create memory device: fileSizeBytesMax must be a positive integer, got ${fileSizeBytesMax}`,
      );
    }
    this.#volume = { root: new Directory(), sequence: 0, pendingSyncs: 0, fileSizeBytesMax };
  }

  static #withRoot(root: Directory, from: Volume): MemoryDevice {
    const device = new MemoryDevice({ fileSizeBytesMax: from.fileSizeBytesMax });
    device.#volume.root = root;
    device.#volume.sequence = from.sequence;
    return device;
  }

  #lookup(path: string): Node | undefined {
    let node: Node | undefined = this.#volume.root;
    for (const name of resolve("/", path).split("/")) {
      if (name === "") continue;
      if (!(node instanceof Directory)) return undefined;
      node = node.entries.get(name);
    }
    return node;
  }

  /** The directory that holds `path`'s entry, and the entry's name. */
  #parent(path: string, syscall: string): { directory: Directory; name: string } {
    const full = resolve("/", path);
    if (full === "/") throw new IoError(syscall, "EISDIR", path);
    const directory = this.#lookup(dirname(full));
    if (directory === undefined) throw new IoError(syscall, "ENOENT", path);
    if (!(directory instanceof Directory)) throw new IoError(syscall, "ENOTDIR", path);
    return { directory, name: basename(full) };
  }

  #directory(path: string, syscall: string, errorPath = path): Directory {
    const node = this.#lookup(path);
    if (node === undefined) throw new IoError(syscall, "ENOENT", errorPath);
    if (!(node instanceof Directory)) throw new IoError(syscall, "ENOTDIR", errorPath);
    return node;
  }

  /**
   * Creates `path` and its missing parents; each is durable only once its parent is synced.
   *
   * @returns The directories created, outermost first.
   * @throws {IoError} `ENOTDIR` if a component is a file.
   */
  makeDirectory(path: string): string[] {
    const created: string[] = [];
    let directory = this.#volume.root;
    let current = "/";
    for (const name of resolve("/", path).split("/")) {
      if (name === "") continue;
      current = join(current, name);
      let next = directory.entries.get(name);
      if (next === undefined) {
        next = new Directory();
        directory.entries.set(name, next);
        created.push(current);
      }
      if (!(next instanceof Directory)) throw new IoError("mkdir", "ENOTDIR", current);
      directory = next;
    }
    return created;
  }

  /**
   * @returns The names in directory `path`, sorted.
   * @throws {IoError} `ENOENT` or `ENOTDIR`.
   */
  list(path: string): string[] {
    return [...this.#directory(path, "readdir").entries.keys()].sort();
  }

  /** @returns Whether a file or directory exists at `path`. */
  exists(path: string): boolean {
    return this.#lookup(path) !== undefined;
  }

  /**
   * Opens a file; a created file's entry is volatile until its directory is synced.
   *
   * @throws {IoError} `ENOENT` (missing without `create`), `EEXIST` (with `exclusive`), `EISDIR`.
   */
  open(path: string, options: OpenOptions = {}): DeviceFile {
    const { directory, name } = this.#parent(path, "open");
    let node = directory.entries.get(name);
    if (node !== undefined && options.create && options.exclusive) {
      throw new IoError("open", "EEXIST", path);
    }
    if (node === undefined) {
      if (!options.create) throw new IoError("open", "ENOENT", path);
      node = new Inode(this.#volume.fileSizeBytesMax);
      directory.entries.set(name, node);
    }
    if (node instanceof Directory) throw new IoError("open", "EISDIR", path);
    return new MemoryFile(path, node, this.#volume, options.readOnly === true);
  }

  /**
   * Renames `from` to `to`, replacing a file at `to`; volatile until both directories are synced.
   *
   * @throws {IoError} `ENOENT`, `EISDIR`, `ENOTDIR` or `EINVAL` (a directory into itself).
   */
  rename(from: string, to: string): void {
    const source = this.#parent(from, "rename");
    const node = source.directory.entries.get(source.name);
    if (node === undefined) throw new IoError("rename", "ENOENT", from);
    const target = this.#parent(to, "rename");
    const replaced = target.directory.entries.get(target.name);
    if (replaced === node) return;
    if (replaced instanceof Directory && node instanceof Inode) {
      throw new IoError("rename", "EISDIR", to);
    }
    if (replaced instanceof Inode && node instanceof Directory) {
      throw new IoError("rename", "ENOTDIR", to);
    }
    if (node instanceof Directory && resolve("/", to).startsWith(resolve("/", from) + "/")) {
      throw new IoError("rename", "EINVAL", from);
    }
    source.directory.entries.delete(source.name);
    target.directory.entries.set(target.name, node);
  }

  /**
   * Removes a file (a missing one is not an error); volatile until its directory is synced.
   *
   * @throws {IoError} `EISDIR` for a directory.
   */
  remove(path: string): void {
    const directory = this.#lookup(dirname(resolve("/", path)));
    if (!(directory instanceof Directory)) return;
    const name = basename(resolve("/", path));
    if (directory.entries.get(name) instanceof Directory) {
      throw new IoError("unlink", "EISDIR", path);
    }
    directory.entries.delete(name);
  }

  /**
   * Makes the entries of directory `path` durable as they are now, when the promise resolves.
   *
   * @throws {IoError} `ENOENT` or `ENOTDIR` (as a rejection).
   */
  async syncDirectory(path: string): Promise<void> {
    const directory = this.#directory(path, "open");
    const entries = new Map(directory.entries);
    this.#volume.pendingSyncs++;
    try {
      await nextTurn();
    } finally {
      this.#volume.pendingSyncs--;
    }
    directory.durableEntries = entries;
  }

  /**
   * Makes the entries of directory `path` durable now.
   *
   * @throws {IoError} `ENOENT` or `ENOTDIR`.
   */
  syncDirectoryNow(path: string): void {
    const directory = this.#directory(path, "open");
    directory.durableEntries = new Map(directory.entries);
  }

  /**
   * Takes the lock of directory `path` (creating its `LOCK` file, as the real device does).
   *
   * @throws {LockedError} The lock is held through this device.
   * @throws {IoError} `ENOENT` or `ENOTDIR`.
   */
  lock(path: string): DirectoryLock {
    const lockPath = join(path, "LOCK");
    const directory = this.#directory(path, "open", lockPath);
    const key = resolve("/", path);
    if (this.#locks.has(key)) throw new LockedError(path);
    if (!directory.entries.has("LOCK")) {
      directory.entries.set("LOCK", new Inode(this.#volume.fileSizeBytesMax));
    }
    const token = {};
    this.#locks.set(key, token);
    const locks = this.#locks;
    return {
      release() {
        if (locks.get(key) === token) locks.delete(key);
      },
    };
  }

  /** @returns What a power loss now would lose, and how many syncs are in flight. */
  stats(): MemoryDeviceStats {
    let files = 0;
    let unsyncedPages = 0;
    let unsyncedDirectories = 0;
    const seen = new Set<Node>();
    const visit = (directory: Directory) => {
      if (!directory.synced) unsyncedDirectories++;
      for (const node of directory.entries.values()) {
        if (seen.has(node)) continue;
        seen.add(node);
        if (node instanceof Directory) {
          visit(node);
        } else {
          files++;
          unsyncedPages += node.dirty.size;
        }
      }
    };
    visit(this.#volume.root);
    return { files, unsyncedPages, unsyncedDirectories, pendingSyncs: this.#volume.pendingSyncs };
  }

  /**
   * A process crash without power loss: a new device with the same current and durable contents
   * (the page cache survives, and can still be lost by a later power loss) and no locks held.
   * In-flight syncs of this device do not complete on the new one.
   *
   * @returns The device a restarted process sees.
   */
  crash(): MemoryDevice {
    return MemoryDevice.#withRoot(copyTree(this.#volume.root), this.#volume);
  }

  /**
   * A power loss: a new device holding only what reached the disk, per `options.mode`. Every
   * file and directory of the new device is durable as it is.
   *
   * @param options The mode, and a seed or random source for its choices.
   * @returns The device the machine finds after the power comes back.
   * @throws {InvalidArgumentError} Unknown mode.
   */
  powerLoss(options: PowerLossOptions): MemoryDevice {
    const mode = options?.mode;
    if (mode !== "drop" && mode !== "random-pages" && mode !== "torn-sector") {
      throw new InvalidArgumentError(
        `Cannot simulate power loss: mode must be "drop", "random-pages" or "torn-sector", got ${mode}`,
      );
    }
    const random = options.random ?? seededRandom(options.seed ?? 0);
    const root = survivingTree(this.#volume.root, mode, random, options.persistPage);
    return MemoryDevice.#withRoot(root, this.#volume);
  }
}
