/**
 * The libc calls on file descriptors that involve no pointer — fsync, fdatasync, posix_fallocate,
 * flock — written once for both backends. Each backend hands over its loaded symbols (called with
 * plain numbers and bigints, the same in Bun and Deno) and its way of reading errno.
 *
 * @module
 */
import { EINTR, EWOULDBLOCK, ioError } from "./errno.ts";
import { EINTR_RETRIES_MAX, int32Fd, int64, LOCK_EX, LOCK_NB, LOCK_UN } from "./symbols.ts";
import type { Native } from "./types.ts";

/** The loaded symbols these calls need: `int`-returning, no pointer arguments. */
export interface FileCallSymbols {
  fsync(fd: number): number;
  fdatasync(fd: number): number;
  posix_fallocate(fd: number, offset: bigint, length: bigint): number;
  flock(fd: number, operation: number): number;
}

/** The pointer-free file calls of {@linkcode Native}. */
export type FileCalls = Pick<Native, "fsync" | "fdatasync" | "allocate" | "tryLock" | "unlock">;

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
  };
}
