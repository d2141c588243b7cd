/**
 * {@linkcode Native} over `Deno.dlopen`. Only `ffi/mod.ts` imports this file, and only under Deno.
 *
 * Pointers here are `Deno.PointerObject`s; they never leave this file.
 *
 * @module
 */

import { ClosedError } from "../src/errors.ts";
import { ioError } from "./errno.ts";
import { type FileCallSymbols, PosixNative } from "./file_calls.ts";
import { openUring } from "./io_uring_deno.ts";
import {
  detachBuffer,
  int32Fd,
  int64,
  LIBC_PATH,
  libcSymbols,
  MADVISE_ADVICE,
  MAP_ANONYMOUS,
  MAP_FAILED_ADDRESS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_PRIVATE,
  mapFlags,
  MS_SYNC,
  pageSpan,
  SC_PAGESIZE,
} from "./symbols.ts";
import type { MapAdvice, MapOptions, Mapping, Native, RangeChecksum } from "./types.ts";

/** Entries of the ring opened only to learn whether io_uring works. */

type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];

/** The loaded library plus the calling thread's errno slot. */
interface Runtime {
  readonly libc: Libc;
  readonly errnoView: Deno.UnsafePointerView;
  readonly pageSizeBytes: number;
}

/** errno of the calling thread; read right after the failing call, before anything else. */
function errno(runtime: Runtime): number {
  // SAFETY: errnoView wraps __errno_location() of this thread (a module instance lives on one
  // thread), which is that thread's errno slot: an aligned int valid for its life.
  return runtime.errnoView.getInt32(0);
}

/**
 * Opens libc and returns the Deno {@linkcode Native}. Needs `--allow-ffi` (unscoped).
 *
 * @returns The Deno implementation.
 * @throws {Error} If `libc.so.6` cannot be opened.
 */
export function openDenoNative(): Native {
  const libc = Deno.dlopen(LIBC_PATH, libcSymbols).symbols;
  // SAFETY: __errno_location() takes no arguments and returns this thread's errno slot.
  const errnoPointer = libc.__errno_location();
  if (errnoPointer === null) throw new Error("Cannot load libc: __errno_location() returned NULL");
  // SAFETY: __errno_location() returns this thread's errno, an int that lives as long as it.
  const errnoView = new Deno.UnsafePointerView(errnoPointer);
  const pageSizeBytes = Number(libc.sysconf(SC_PAGESIZE));
  if (!(pageSizeBytes >= 4096 && (pageSizeBytes & (pageSizeBytes - 1)) === 0)) {
    throw new Error(`Cannot load libc: sysconf(_SC_PAGESIZE) returned ${pageSizeBytes}`);
  }
  return new DenoNative({ libc, errnoView, pageSizeBytes });
}

class DenoNative extends PosixNative {
  readonly runtime = "deno";
  readonly #runtime: Runtime;

  constructor(runtime: Runtime) {
    // The loaded symbols take and return plain numbers and bigints for the shared calls.
    super(runtime.libc as unknown as FileCallSymbols, () => errno(runtime), openUring);
    this.#runtime = runtime;
  }

  get pageSizeBytes(): number {
    return this.#runtime.pageSizeBytes;
  }

  /**
   * None in Deno (measured with libdeflate, the library Bun uses): an address passed as a number
   * leaves V8's fast-call path (`"usize"`: 145 ns per call with nothing to sum; `"pointer"` plus
   * `UnsafePointer.offset`: 76 ns), and a `"buffer"` parameter, which stays on it (22 ns), takes
   * a whole view, so a range needs a new view first (52 ns). `node:zlib`'s `crc32` sums a 100 B
   * entry in 35 ns.
   */
  rangeChecksum(_buffer: ArrayBuffer): RangeChecksum | undefined {
    return undefined;
  }

  get rangeChecksumUnavailableReason(): string | undefined {
    return "Deno: node:zlib's crc32 is faster than any native call here (see ffi/deno.ts)";
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
    const address = rt.libc.mmap(null, length, prot, flags, int32Fd(fd), offset);
    if (address === null) throw new Error("Cannot map file: mmap returned NULL");
    // SAFETY: only the pointer's value is read, to compare it with MAP_FAILED.
    if (Deno.UnsafePointer.value(address) === MAP_FAILED_ADDRESS) {
      throw ioError("mmap", errno(rt));
    }
    // SAFETY: mmap succeeded, so [address, address + lengthBytes) is mapped until unmap(); the
    // buffer covers exactly that range, and unmap() detaches it before munmap.
    const buffer = Deno.UnsafePointerView.getArrayBuffer(address, lengthBytes);
    // SAFETY: the mapping object owns address/lengthBytes from here on; only unmap() releases them.
    return new DenoMapping(rt, address, buffer, lengthBytes, prot);
  }
}

class DenoMapping implements Mapping {
  readonly lengthBytes: number;
  readonly #runtime: Runtime;
  /** The mapping's start, or undefined once unmapped. */
  #address: Deno.PointerObject | undefined;
  readonly #buffer: ArrayBuffer;
  readonly #prot: number;

  constructor(
    runtime: Runtime,
    address: Deno.PointerObject,
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
    const start = Deno.UnsafePointer.offset(address, span.startBytes);
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
    const start = Deno.UnsafePointer.offset(address, span.startBytes);
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
    const result = rt.libc.mmap(address, length, this.#prot, flags, -1, 0n);
    // SAFETY: only the pointer values are compared.
    if (!Deno.UnsafePointer.equals(result, address)) throw ioError("mmap", errno(rt));
  }

  #mapped(operation: string): Deno.PointerObject {
    // SAFETY: a defined #address is a live mapping of lengthBytes (unmap() clears it first).
    if (this.#address === undefined) {
      throw new ClosedError(`Cannot ${operation} mapping: it is unmapped`);
    }
    return this.#address;
  }
}
