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
} from "./symbols.ts";
import type { MapAdvice, MapOptions, Mapping, Native, RangeChecksum } from "./types.ts";

/** Entries of the ring opened only to learn whether io_uring works. */

type Libc = Deno.DynamicLibrary<typeof libcSymbols>["symbols"];
/**
 * `libdeflateSymbols` with the buffer's address passed as an integer (`usize`: the same register
 * as a pointer on every 64-bit ABI). V8's fast-call path keeps a bigint argument (15 ns a call
 * for 112 B, range check included), where a pointer object needs `UnsafePointer.offset` per call
 * (76 ns) and a number argument leaves the fast path (145 ns with nothing to sum).
 */
const libdeflateByAddress = {
  libdeflate_crc32: {
    ...libdeflateSymbols.libdeflate_crc32,
    parameters: ["u32", "usize", "usize"],
  },
} as const;

type Libdeflate = Deno.DynamicLibrary<typeof libdeflateByAddress>["symbols"];

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

/**
 * Opens libdeflate at `path` for {@linkcode Native.rangeChecksum}, or says why it cannot (then
 * `node:zlib` is used). Exported for the test of that fallback.
 */
export function loadLibdeflate(
  path: string = LIBDEFLATE_PATH,
): { libdeflate?: Libdeflate; reason?: string } {
  try {
    return { libdeflate: Deno.dlopen(path, libdeflateByAddress).symbols };
  } catch (error) {
    return { reason: `Cannot load ${path}: ${(error as Error).message}` };
  }
}

/**
 * A {@linkcode RangeChecksum} over `buffer` through `libdeflate_crc32`, its address passed as a
 * bigint (see `libdeflateByAddress`): 15 ns for the 112 B a 100 B entry's checksum covers, where
 * `node:zlib` needs ~70 with a view or ~50 without (the header words summed in JS, then the
 * entry itself, whose buffer must be checked not shared first). An enqueue of 100 B took 51–59 ns
 * of CPU with it and 98–127 without.
 */
export function libdeflateRangeChecksum(
  libdeflate: Libdeflate,
  buffer: ArrayBuffer,
): RangeChecksum {
  checkChecksumBuffer(buffer);
  // SAFETY: buffer is attached, fixed-length and not empty (checked above), so it has a backing
  // store, which V8 never moves; the closure below holds the buffer, so the store stays at `base`
  // for as long as the closure can be called, unless the buffer is detached (checked there).
  const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
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
    // `| 0`: known int32s become 64-bit integers with no BigInt allocated (the optimizing
    // compiler lowers them), where a plain number may allocate two per call.
    return libdeflate.libdeflate_crc32(
      seed,
      base + BigInt(offsetBytes | 0),
      BigInt(lengthBytes | 0),
    );
  };
}

class DenoNative extends PosixNative {
  readonly runtime = "deno";
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
    const { libdeflate } = this.#libdeflate ??= loadLibdeflate();
    return libdeflate && libdeflateRangeChecksum(libdeflate, buffer);
  }

  get rangeChecksumUnavailableReason(): string | undefined {
    return (this.#libdeflate ??= loadLibdeflate()).reason;
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
