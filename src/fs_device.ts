/**
 * The real device: files through `node:fs` (identical in Bun and Deno), mappings, preallocation
 * and locks through the native layer. Syncs run off the JS thread through the callback forms of
 * `fs.fdatasync`/`fs.fsync`, which both runtimes run on a worker thread (DESIGN.md).
 *
 * @module
 */
import * as fs from "node:fs";
import { dirname, join } from "node:path";
import { native } from "../ffi/mod.ts";
import type { Mapping } from "../ffi/types.ts";
import { DIRECTORY_MODE, FILE_MODE } from "./constants.ts";
import type {
  Device,
  DeviceFile,
  DirectoryLock,
  FileView,
  OpenOptions,
  SyncMode,
} from "./device.ts";
import { IoError, LockedError } from "./errors.ts";

/** Turns a `node:fs` error into an `IoError`; anything else is rethrown as it is. */
export function toIoError(error: unknown, syscall: string, path: string): never {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) {
    throw new IoError(syscall, code, path, { cause: error });
  }
  throw error;
}

function attempt<T>(syscall: string, path: string, work: () => T): T {
  try {
    return work();
  } catch (error) {
    return toIoError(error, syscall, path);
  }
}

class FsFile implements DeviceFile {
  readonly path: string;
  #fd: number;
  /** Syncs started and not yet called back. */
  #syncsInFlight = 0;
  /**
   * A second descriptor of the file (read-only, opened at the first sync started while another
   * is in flight) for such syncs. Deno runs `node:fs` calls on one descriptor one after another,
   * so the group commit's two cycles in flight did not overlap their syncs there: two loops of
   * write + fdatasync reached 8–11k syncs/s through one descriptor against 9–15k through two
   * (Bun: 15k either way). A sync makes the file's data durable whichever descriptor names it.
   */
  #syncFd = -1;

  constructor(path: string, fd: number) {
    this.path = path;
    this.#fd = fd;
  }

  get #openFd(): number {
    if (this.#fd < 0) throw new IoError("use", "EBADF", this.path);
    return this.#fd;
  }

  sizeBytes(): number {
    // Natively, not by `fs.fstatSync`: that builds a whole `Stats` object, ~20 µs in Deno, and
    // every open asks the size of each segment and of the index checkpoint. It moves the file
    // offset, which nothing here uses: every read and write names its position.
    const fd = this.#openFd;
    try {
      return native.fileSizeBytes(fd);
    } catch (error) {
      if (error instanceof IoError) throw new IoError(error.syscall, error.errno, this.path);
      throw error;
    }
  }

  write(bytes: Uint8Array, positionBytes: number): void {
    const fd = this.#openFd;
    let done = 0;
    while (done < bytes.length) {
      const written = attempt(
        "write",
        this.path,
        () => fs.writeSync(fd, bytes, done, bytes.length - done, positionBytes + done),
      );
      if (written <= 0) throw new IoError("write", "EIO", this.path);
      done += written;
    }
  }

  writeAsync(bytes: Uint8Array, positionBytes: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const fd = this.#openFd; // a closed file rejects, as a failed write does
      const next = (done: number) => {
        if (done === bytes.length) return resolve();
        fs.write(fd, bytes, done, bytes.length - done, positionBytes + done, (error, written) => {
          if (error) {
            try {
              toIoError(error, "write", this.path);
            } catch (converted) {
              return reject(converted);
            }
          }
          if (written <= 0) return reject(new IoError("write", "EIO", this.path));
          next(done + written);
        });
      };
      next(0);
    });
  }

  read(into: Uint8Array, positionBytes: number): number {
    const fd = this.#openFd;
    let done = 0;
    while (done < into.length) {
      const count = attempt(
        "read",
        this.path,
        () => fs.readSync(fd, into, done, into.length - done, positionBytes + done),
      );
      if (count === 0) break;
      done += count;
    }
    return done;
  }

  allocate(offsetBytes: number, lengthBytes: number): void {
    native.allocate(this.#openFd, offsetBytes, lengthBytes);
  }

  truncate(lengthBytes: number): void {
    attempt("ftruncate", this.path, () => fs.ftruncateSync(this.#openFd, lengthBytes));
  }

  sync(mode: SyncMode): Promise<void> {
    const fd = this.#syncsInFlight > 0 ? this.#secondFd() : this.#openFd;
    const syscall = mode === "full" ? "fsync" : "fdatasync";
    this.#syncsInFlight++;
    return new Promise((resolve, reject) => {
      const done = (error: Error | null) => {
        this.#syncsInFlight--;
        if (!error) return resolve();
        try {
          toIoError(error, syscall, this.path);
        } catch (converted) {
          reject(converted);
        }
      };
      if (mode === "full") fs.fsync(fd, done);
      else fs.fdatasync(fd, done);
    });
  }

  /** The descriptor for a sync started while another is in flight (the main one if it cannot open). */
  #secondFd(): number {
    const fd = this.#openFd;
    if (this.#syncFd < 0) {
      try {
        this.#syncFd = fs.openSync(this.path, fs.constants.O_RDONLY);
      } catch {
        return fd; // out of descriptors, say: the syncs still run, one after another
      }
    }
    return this.#syncFd;
  }

  syncNow(mode: SyncMode): void {
    const fd = this.#openFd;
    if (mode === "full") attempt("fsync", this.path, () => fs.fsyncSync(fd));
    else attempt("fdatasync", this.path, () => fs.fdatasyncSync(fd));
  }

  view(lengthBytes: number): FileView {
    const mapping: Mapping = native.map(this.#openFd, lengthBytes, { access: "copy-on-write" });
    return {
      bytes: new Uint8Array(mapping.buffer),
      words: new Uint32Array(mapping.buffer),
      checksum: native.rangeChecksum(mapping.buffer),
      release: () => mapping.unmap(),
    };
  }

  /** Closes the file; the caller waits for its syncs first (a queued sync names the descriptor). */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    const syncFd = this.#syncFd;
    this.#fd = this.#syncFd = -1;
    try {
      if (syncFd >= 0) attempt("close", this.path, () => fs.closeSync(syncFd));
    } finally {
      attempt("close", this.path, () => fs.closeSync(fd));
    }
  }
}

function openFlags(options: OpenOptions): number {
  const c = fs.constants;
  let flags = options.readOnly ? c.O_RDONLY : c.O_RDWR;
  if (options.create) flags |= c.O_CREAT;
  if (options.exclusive) flags |= c.O_EXCL;
  return flags;
}

/** The real file system. */
export const fsDevice: Device = {
  name: "fs",

  makeDirectory(path: string): string[] {
    const created: string[] = [];
    for (let dir = path; !fs.existsSync(dir); dir = dirname(dir)) created.unshift(dir);
    for (const dir of created) {
      attempt("mkdir", dir, () => fs.mkdirSync(dir, { mode: DIRECTORY_MODE }));
      // The umask may have removed bits; a log directory is private to its owner, never wider.
      attempt("chmod", dir, () => fs.chmodSync(dir, DIRECTORY_MODE));
    }
    return created;
  },

  list(path: string): string[] {
    return attempt("readdir", path, () => fs.readdirSync(path)).sort();
  },

  exists(path: string): boolean {
    return fs.existsSync(path);
  },

  open(path: string, options: OpenOptions = {}): DeviceFile {
    const fd = attempt("open", path, () => fs.openSync(path, openFlags(options), FILE_MODE));
    if (options.create && !options.readOnly) {
      attempt("fchmod", path, () => fs.fchmodSync(fd, FILE_MODE));
    }
    return new FsFile(path, fd);
  },

  rename(from: string, to: string): void {
    attempt("rename", from, () => fs.renameSync(from, to));
  },

  remove(path: string): void {
    attempt("unlink", path, () => fs.rmSync(path, { force: true }));
  },

  syncDirectory(path: string): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.open(path, "r", (openError, fd) => {
        if (openError) return reject(new IoError("open", openError.code ?? "EIO", path));
        fs.fsync(fd, (syncError) => {
          fs.close(fd, () => {
            if (syncError) reject(new IoError("fsync", syncError.code ?? "EIO", path));
            else resolve();
          });
        });
      });
    });
  },

  syncDirectoryNow(path: string): void {
    const fd = attempt("open", path, () => fs.openSync(path, "r"));
    try {
      attempt("fsync", path, () => fs.fsyncSync(fd));
    } finally {
      fs.closeSync(fd);
    }
  },

  lock(path: string): DirectoryLock {
    const lockPath = join(path, "LOCK");
    const fd = attempt(
      "open",
      lockPath,
      () => fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, FILE_MODE),
    );
    let held = false;
    try {
      held = native.tryLock(fd);
    } finally {
      if (!held) fs.closeSync(fd);
    }
    if (!held) throw new LockedError(path);
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        native.unlock(fd);
        fs.closeSync(fd);
      },
    };
  },
};
