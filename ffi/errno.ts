/**
 * errno numbers → names for Linux on x86_64 and aarch64 (both use the `asm-generic/errno*.h`
 * numbering for every entry below), and the one place a failed call becomes an `IoError`.
 *
 * @module
 */

import { IoError } from "../src/errors.ts";

/** `EINTR`: a signal interrupted the call. */
export const EINTR = 4;
/** `EBADF`: not an open file descriptor (or not open for the needed access). */
export const EBADF = 9;
/** `EAGAIN`, also `EWOULDBLOCK`: the call would block (e.g. `flock` with `LOCK_NB`). */
export const EWOULDBLOCK = 11;

/** errno number → name; `EAGAIN`/`EWOULDBLOCK` and `EOPNOTSUPP`/`ENOTSUP` share a number. */
const ERRNO_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "EPERM"],
  [2, "ENOENT"],
  [3, "ESRCH"],
  [4, "EINTR"],
  [5, "EIO"],
  [6, "ENXIO"],
  [7, "E2BIG"],
  [8, "ENOEXEC"],
  [9, "EBADF"],
  [10, "ECHILD"],
  [11, "EAGAIN"],
  [12, "ENOMEM"],
  [13, "EACCES"],
  [14, "EFAULT"],
  [15, "ENOTBLK"],
  [16, "EBUSY"],
  [17, "EEXIST"],
  [18, "EXDEV"],
  [19, "ENODEV"],
  [20, "ENOTDIR"],
  [21, "EISDIR"],
  [22, "EINVAL"],
  [23, "ENFILE"],
  [24, "EMFILE"],
  [25, "ENOTTY"],
  [26, "ETXTBSY"],
  [27, "EFBIG"],
  [28, "ENOSPC"],
  [29, "ESPIPE"],
  [30, "EROFS"],
  [31, "EMLINK"],
  [32, "EPIPE"],
  [33, "EDOM"],
  [34, "ERANGE"],
  [35, "EDEADLK"],
  [36, "ENAMETOOLONG"],
  [37, "ENOLCK"],
  [38, "ENOSYS"],
  [39, "ENOTEMPTY"],
  [40, "ELOOP"],
  [61, "ENODATA"],
  [74, "EBADMSG"],
  [75, "EOVERFLOW"],
  [95, "EOPNOTSUPP"],
  [110, "ETIMEDOUT"],
  [116, "ESTALE"],
  [117, "EUCLEAN"],
  [121, "EREMOTEIO"],
  [122, "EDQUOT"],
  [125, "ECANCELED"],
]);

/**
 * The symbolic name of an errno number.
 *
 * @param errno A positive errno number.
 * @returns Its name (`EAGAIN` for 11, the name `flock` reports as `EWOULDBLOCK`), or
 * `ERRNO_<n>` for a number not in the table.
 * @example
 * ```ts
 * import { errnoName } from "./errno.ts";
 * errnoName(28); // "ENOSPC"
 * ```
 */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `ERRNO_${errno}`;
}

/**
 * The typed error for a failed system call.
 *
 * @param syscall The call that failed, e.g. `fdatasync`.
 * @param errno The errno number it reported.
 * @returns An `IoError` (code `ERR_IO`) carrying the errno name.
 * @example
 * ```ts
 * import { ioError } from "./errno.ts";
 * const error = ioError("fsync", 9);
 * error.errno; // "EBADF"
 * ```
 */
export function ioError(syscall: string, errno: number): IoError {
  return new IoError(syscall, errnoName(errno));
}
