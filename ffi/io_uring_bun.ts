/**
 * io_uring through liburing.so.2 under Bun (`bun:ffi`). Only `ffi/bun.ts` imports this file, and
 * only under Bun. `bun:ffi` is loaded with `createRequire` rather than a static import so that
 * `deno check` / `deno publish`, which also analyse this file, never try to resolve `bun:ffi`.
 *
 * Bun has no off-thread FFI calls, so completions are watched without blocking the JS thread:
 * see {@linkcode CompletionStrategy} for the options and the measurement behind the default.
 *
 * @module
 */

import { closeSync, read, writeSync } from "node:fs";
import { createRequire } from "node:module";
import { IO_URING_STRUCT_BYTES, readRingLayout, type RingNative, UringEngine } from "./io_uring.ts";
import type { Uring } from "./types.ts";

type BunFfi = typeof import("bun:ffi");

/**
 * How completions are noticed while ops are in flight (nothing runs while none are):
 * - `"eventfd"` (default): an eventfd registered with `io_uring_register_eventfd`, read with the
 *   async `node:fs.read` (a Bun thread-pool thread blocks in `read(2)` while ops are in flight);
 *   each wake-up reaps the CQ.
 * - `"spin"`: `setImmediate` polling of the CQ tail (an `Atomics.load`, no FFI call).
 * - `"timer"`: `setTimeout(1)` polling.
 *
 * Measured with `bench/io_uring_probe.ts` (1000 sequential 100 B write + fdatasync ops, noisy
 * 2-core VM, two runs): eventfd p50 84–104 µs, 91–116 µs CPU per op; spin p50 61–80 µs but p99
 * 4–8 ms and 210–280 µs CPU per op (it keeps a core busy and starves the loop); timer p50
 * 1100 µs. So eventfd: close to the spin latency at half its CPU, without its tail.
 */
export type CompletionStrategy = "eventfd" | "spin" | "timer";

/** Options of {@linkcode openUringWith}. */
export interface BunUringOptions {
  completion?: CompletionStrategy;
}

/** Opens an io_uring through liburing.so.2 under Bun, or says why it cannot. */
export function openUring(entries: number): { uring?: Uring; reason?: string } {
  return openUringWith(entries, {});
}

/** {@linkcode openUring} with a chosen completion strategy (for `bench/io_uring_probe.ts`). */
export function openUringWith(
  entries: number,
  options: BunUringOptions,
): { uring?: Uring; reason?: string } {
  const completion = options.completion ?? "eventfd";
  if (!Number.isInteger(entries) || entries < 1 || entries > 4096) {
    return { reason: `io_uring needs 1 to 4096 entries, got ${entries}` };
  }
  let ffi: BunFfi;
  try {
    ffi = createRequire(import.meta.url)("bun:ffi") as BunFfi;
  } catch (error) {
    return { reason: `bun:ffi is not available: ${String(error)}` };
  }
  const { FFIType } = ffi;
  let lib;
  try {
    lib = ffi.dlopen("liburing.so.2", {
      io_uring_queue_init: { args: [FFIType.u32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
      io_uring_queue_exit: { args: [FFIType.ptr], returns: FFIType.void },
      io_uring_get_sqe: { args: [FFIType.ptr], returns: FFIType.ptr },
      io_uring_submit: { args: [FFIType.ptr], returns: FFIType.i32 },
      io_uring_register_eventfd: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.i32 },
    });
  } catch (error) {
    return { reason: `Cannot load liburing.so.2: ${(error as Error).message}` };
  }
  const u = lib.symbols;

  // The struct io_uring lives in JS memory: `native.owned` below keeps it referenced for as long
  // as the engine lives (the pointer number alone would not). A plain ArrayBuffer's store is
  // malloc'd and never moved by JSC's non-moving collector, so its address is stable.
  const ringStruct = new ArrayBuffer(IO_URING_STRUCT_BYTES);
  // SAFETY: ringStruct is a live 216-byte ArrayBuffer = sizeof(struct io_uring) in liburing 2.3.
  const ringPtr = ffi.ptr(ringStruct);
  // SAFETY: ringPtr points at 216 writable bytes; queue_init writes only struct io_uring.
  const ret = u.io_uring_queue_init(entries, ringPtr, 0);
  if (ret < 0) {
    lib.close();
    return {
      reason: `io_uring_queue_init(${entries}) failed with errno ${-ret}` +
        " (io_uring disabled or not permitted here?)",
    };
  }
  const layout = readRingLayout(new DataView(ringStruct));
  if (typeof layout === "string") {
    // SAFETY: the ring was initialised just above; exit unmaps it once and we never use it again.
    u.io_uring_queue_exit(ringPtr);
    lib.close();
    return { reason: layout };
  }

  // SAFETY: sq.sqes points at the SQE array mapped by queue_init: sqEntries × 64 bytes, mapped
  // until io_uring_queue_exit (teardown below, after which this view is detached).
  const sqesBuffer = ffi.toArrayBuffer(Number(layout.sqesAddr), 0, layout.sqesBytes);
  // SAFETY: cq.ring_ptr/cq.ring_sz describe the CQ ring mapping (head, tail, CQEs inside it, as
  // readRingLayout checked), mapped until io_uring_queue_exit; detached at teardown.
  const cqBuffer = ffi.toArrayBuffer(Number(layout.cqRingAddr), 0, layout.cqRingBytes);
  const sqesBase = Number(layout.sqesAddr);

  const native: RingNative = {
    owned: [ringStruct],
    sqEntries: layout.sqEntries,
    sqes: new DataView(sqesBuffer),
    cqWords: new Uint32Array(cqBuffer),
    cqBytes: new DataView(cqBuffer),
    cqHeadIndex: layout.cqHeadOffset / 4,
    cqTailIndex: layout.cqTailOffset / 4,
    cqesOffset: layout.cqesOffset,
    cqMask: layout.cqMask,
    getSqe() {
      // SAFETY: ringPtr is the live, initialised struct io_uring (the engine stops calling after
      // teardown); the result is NULL or an SQE inside the sqes array viewed by sqesBuffer.
      const sqe = u.io_uring_get_sqe(ringPtr);
      return sqe === null || sqe === 0 ? -1 : Number(sqe) - sqesBase;
    },
    submit() {
      // SAFETY: ringPtr is the live, initialised struct io_uring; every SQE we reserved is filled.
      return u.io_uring_submit(ringPtr);
    },
    addressOf(bytes) {
      // SAFETY: bytes is a live, non-empty Uint8Array; JSC does not move typed-array stores, and
      // the engine keeps bytes referenced until the kernel completed every SQE that points in it.
      return ffi.ptr(bytes);
    },
  };

  let watcher: Watcher;
  const engine = new UringEngine(native, {
    startWatching: () => watcher.start(),
    teardown() {
      watcher.dispose();
      sqesBuffer.transfer(0); // detach: no view can reach the SQEs after they are unmapped
      cqBuffer.transfer(0);
      // SAFETY: called once, after the last CQE was reaped and with no watcher running; nothing
      // uses ringPtr after this, and ringStruct stays referenced by this closure until now.
      u.io_uring_queue_exit(ringPtr);
      lib.close();
    },
  });

  try {
    watcher = makeWatcher(completion, engine, ffi, ringPtr, u.io_uring_register_eventfd);
  } catch (error) {
    engine.close(); // nothing in flight: tears down at once
    return { reason: (error as Error).message };
  }
  return { uring: engine };
}

interface Watcher {
  start(): void;
  dispose(): void;
}

function makeWatcher(
  completion: CompletionStrategy,
  engine: UringEngine,
  ffi: BunFfi,
  ringPtr: number,
  registerEventfd: (ring: number, fd: number) => number,
): Watcher {
  if (completion === "spin") {
    const tick = () => {
      if (engine.reap()) setImmediate(tick);
    };
    return { start: () => setImmediate(tick), dispose() {} };
  }
  if (completion === "timer") {
    const tick = () => {
      if (engine.reap()) setTimeout(tick, 1);
    };
    return { start: () => setTimeout(tick, 1), dispose() {} };
  }
  return eventfdWatcher(engine, ffi, ringPtr, registerEventfd);
}

/** eventfd(2) flags. */
const EFD_CLOEXEC = 0o2000000;

function eventfdWatcher(
  engine: UringEngine,
  ffi: BunFfi,
  ringPtr: number,
  registerEventfd: (ring: number, fd: number) => number,
): Watcher {
  const libc = ffi.dlopen("libc.so.6", {
    eventfd: { args: [ffi.FFIType.u32, ffi.FFIType.i32], returns: ffi.FFIType.i32 },
  });
  // SAFETY: eventfd takes two integers and returns a new fd (or −1); no pointer involved.
  const efd = libc.symbols.eventfd(0, EFD_CLOEXEC);
  libc.close();
  if (efd < 0) throw new Error("io_uring completion watcher: eventfd(2) failed");
  // SAFETY: ringPtr is the live, initialised struct io_uring; efd is the eventfd just created.
  const ret = registerEventfd(ringPtr, efd);
  if (ret < 0) {
    closeSync(efd);
    throw new Error(`io_uring_register_eventfd failed with errno ${-ret}`);
  }
  const counter = new Uint8Array(8);
  let reading = false;
  let disposed = false;
  const onRead = (error: (Error & { code?: string }) | null) => {
    reading = false;
    if (disposed) {
      closeSync(efd);
      return;
    }
    if (error && error.code !== "EINTR" && error.code !== "EAGAIN") {
      // Should not happen; fall back to polling so no op is stranded.
      const tick = () => {
        if (engine.reap()) setTimeout(tick, 1);
      };
      tick();
      return;
    }
    if (engine.reap()) startRead();
  };
  const startRead = () => {
    reading = true;
    // Blocks a thread-pool thread in read(2) until the kernel signals a completion.
    read(efd, counter, 0, 8, null, onRead);
  };
  return {
    start: startRead,
    dispose() {
      // Teardown runs only once reap() returned false, so no read is normally in flight; if one
      // is, wake it (the eventfd counter) and close the fd from its callback.
      disposed = true;
      if (reading) writeSync(efd, new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]));
      else closeSync(efd);
    },
  };
}
