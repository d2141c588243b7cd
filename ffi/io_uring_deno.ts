/**
 * io_uring through liburing.so.2 under Deno (`Deno.dlopen`).
 *
 * Completions are awaited with `io_uring_enter(ring_fd, 0, 1, IORING_ENTER_GETEVENTS, NULL)`
 * declared `nonblocking: true`: it blocks a Deno FFI worker thread, not the JS thread, and its
 * Promise resolves once at least one CQE is in the CQ ring (or on EINTR). One such wait is in
 * flight at a time, and only while the kernel holds SQEs of ours.
 *
 * Why the JS thread may submit while that wait is in flight: liburing's `io_uring_enter` is the
 * bare syscall (it returns −errno; it reads and writes no ring memory in user space), so the
 * waiting thread touches neither the SQ nor the CQ. The JS thread alone fills SQEs and calls
 * `io_uring_submit` (SQ side), and alone reads CQEs and advances the CQ head (in `reap`, which
 * runs after the wait resolved). The kernel allows one thread to submit while another waits in
 * `io_uring_enter` on the same (non-`DEFER_TASKRUN`) ring. `io_uring_queue_exit` runs only when
 * no wait is in flight, so the worker thread never enters a ring that is gone.
 *
 * @module
 */

import {
  IO_URING_STRUCT_BYTES,
  IORING_ENTER_GETEVENTS,
  readRingLayout,
  UringEngine,
} from "./io_uring.ts";
import type { RingNative } from "./io_uring.ts";
import type { Uring } from "./types.ts";

const EINTR = 4;

const SYMBOLS = {
  io_uring_queue_init: { parameters: ["u32", "buffer", "u32"], result: "i32" },
  io_uring_queue_exit: { parameters: ["buffer"], result: "void" },
  io_uring_get_sqe: { parameters: ["buffer"], result: "pointer" },
  io_uring_submit: { parameters: ["buffer"], result: "i32" },
  io_uring_enter: {
    parameters: ["u32", "u32", "u32", "u32", "pointer"],
    result: "i32",
    nonblocking: true,
  },
} as const;

/** Opens an io_uring through liburing.so.2 under Deno, or says why it cannot. */
export function openUring(entries: number): { uring?: Uring; reason?: string } {
  if (!Number.isInteger(entries) || entries < 1 || entries > 4096) {
    return { reason: `io_uring needs 1 to 4096 entries, got ${entries}` };
  }
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("liburing.so.2", SYMBOLS);
  } catch (error) {
    return { reason: `Cannot load liburing.so.2: ${(error as Error).message}` };
  }
  const u = lib.symbols;

  // The struct io_uring lives in JS memory, kept referenced by `native.owned` (and the closures
  // that pass it) for as long as the engine lives.
  // A Uint8Array over an ArrayBuffer made with `new ArrayBuffer` has an off-heap backing store
  // that V8 never moves (only small typed arrays made directly can live on the V8 heap).
  const ring = new Uint8Array(new ArrayBuffer(IO_URING_STRUCT_BYTES));
  // SAFETY: ring is a live 216-byte buffer = sizeof(struct io_uring) in liburing 2.3.
  const ret = u.io_uring_queue_init(entries, ring, 0);
  if (ret < 0) {
    lib.close();
    return {
      reason: `io_uring_queue_init(${entries}) failed with errno ${-ret}` +
        " (io_uring disabled or not permitted here?)",
    };
  }
  const layout = readRingLayout(new DataView(ring.buffer));
  if (typeof layout === "string") {
    // SAFETY: the ring was initialised just above; exit unmaps it once and it is never used again.
    u.io_uring_queue_exit(ring);
    lib.close();
    return { reason: layout };
  }

  // SAFETY: sq.sqes is the SQE array mapped by queue_init, sqEntries × 64 bytes, mapped until
  // io_uring_queue_exit (teardown below, which detaches this buffer first).
  const sqesPtr = Deno.UnsafePointer.create(layout.sqesAddr);
  // SAFETY: sqesPtr and layout.sqesBytes describe exactly the mapped SQE array (see above).
  const sqesBuffer = Deno.UnsafePointerView.getArrayBuffer(sqesPtr!, layout.sqesBytes);
  // SAFETY: cq.ring_ptr/cq.ring_sz describe the CQ ring mapping (head, tail and CQEs inside it,
  // as readRingLayout checked), mapped until io_uring_queue_exit; detached at teardown.
  const cqPtr = Deno.UnsafePointer.create(layout.cqRingAddr);
  // SAFETY: cqPtr and layout.cqRingBytes describe exactly the CQ ring mapping (see above).
  const cqBuffer = Deno.UnsafePointerView.getArrayBuffer(cqPtr!, layout.cqRingBytes);
  const sqesBase = layout.sqesAddr;

  const native: RingNative = {
    owned: [ring],
    sqEntries: layout.sqEntries,
    sqes: new DataView(sqesBuffer),
    cqWords: new Uint32Array(cqBuffer),
    cqBytes: new DataView(cqBuffer),
    cqHeadIndex: layout.cqHeadOffset / 4,
    cqTailIndex: layout.cqTailOffset / 4,
    cqesOffset: layout.cqesOffset,
    cqMask: layout.cqMask,
    getSqe() {
      // SAFETY: ring is the live, initialised struct io_uring (the engine stops calling after
      // teardown); the result is NULL or an SQE inside the array sqesBuffer views.
      const sqe = u.io_uring_get_sqe(ring);
      if (sqe === null) return -1;
      // SAFETY: only the address value is read (to find the slot in sqesBuffer), not memory.
      return Number(BigInt(Deno.UnsafePointer.value(sqe)) - sqesBase);
    },
    submit() {
      // SAFETY: ring is the live, initialised struct io_uring; every reserved SQE is filled.
      return u.io_uring_submit(ring);
    },
    addressOf(bytes) {
      // Reading `.buffer` moves a small on-heap typed array's bytes off the V8 heap, where they
      // never move; the engine keeps `bytes` referenced until the kernel is done with them.
      void bytes.buffer;
      // SAFETY: bytes is a live, non-empty Uint8Array with an off-heap store (see above); the
      // pointer is the address of bytes[0] (byteOffset included).
      const p = Deno.UnsafePointer.of(bytes);
      // SAFETY: only the address value is taken, to put in the SQE's addr field.
      return BigInt(Deno.UnsafePointer.value(p));
    },
  };

  const engine = new UringEngine(native, {
    startWatching() {
      void watch();
    },
    teardown() {
      sqesBuffer.transfer(0); // detach: no view can reach the SQEs after they are unmapped
      cqBuffer.transfer(0);
      // SAFETY: called once, after the last CQE was reaped and with no io_uring_enter wait in
      // flight (the engine tears down only when its watcher stopped); ring is still referenced.
      u.io_uring_queue_exit(ring);
      lib.close();
    },
  });

  const watch = async () => {
    do {
      // Blocks a worker thread until the kernel has ≥ 1 CQE; the result (a count or −errno,
      // e.g. −EINTR) does not matter: reap() reads the CQ ring either way.
      // SAFETY: plain integers and a NULL sigmask; ring_fd stays open until teardown, which
      // cannot run while this wait is in flight.
      const ret = await u.io_uring_enter(layout.ringFd, 0, 1, IORING_ENTER_GETEVENTS, null);
      if (ret < 0 && ret !== -EINTR) {
        // Not expected while the ring is open; back off instead of spinning on the error.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    } while (engine.reap());
  };

  return { uring: engine };
}
