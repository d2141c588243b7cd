/**
 * The native interface `src/` uses. It is the only contract between the storage core and the
 * runtimes: `ffi/bun.ts` implements it over `bun:ffi`, `ffi/deno.ts` over `Deno.dlopen`, and
 * `ffi/mod.ts` picks one. Nothing here exposes a pointer.
 *
 * Bun / Deno differences handled below this interface:
 *
 * | concern              | Bun (`bun:ffi`)                      | Deno (`Deno.dlopen`)                        |
 * |----------------------|--------------------------------------|---------------------------------------------|
 * | pointer values       | `number`                             | `Deno.PointerObject` (or `null`)            |
 * | 64-bit results       | `bigint` (`i64`/`u64`)               | `bigint`                                    |
 * | bytes over a pointer | `toArrayBuffer(ptr, off, len)`       | `Deno.UnsafePointerView.getArrayBuffer`     |
 * | errno                | `__errno_location()` read at once    | `__errno_location()`; stale after a `nonblocking` call |
 * | off-thread calls     | none (use `node:fs` callbacks)       | `nonblocking: true` symbols return Promises |
 * | native CRC-32        | libdeflate, address as a number      | libdeflate, address as a bigint (fast call) |
 *
 * @module
 */

/**
 * How a file is mapped: `"read"` (`PROT_READ`, `MAP_SHARED`: a store through a view faults),
 * `"readwrite"` (`MAP_SHARED`: stores reach the file), or `"copy-on-write"` (`PROT_READ |
 * PROT_WRITE`, `MAP_PRIVATE`: a store changes only a private copy of that page, never the file;
 * untouched pages keep showing the file, later writes included). Views handed to callers use
 * `"copy-on-write"`, so no caller can crash the process or change the log by writing into one.
 */
export type MapAccess = "read" | "readwrite" | "copy-on-write";

/** `madvise` advice that the storage core uses. */
export type MapAdvice = "normal" | "sequential" | "random" | "willneed" | "dontneed";

/** A live file mapping. Its memory stays valid until {@linkcode Mapping.unmap}. */
export interface Mapping {
  /**
   * The mapped bytes. After `unmap()` this buffer is detached (`byteLength` 0), and so is every
   * view over it, so no caller can reach unmapped memory.
   */
  readonly buffer: ArrayBuffer;
  /** The mapped length in bytes. */
  readonly lengthBytes: number;
  /** `msync(MS_SYNC)` of `[offsetBytes, offsetBytes + lengthBytes)`, page-aligned down/up inside. */
  sync(offsetBytes: number, lengthBytes: number): void;
  /** `madvise` over `[offsetBytes, offsetBytes + lengthBytes)` (defaults: whole mapping). */
  advise(advice: MapAdvice, offsetBytes?: number, lengthBytes?: number): void;
  /** Detaches `buffer` (and every view over it), then `munmap`s. Idempotent. */
  unmap(): void;
}

/** Options of {@linkcode Native.map}. */
export interface MapOptions {
  /** See {@linkcode MapAccess}. */
  access: MapAccess;
  /** File offset of the mapping; a multiple of the page size. Default 0. */
  offsetBytes?: number;
  /** `MAP_POPULATE`: fault every page in now. Default false. */
  populate?: boolean;
}

/** An io_uring instance for the optional write+sync path. */
export interface Uring {
  /**
   * Writes `bytes` at `positionBytes` of `fd` and then, linked (`IOSQE_IO_LINK`), syncs the file
   * (`"data"` = fdatasync, `"full"` = fsync, `"none"` = no sync). Resolves when both completed
   * without blocking the JS thread; rejects with an `IoError` naming the failed step. `bytes`
   * must not be changed until the promise settles.
   */
  writeAndSync(
    fd: number,
    bytes: Uint8Array,
    positionBytes: number,
    sync: "none" | "data" | "full",
  ): Promise<void>;
  /** Tears the ring down; pending operations reject. Idempotent. */
  close(): void;
}

/**
 * CRC-32 (zlib's polynomial and seed convention: `seed` is a previous result or any start value)
 * of `[offsetBytes, offsetBytes + lengthBytes)` of the buffer it was made for. Throws
 * `InvalidArgumentError` when the range is not inside the buffer (a detached buffer has none).
 */
export type RangeChecksum = (offsetBytes: number, lengthBytes: number, seed: number) => number;

/** The runtime-native services of the storage core. */
export interface Native {
  /** Which implementation this is. */
  readonly runtime: "bun" | "deno";
  /** The system page size in bytes. */
  readonly pageSizeBytes: number;
  /** `mmap(NULL, lengthBytes, prot, MAP_SHARED, fd, offset)`; throws `IoError` (`mmap`). */
  map(fd: number, lengthBytes: number, options: MapOptions): Mapping;
  /** `fsync(2)` on the calling thread; throws `IoError`. */
  fsync(fd: number): void;
  /** `fdatasync(2)` on the calling thread; throws `IoError`. */
  fdatasync(fd: number): void;
  /**
   * `posix_fallocate(3)`: reserves real blocks (never sparse), so writes through a mapping cannot
   * SIGBUS on a full disk. Throws `IoError` (`ENOSPC`, …).
   */
  allocate(fd: number, offsetBytes: number, lengthBytes: number): void;
  /**
   * `flock(fd, LOCK_EX | LOCK_NB)`. Returns false if another open file description holds it
   * (`EWOULDBLOCK`), true once held; throws `IoError` otherwise.
   */
  tryLock(fd: number): boolean;
  /** `flock(fd, LOCK_UN)`. */
  unlock(fd: number): void;
  /**
   * The size of the file open as `fd`: `lseek(fd, 0, SEEK_END)`, which leaves the file offset at
   * the end, so only for descriptors read and written by position (`pread`/`pwrite`: what
   * `node:fs` calls with a position do in both runtimes, checked with strace). Throws `IoError`
   * (`lseek`: `EBADF`, `ESPIPE`, …). Deno's `node:fs` `fstatSync` took 19–20 µs here (it builds a
   * whole `Stats` object) and Bun's 0.6, against 0.3 for this in either.
   */
  fileSizeBytes(fd: number): number;
  /**
   * An io_uring with `entries` submission slots, or `undefined` (with the reason in
   * `uringUnavailableReason`) when liburing.so.2 cannot be loaded or the kernel refuses a ring.
   */
  openUring(entries: number): Uring | undefined;
  /** Why `openUring` returns `undefined`, or `undefined` when it works. */
  readonly uringUnavailableReason: string | undefined;
  /**
   * A native {@linkcode RangeChecksum} over `buffer` (a fixed-length `ArrayBuffer` under
   * 2 GiB): its address is resolved once, so a call allocates nothing, where `node:zlib`'s `crc32`
   * needs a view per range. `undefined` (with the reason in `rangeChecksumUnavailableReason`)
   * when its library (libdeflate, optional) cannot be loaded: callers then use `node:zlib`.
   */
  rangeChecksum(buffer: ArrayBuffer): RangeChecksum | undefined;
  /** Why `rangeChecksum` returns `undefined`, or `undefined` when it works. */
  readonly rangeChecksumUnavailableReason: string | undefined;
}
