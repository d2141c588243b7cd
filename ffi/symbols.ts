/**
 * The one libc symbol table both backends load, the constants passed to those calls, and the
 * runtime-neutral argument conversions. The table uses Deno's `{ parameters, result }` shape;
 * `ffi/bun.ts` translates each type name to a `bun:ffi` `FFIType`. The C prototype is beside every
 * parameter. Constants are the Linux values, identical on x86_64 and aarch64 (both use
 * `asm-generic/mman-common.h` numbering for these flags).
 *
 * Nothing here touches memory: this file is safe to load in any runtime.
 *
 * @module
 */

import type { MapAccess, MapAdvice } from "./types.ts";
import { InvalidArgumentError } from "../src/errors.ts";

/** A C type as named in the table (Deno's names; `bun.ts` maps them). */
export type NativeTypeName = "i32" | "u32" | "i64" | "usize" | "pointer";

/** One function of the table: its parameter types and its result type. */
export interface SymbolSignature {
  readonly parameters: readonly NativeTypeName[];
  readonly result: NativeTypeName;
}

/** The glibc shared object every backend opens. */
export const LIBC_PATH = "libc.so.6";

/** Every libc function the storage core needs, with its C prototype. */
export const libcSymbols = {
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
  mmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
      "i32", // int prot
      "i32", // int flags
      "i32", // int fd
      "i64", // off_t offset
    ],
    result: "pointer", // void * (MAP_FAILED = (void *) -1 on error, errno set)
  },
  // int munmap(void *addr, size_t length);
  munmap: {
    parameters: [
      "pointer", // void *addr
      "usize", // size_t length
    ],
    result: "i32", // 0, or -1 with errno
  },
  // int msync(void *addr, size_t length, int flags);
  msync: {
    parameters: [
      "pointer", // void *addr (page aligned)
      "usize", // size_t length
      "i32", // int flags
    ],
    result: "i32", // 0, or -1 with errno
  },
  // int madvise(void *addr, size_t length, int advice);
  madvise: {
    parameters: [
      "pointer", // void *addr (page aligned)
      "usize", // size_t length
      "i32", // int advice
    ],
    result: "i32", // 0, or -1 with errno
  },
  // int fsync(int fd);
  fsync: {
    parameters: [
      "i32", // int fd
    ],
    result: "i32", // 0, or -1 with errno
  },
  // int fdatasync(int fd);
  fdatasync: {
    parameters: [
      "i32", // int fd
    ],
    result: "i32", // 0, or -1 with errno
  },
  // int posix_fallocate(int fd, off_t offset, off_t len);
  posix_fallocate: {
    parameters: [
      "i32", // int fd
      "i64", // off_t offset
      "i64", // off_t len
    ],
    result: "i32", // 0, or the error number itself (errno is NOT set)
  },
  // int flock(int fd, int operation);
  flock: {
    parameters: [
      "i32", // int fd
      "i32", // int operation
    ],
    result: "i32", // 0, or -1 with errno
  },
  // off_t lseek(int fd, off_t offset, int whence);
  lseek: {
    parameters: [
      "i32", // int fd
      "i64", // off_t offset
      "i32", // int whence
    ],
    result: "i64", // off_t: the resulting offset, or -1 with errno
  },
  // int *__errno_location(void);
  __errno_location: {
    parameters: [],
    result: "pointer", // int * (the calling thread's errno)
  },
  // long sysconf(int name);
  sysconf: {
    parameters: [
      "i32", // int name
    ],
    result: "i64", // long
  },
} as const satisfies Record<string, SymbolSignature>;

/**
 * The CRC-32 library of {@linkcode Native.rangeChecksum} (Debian `libdeflate0`): 18 ns for 112 B
 * here in C, where zlib 1.2.13's `crc32` (`libz.so.1`, on every Debian machine) takes 210 ns, no
 * faster than `node:zlib` in either runtime. Optional: without it `node:zlib` is used.
 */
export const LIBDEFLATE_PATH = "libdeflate.so.0";

/** The one libdeflate function {@linkcode Native.rangeChecksum} calls. */
export const libdeflateSymbols = {
  // uint32_t libdeflate_crc32(uint32_t crc, const void *buffer, size_t len);
  libdeflate_crc32: {
    parameters: [
      "u32", // uint32_t crc (zlib convention: 0 to start, or a previous result)
      "pointer", // const void *buffer (only read; Deno passes it as a usize, see ffi/deno.ts)
      "usize", // size_t len
    ],
    result: "u32", // the CRC-32 continued over the bytes
  },
} as const satisfies Record<string, SymbolSignature>;

/**
 * Largest buffer a {@linkcode Native.rangeChecksum} covers: offsets and lengths are int32s, which
 * Deno turns into 64-bit arguments without allocating. A staging buffer is at most 1 GiB.
 */
export const RANGE_CHECKSUM_BUFFER_BYTES_MAX = 2 ** 31 - 1;

/**
 * Checks that `buffer` can be given a range checksum: fixed length (a resizable buffer may move
 * or shrink under a resolved address), attached, not empty, and under 2 GiB.
 *
 * @throws {InvalidArgumentError} If it cannot.
 */
export function checkChecksumBuffer(buffer: ArrayBuffer): void {
  if (
    !(buffer instanceof ArrayBuffer) || buffer.resizable || buffer.detached ||
    buffer.byteLength === 0 || buffer.byteLength > RANGE_CHECKSUM_BUFFER_BYTES_MAX
  ) {
    throw new InvalidArgumentError(
      "Cannot make a range checksum: the buffer must be a fixed-length, attached ArrayBuffer " +
        "of 1 byte to 2 GiB",
    );
  }
}

/** The error of a {@linkcode Native.rangeChecksum} call whose range is not inside its buffer. */
export function rangeOutsideBuffer(offset: number, length: number, size: number): Error {
  return new InvalidArgumentError(
    `Cannot checksum [${offset}, +${length}): it is not inside the buffer of ${size} bytes`,
  );
}

// <sys/mman.h>
/** `PROT_READ`. */
export const PROT_READ = 0x1;
/** `PROT_WRITE`. */
export const PROT_WRITE = 0x2;
/** `MAP_SHARED`: stores reach the file. */
export const MAP_SHARED = 0x01;
/** `MAP_PRIVATE`: copy-on-write file mappings, and the anonymous stand-in of a retired one. */
export const MAP_PRIVATE = 0x02;
/** `MAP_FIXED`: replace whatever is mapped at the address, atomically. */
export const MAP_FIXED = 0x10;
/** `MAP_ANONYMOUS`: memory not backed by a file (reads as zeros). */
export const MAP_ANONYMOUS = 0x20;
/** `MAP_NORESERVE`: no swap is reserved for the anonymous stand-in. */
export const MAP_NORESERVE = 0x4000;
/** `MAP_POPULATE`: fault every page in at map time. */
export const MAP_POPULATE = 0x8000;
/** `MS_SYNC`: msync waits until the pages are written. */
export const MS_SYNC = 4;
/** `mmap`'s error result, `(void *) -1`, as an unsigned 64-bit address. */
export const MAP_FAILED_ADDRESS = 0xffff_ffff_ffff_ffffn;

/** `madvise` advice numbers (`MADV_NORMAL` … `MADV_DONTNEED`, `<sys/mman.h>`). */
export const MADVISE_ADVICE: Readonly<Record<MapAdvice, number>> = {
  normal: 0,
  random: 1,
  sequential: 2,
  willneed: 3,
  dontneed: 4,
};

// <sys/file.h>
/** `LOCK_EX`: exclusive lock. */
export const LOCK_EX = 2;
/** `LOCK_NB`: fail with `EWOULDBLOCK` instead of waiting. */
export const LOCK_NB = 4;
/** `LOCK_UN`: release. */
export const LOCK_UN = 8;

// <unistd.h>
/** `SEEK_END`: `lseek` relative to the end of the file. */
export const SEEK_END = 2;

// <bits/confname.h>
/** `_SC_PAGESIZE` for `sysconf`. */
export const SC_PAGESIZE = 30;

/**
 * How many times a call that failed with `EINTR` is retried before the failure is reported. A
 * signal storm long enough to exhaust this is a real problem, not something to spin on.
 */
export const EINTR_RETRIES_MAX = 16;

/**
 * Converts a byte count or offset to the `bigint` that a 64-bit parameter (`size_t`, `off_t`)
 * takes. Both runtimes accept a `bigint` there (Deno requires it), so this is the only conversion.
 *
 * @param value A non-negative safe integer.
 * @param what The argument's name, for the error message.
 * @returns `value` as a bigint.
 * @throws {InvalidArgumentError} If `value` is not a non-negative safe integer.
 */
export function int64(value: number, what: string): bigint {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `Cannot pass ${what} to libc: ${value} is not a non-negative safe integer`,
    );
  }
  return BigInt(value);
}

/**
 * Checks that `fd` can be passed as a C `int`. Whether it is open is the kernel's to say.
 *
 * @param fd The file descriptor.
 * @returns `fd`.
 * @throws {InvalidArgumentError} If `fd` is not a 32-bit integer.
 */
export function int32Fd(fd: number): number {
  if (!Number.isInteger(fd) || fd < -(2 ** 31) || fd >= 2 ** 31) {
    throw new InvalidArgumentError(`Cannot pass fd to libc: ${fd} is not a 32-bit integer`);
  }
  return fd;
}

/** A page-aligned byte range inside a mapping, relative to the mapping's start. */
export interface PageSpan {
  /** Start of the range, rounded down to a page boundary (so ≥ 0). */
  readonly startBytes: number;
  /** Length from `startBytes` to the end of the requested range. */
  readonly lengthBytes: number;
}

/**
 * Rounds `[offsetBytes, offsetBytes + lengthBytes)` down to a page boundary and checks that it
 * lies inside a mapping of `mappingLengthBytes`. Every pointer that `msync`/`madvise` receive is
 * computed from this, which is what keeps them inside the mapping.
 *
 * @param operation The calling operation, for the error message.
 * @param offsetBytes Start of the range inside the mapping.
 * @param lengthBytes Length of the range.
 * @param mappingLengthBytes The mapping's length.
 * @param pageSizeBytes The system page size (a power of two).
 * @returns The page-aligned range.
 * @throws {InvalidArgumentError} If the range is not inside the mapping.
 */
export function pageSpan(
  operation: string,
  offsetBytes: number,
  lengthBytes: number,
  mappingLengthBytes: number,
  pageSizeBytes: number,
): PageSpan {
  if (
    !Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) ||
    offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > mappingLengthBytes
  ) {
    throw new InvalidArgumentError(
      `Cannot ${operation} [${offsetBytes}, +${lengthBytes}): ` +
        `it is not inside the mapping of ${mappingLengthBytes} bytes`,
    );
  }
  const startBytes = offsetBytes - (offsetBytes % pageSizeBytes);
  return { startBytes, lengthBytes: offsetBytes + lengthBytes - startBytes };
}

/**
 * Checks the arguments of `Native.map` and computes `mmap`'s `prot` and `flags`.
 *
 * @param lengthBytes The mapping length.
 * @param offsetBytes The file offset.
 * @param access How the mapping may be used (see `MapAccess`).
 * @param populate Whether to fault every page in now.
 * @param pageSizeBytes The system page size.
 * @returns `prot` and `flags` for `mmap`.
 * @throws {InvalidArgumentError} If the length is not positive or the offset not page aligned.
 */
export function mapFlags(
  lengthBytes: number,
  offsetBytes: number,
  access: MapAccess,
  populate: boolean,
  pageSizeBytes: number,
): { prot: number; flags: number } {
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes <= 0) {
    throw new InvalidArgumentError(`Cannot map file: length ${lengthBytes} is not positive`);
  }
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes % pageSizeBytes !== 0) {
    throw new InvalidArgumentError(
      `Cannot map file: offset ${offsetBytes} is not a multiple of the page size ${pageSizeBytes}`,
    );
  }
  return {
    prot: access === "read" ? PROT_READ : PROT_READ | PROT_WRITE,
    // copy-on-write: stores go to private pages (never the file, never a fault); pages not yet
    // stored to keep showing the page cache, so later writes to the file are seen.
    flags: (access === "copy-on-write" ? MAP_PRIVATE : MAP_SHARED) | (populate ? MAP_POPULATE : 0),
  };
}

/**
 * Detaches `buffer`, and with it every view over it, without copying its bytes (the transfer
 * target has length 0).
 *
 * @param buffer The buffer over a mapping.
 * @returns true if this call detached it; false if it was already detached (a caller transferred
 * it away, so its memory may live on in another buffer) or cannot be detached.
 */
export function detachBuffer(buffer: ArrayBuffer): boolean {
  if (buffer.detached) return false;
  try {
    buffer.transfer(0);
  } catch {
    return false;
  }
  return buffer.detached;
}
