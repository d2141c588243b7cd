/**
 * {@linkcode Native} over `bun:ffi`. Only `ffi/mod.ts` imports this file, and only under Bun.
 *
 * `bun:ffi` is imported for types only at the top (erased at run time; Deno's checker resolves it
 * through the `bun` types of tsconfig.json) and loaded by {@linkcode openBunNative}, so merely
 * parsing this file never loads it.
 *
 * Pointers here are `number`s (Bun's `Pointer`); they never leave this file.
 *
 * @module
 */

import type * as BunFfi from "bun:ffi";
import { ClosedError } from "../src/errors.ts";
import { ioError } from "./errno.ts";
import { type FileCallSymbols, PosixNative } from "./file_calls.ts";
import { openUring } from "./io_uring_bun.ts";
import {
  checkChecksumBuffer,
  detachBuffer,
  int32Fd,
  int64,
  LIBC_PATH,
  libcSymbols,
  LIBDEFLATE_PATH,
  libdeflateSymbols,
  MADVISE_ADVICE,
  MAP_ANONYMOUS,
  MAP_FAILED_ADDRESS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  mapFlags,
  MS_SYNC,
  pageSpan,
  rangeOutsideBuffer,
  SC_PAGESIZE,
  type SymbolSignature,
} from "./symbols.ts";
import type { MapAdvice, MapOptions, Mapping, Native, RangeChecksum } from "./types.ts";

/** Entries of the ring opened only to learn whether io_uring works. */

/**
 * The neutral table in `bun:ffi`'s shape. Its type names (`i32`, `i64`, `usize`, `pointer`) are
 * keys of bun:ffi's `FFITypeStringToType`, so only the field names change.
 */
type BunSymbols<T extends Record<string, SymbolSignature>> = {
  readonly [K in keyof T]: { readonly args: T[K]["parameters"]; readonly returns: T[K]["result"] };
};

function toBunSymbols<T extends Record<string, SymbolSignature>>(table: T): BunSymbols<T> {
  const entries = Object.entries(table).map(([name, signature]) => [
    name,
    { args: signature.parameters, returns: signature.result },
  ]);
  return Object.fromEntries(entries) as BunSymbols<T>;
}

type Libc = BunFfi.Library<BunSymbols<typeof libcSymbols>>["symbols"];
type Libdeflate = BunFfi.Library<BunSymbols<typeof libdeflateSymbols>>["symbols"];

/** The loaded library plus the calling thread's errno slot. */
interface Runtime {
  readonly ffi: typeof BunFfi;
  readonly libc: Libc;
  readonly errnoAddress: BunFfi.Pointer | bigint;
  readonly pageSizeBytes: number;
}

/** errno of the calling thread; read right after the failing call, before anything else. */
function errno(runtime: Runtime): number {
  // SAFETY: errnoAddress came from __errno_location() on this thread (a module instance lives on
  // one thread), which returns that thread's errno slot: an aligned int valid for its life.
  return runtime.ffi.read.i32(runtime.errnoAddress, 0);
}

/**
 * Loads `bun:ffi` and libc and returns the Bun {@linkcode Native}.
 *
 * @returns The Bun implementation.
 * @throws {Error} If `libc.so.6` cannot be opened.
 */
export async function openBunNative(): Promise<Native> {
  const ffi: typeof BunFfi = await import("bun:ffi");
  const libc = ffi.dlopen(LIBC_PATH, toBunSymbols(libcSymbols)).symbols;
  // SAFETY: __errno_location() takes no arguments and returns this thread's errno slot.
  const errnoAddress = libc.__errno_location();
  if (errnoAddress === null) throw new Error("Cannot load libc: __errno_location() returned NULL");
  const pageSizeBytes = Number(libc.sysconf(SC_PAGESIZE));
  if (!(pageSizeBytes >= 4096 && (pageSizeBytes & (pageSizeBytes - 1)) === 0)) {
    throw new Error(`Cannot load libc: sysconf(_SC_PAGESIZE) returned ${pageSizeBytes}`);
  }
  return new BunNative({ ffi, libc, errnoAddress, pageSizeBytes });
}

/**
 * Opens libdeflate at `path` for {@linkcode Native.rangeChecksum}, or says why it cannot (then
 * `node:zlib` is used). Exported for the test of that fallback.
 */
export function loadLibdeflate(
  ffi: typeof BunFfi,
  path: string = LIBDEFLATE_PATH,
): { libdeflate?: Libdeflate; reason?: string } {
  try {
    return { libdeflate: ffi.dlopen(path, toBunSymbols(libdeflateSymbols)).symbols };
  } catch (error) {
    return { reason: `Cannot load ${path}: ${(error as Error).message}` };
  }
}

/**
 * A {@linkcode RangeChecksum} over `buffer` through `libdeflate_crc32`, its address passed as a
 * number (Bun's pointers are numbers; as a `"pointer"` it converts 10% faster than as a
 * `"usize"`): 29 ns for the 112 B a 100 B entry's checksum covers, where `node:zlib` needs ~60
 * (a view costs 40: it sums the header words in JS and the entry itself, whose buffer must be
 * checked not shared first). An enqueue of 100 B took 82–87 ns of CPU with it and 147–152
 * without.
 */
export function libdeflateRangeChecksum(
  ffi: typeof BunFfi,
  libdeflate: Libdeflate,
  buffer: ArrayBuffer,
): RangeChecksum {
  checkChecksumBuffer(buffer);
  // SAFETY: buffer is attached, fixed-length and not empty (checked above). JSC never moves an
  // ArrayBuffer's store, and the closure below holds the buffer, so the store lives at `base` for
  // as long as the closure can be called, unless the buffer is detached (see the check there).
  const base = ffi.ptr(buffer);
  return (offsetBytes, lengthBytes, seed) => {
    // SAFETY: both are integers in [0, 2^31) and their sum is at most the live byteLength, which
    // is 0 once the buffer is detached: [base + offsetBytes, +lengthBytes) lies inside its store.
    if (
      (offsetBytes | 0) !== offsetBytes || (lengthBytes | 0) !== lengthBytes ||
      (offsetBytes | lengthBytes) < 0 || offsetBytes + lengthBytes > buffer.byteLength
    ) {
      throw rangeOutsideBuffer(offsetBytes, lengthBytes, buffer.byteLength);
    }
    // SAFETY: the range was checked just above; libdeflate_crc32 only reads those bytes.
    return libdeflate.libdeflate_crc32(seed, base + offsetBytes as BunFfi.Pointer, lengthBytes);
  };
}

class BunNative extends PosixNative {
  readonly runtime = "bun";
  readonly #runtime: Runtime;
  #libdeflate: { libdeflate?: Libdeflate; reason?: string } | undefined;

  constructor(runtime: Runtime) {
    // The loaded symbols take and return plain numbers and bigints for the shared calls.
    super(runtime.libc as unknown as FileCallSymbols, () => errno(runtime), openUring);
    this.#runtime = runtime;
  }

  get pageSizeBytes(): number {
    return this.#runtime.pageSizeBytes;
  }

  rangeChecksum(buffer: ArrayBuffer): RangeChecksum | undefined {
    const { libdeflate } = this.#libdeflate ??= loadLibdeflate(this.#runtime.ffi);
    return libdeflate && libdeflateRangeChecksum(this.#runtime.ffi, libdeflate, buffer);
  }

  get rangeChecksumUnavailableReason(): string | undefined {
    return (this.#libdeflate ??= loadLibdeflate(this.#runtime.ffi)).reason;
  }

  map(fd: number, lengthBytes: number, options: MapOptions): Mapping {
    const rt = this.#runtime;
    const offsetBytes = options.offsetBytes ?? 0;
    const { prot, flags } = mapFlags(
      lengthBytes,
      offsetBytes,
      options.access,
      options.populate ?? false,
      rt.pageSizeBytes,
    );
    const length = int64(lengthBytes, "length");
    const offset = int64(offsetBytes, "offset");
    // SAFETY: addr NULL lets the kernel choose fresh address space; length, offset and fd are
    // checked by the kernel, which returns MAP_FAILED rather than touching memory on bad input.
    const result: unknown = rt.libc.mmap(null, length, prot, flags, int32Fd(fd), offset);
    if (typeof result !== "number" || result === 0) {
      if (result === MAP_FAILED_ADDRESS) throw ioError("mmap", errno(rt));
      // A user-space address is below 2^48 on x86_64 and aarch64, so Bun returns it as a number.
      throw new Error(`Cannot map file: mmap returned an unusable address ${String(result)}`);
    }
    // SAFETY: mmap succeeded: [result, result + lengthBytes) is mapped until BunMapping.unmap().
    const address = result as BunFfi.Pointer;
    // SAFETY: the buffer covers exactly the mapped range; unmap() detaches it before munmap.
    const buffer = rt.ffi.toArrayBuffer(address, 0, lengthBytes);
    // SAFETY: the mapping object owns address/lengthBytes from here on; only unmap() releases them.
    return new BunMapping(rt, address, buffer, lengthBytes, prot);
  }
}

class BunMapping implements Mapping {
  readonly lengthBytes: number;
  readonly #runtime: Runtime;
  /** The mapping's start, or undefined once unmapped. */
  #address: BunFfi.Pointer | undefined;
  readonly #buffer: ArrayBuffer;
  readonly #prot: number;

  constructor(
    runtime: Runtime,
    address: BunFfi.Pointer,
    buffer: ArrayBuffer,
    lengthBytes: number,
    prot: number,
  ) {
    this.#runtime = runtime;
    // SAFETY: address is a live mapping of lengthBytes that nothing else will unmap.
    this.#address = address;
    this.#buffer = buffer;
    this.lengthBytes = lengthBytes;
    this.#prot = prot;
  }

  get buffer(): ArrayBuffer {
    return this.#buffer;
  }

  sync(offsetBytes: number, lengthBytes: number): void {
    const rt = this.#runtime;
    const address = this.#mapped("sync");
    const span = pageSpan("sync", offsetBytes, lengthBytes, this.lengthBytes, rt.pageSizeBytes);
    // SAFETY: pageSpan keeps [startBytes, startBytes + lengthBytes) inside the live mapping, and
    // startBytes is a page multiple from a page-aligned mapping start.
    const start = (address + span.startBytes) as BunFfi.Pointer;
    const length = int64(span.lengthBytes, "length");
    // SAFETY: start/length as above; msync only writes back pages, it never changes memory.
    if (rt.libc.msync(start, length, MS_SYNC) === -1) throw ioError("msync", errno(rt));
  }

  advise(advice: MapAdvice, offsetBytes = 0, lengthBytes = this.lengthBytes - offsetBytes): void {
    const rt = this.#runtime;
    const address = this.#mapped("advise");
    const span = pageSpan("advise", offsetBytes, lengthBytes, this.lengthBytes, rt.pageSizeBytes);
    // SAFETY: pageSpan keeps the page-aligned range inside the live mapping; on a MAP_SHARED file
    // mapping even MADV_DONTNEED only drops pages that refault from the file.
    const start = (address + span.startBytes) as BunFfi.Pointer;
    const length = int64(span.lengthBytes, "length");
    // SAFETY: start/length as above.
    const result = rt.libc.madvise(start, length, MADVISE_ADVICE[advice]);
    if (result === -1) throw ioError("madvise", errno(rt));
  }

  unmap(): void {
    const rt = this.#runtime;
    // SAFETY: #address is set only while the mapping is live; clearing it before the munmap
    // makes the release happen once.
    const address = this.#address;
    if (address === undefined) return;
    this.#address = undefined;
    const length = int64(this.lengthBytes, "length");
    if (detachBuffer(this.#buffer)) {
      // SAFETY: the only buffer over [address, +lengthBytes) was just detached, so no view can
      // reach the range any more; address/length are exactly what mmap returned.
      if (rt.libc.munmap(address, length) === -1) throw ioError("munmap", errno(rt));
      return;
    }
    // A caller moved the buffer away (transfer/postMessage), so views we cannot detach may still
    // point here. Swap in zero-filled anonymous memory at the same address (MAP_FIXED is atomic)
    // and leave it mapped for good: such views read zeros instead of faulting.
    const flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE;
    // SAFETY: MAP_FIXED over exactly our own live range; nothing else can be mapped there.
    const result: unknown = rt.libc.mmap(address, length, this.#prot, flags, -1, 0n);
    if (result !== address) throw ioError("mmap", errno(rt));
  }

  #mapped(operation: string): BunFfi.Pointer {
    // SAFETY: a defined #address is a live mapping of lengthBytes (unmap() clears it first).
    if (this.#address === undefined) {
      throw new ClosedError(`Cannot ${operation} mapping: it is unmapped`);
    }
    return this.#address;
  }
}
