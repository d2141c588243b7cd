/**
 * What both backends share: the libc calls on file descriptors that involve no pointer — fsync,
 * fdatasync, posix_fallocate, flock, lseek — and the io_uring probe, in a base class. Each backend
 * extends it with what does touch pointers (mappings) and hands over its loaded symbols (called
 * with plain numbers and bigints, the same in Bun and Deno), its errno reader and its io_uring
 * opener.
 *
 * @module
 */
import { EINTR, EWOULDBLOCK, ioError } from "./errno.ts";
import {
  EINTR_RETRIES_MAX,
  int32Fd,
  int64,
  LOCK_EX,
  LOCK_NB,
  LOCK_UN,
  SEEK_END,
} from "./symbols.ts";
import type { MapOptions, Mapping, Native, RangeChecksum, Uring } from "./types.ts";

/** Entries of the throwaway ring that answers `uringUnavailableReason`. */
const URING_PROBE_ENTRIES = 1;

/** The loaded symbols these calls need: `int`-returning, no pointer arguments. */
export interface FileCallSymbols {
  fsync(fd: number): number;
  fdatasync(fd: number): number;
  posix_fallocate(fd: number, offset: bigint, length: bigint): number;
  flock(fd: number, operation: number): number;
  /** 64-bit result: a bigint (or a number, which `Number()` takes alike). */
  lseek(fd: number, offset: bigint, whence: number): bigint | number;
}

/** The pointer-free file calls of {@linkcode Native}. */
export type FileCalls = Pick<
  Native,
  "fsync" | "fdatasync" | "allocate" | "tryLock" | "unlock" | "fileSizeBytes"
>;

/** Builds the file calls over `libc`, reading errno with `errno()` right after a failure. */
export function fileCalls(libc: FileCallSymbols, errno: () => number): FileCalls {
  return {
    fsync(fd: number): void {
      if (libc.fsync(int32Fd(fd)) === -1) throw ioError("fsync", errno());
    },
    fdatasync(fd: number): void {
      if (libc.fdatasync(int32Fd(fd)) === -1) throw ioError("fdatasync", errno());
    },
    allocate(fd: number, offsetBytes: number, lengthBytes: number): void {
      const offset = int64(offsetBytes, "offset");
      const length = int64(lengthBytes, "length");
      for (let attempt = 0;; attempt++) {
        // posix_fallocate returns the error number itself and leaves errno alone.
        const error = libc.posix_fallocate(int32Fd(fd), offset, length);
        if (error === 0) return;
        if (error !== EINTR || attempt === EINTR_RETRIES_MAX) {
          throw ioError("posix_fallocate", error);
        }
      }
    },
    tryLock(fd: number): boolean {
      for (let attempt = 0;; attempt++) {
        if (libc.flock(int32Fd(fd), LOCK_EX | LOCK_NB) === 0) return true;
        const error = errno();
        if (error === EWOULDBLOCK) return false;
        if (error !== EINTR || attempt === EINTR_RETRIES_MAX) throw ioError("flock", error);
      }
    },
    unlock(fd: number): void {
      if (libc.flock(int32Fd(fd), LOCK_UN) === -1) throw ioError("flock", errno());
    },
    fileSizeBytes(fd: number): number {
      const end = libc.lseek(int32Fd(fd), 0n, SEEK_END);
      if (Number(end) === -1) throw ioError("lseek", errno());
      return Number(end);
    },
  };
}

/** Opens an io_uring in one runtime, or says why it cannot. */
export type UringOpener = (entries: number) => { uring?: Uring; reason?: string };

/** The part of {@linkcode Native} that is the same in Bun and Deno. */
export abstract class PosixNative implements Native {
  abstract readonly runtime: "bun" | "deno";
  abstract readonly pageSizeBytes: number;
  abstract map(fd: number, lengthBytes: number, options: MapOptions): Mapping;
  abstract rangeChecksum(buffer: ArrayBuffer): RangeChecksum | undefined;
  abstract readonly rangeChecksumUnavailableReason: string | undefined;
  readonly #files: FileCalls;
  readonly #openUring: UringOpener;
  #uringReason: string | undefined;
  #uringProbed = false;

  /**
   * @param libc The loaded libc symbols (`FileCallSymbols` shape for these calls).
   * @param errno Reads errno right after a failed call.
   * @param openUring The runtime's io_uring opener.
   */
  constructor(libc: FileCallSymbols, errno: () => number, openUring: UringOpener) {
    this.#files = fileCalls(libc, errno);
    this.#openUring = openUring;
  }

  fsync(fd: number): void {
    this.#files.fsync(fd);
  }

  fdatasync(fd: number): void {
    this.#files.fdatasync(fd);
  }

  allocate(fd: number, offsetBytes: number, lengthBytes: number): void {
    this.#files.allocate(fd, offsetBytes, lengthBytes);
  }

  tryLock(fd: number): boolean {
    return this.#files.tryLock(fd);
  }

  unlock(fd: number): void {
    this.#files.unlock(fd);
  }

  fileSizeBytes(fd: number): number {
    return this.#files.fileSizeBytes(fd);
  }

  openUring(entries: number): Uring | undefined {
    const { uring, reason } = this.#openUring(entries);
    this.#uringProbed = true;
    this.#uringReason = uring ? undefined : (reason ?? "io_uring is unavailable");
    return uring;
  }

  get uringUnavailableReason(): string | undefined {
    if (!this.#uringProbed) this.openUring(URING_PROBE_ENTRIES)?.close();
    return this.#uringReason;
  }
}
