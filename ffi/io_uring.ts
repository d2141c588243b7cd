/**
 * The runtime-neutral half of the io_uring backend: the liburing 2.3 `struct io_uring` layout,
 * the kernel's SQE/CQE layouts and constants, an SQE encoder and CQE decoder over plain
 * `DataView`s, and {@linkcode UringEngine}, the op state machine (`writeAndSync`, completion
 * matching by `user_data`, short writes, close) that `io_uring_bun.ts` and `io_uring_deno.ts`
 * drive. Nothing here loads FFI: the runtime files hand in views over the mapped rings and a few
 * calls ({@linkcode RingNative}).
 *
 * Sources of the numbers:
 * - SQE/CQE layouts, opcodes and flags: the kernel UAPI `<linux/io_uring.h>` (stable ABI).
 * - `struct io_uring` (216 bytes): liburing 2.3 `src/include/liburing.h` (`struct io_uring_sq`,
 *   `struct io_uring_cq`, `struct io_uring` on x86-64/LP64). Checked at run time by the runtime
 *   files (`checkRingLayout`): ring fd, ring sizes and mask/entries must agree with the kernel.
 *
 * @module
 */

import { ClosedError, InvalidArgumentError, IoError } from "../src/errors.ts";
import { errnoName } from "./errno.ts";
import type { Uring } from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Layouts

/** `sizeof(struct io_uring_sqe)` without `IORING_SETUP_SQE128`. */
export const SQE_BYTES = 64;
/** `sizeof(struct io_uring_cqe)` without `IORING_SETUP_CQE32`. */
export const CQE_BYTES = 16;

/** Byte offsets inside `struct io_uring_sqe` (kernel UAPI). */
export const SQE_OFFSET = {
  opcode: 0, // __u8
  flags: 1, // __u8 IOSQE_*
  ioprio: 2, // __u16
  fd: 4, // __s32
  off: 8, // __u64 file offset (union addr2)
  addr: 16, // __u64 buffer address (union splice_off_in)
  len: 24, // __u32 buffer length
  opFlags: 28, // __u32 union: rw_flags, fsync_flags, …
  userData: 32, // __u64, echoed in the CQE
  bufIndex: 40, // __u16 (union buf_group)
  personality: 42, // __u16
  fileIndex: 44, // __s32 (union splice_fd_in)
  addr3: 48, // __u64
  pad2: 56, // __u64
} as const;

/** Byte offsets inside `struct io_uring_cqe` (kernel UAPI). */
export const CQE_OFFSET = {
  userData: 0, // __u64
  res: 8, // __s32: result, or -errno
  flags: 12, // __u32
} as const;

/** `sizeof(struct io_uring)` in liburing 2.3 (x86-64): sq 104 + cq 88 + 24 bytes of tail fields. */
export const IO_URING_STRUCT_BYTES = 216;

/**
 * Byte offsets inside liburing 2.3's `struct io_uring` (x86-64): `sq` (`struct io_uring_sq`, 104
 * bytes: 8 pointers, `sqe_head`, `sqe_tail`, `ring_sz`, `ring_ptr`, `ring_mask`, `ring_entries`,
 * `pad[2]`), then `cq` (`struct io_uring_cq`, 88 bytes: 7 pointers, `ring_sz`, `ring_ptr`,
 * `ring_mask`, `ring_entries`, `pad[2]`), then `flags`, `ring_fd`, `features`, `enter_ring_fd`,
 * `int_flags`, `pad[3]`, `pad2`.
 */
export const RING_OFFSET = {
  sqKhead: 0, // unsigned *
  sqKtail: 8, // unsigned *
  sqKringMask: 16, // unsigned *
  sqKringEntries: 24, // unsigned *
  sqKflags: 32, // unsigned *
  sqKdropped: 40, // unsigned *
  sqArray: 48, // unsigned *
  sqSqes: 56, // struct io_uring_sqe *
  sqSqeHead: 64, // unsigned
  sqSqeTail: 68, // unsigned
  sqRingSz: 72, // size_t
  sqRingPtr: 80, // void *
  sqRingMask: 88, // unsigned
  sqRingEntries: 92, // unsigned
  cqKhead: 104, // unsigned *
  cqKtail: 112, // unsigned *
  cqKringMask: 120, // unsigned *
  cqKringEntries: 128, // unsigned *
  cqKflags: 136, // unsigned *
  cqKoverflow: 144, // unsigned *
  cqCqes: 152, // struct io_uring_cqe *
  cqRingSz: 160, // size_t
  cqRingPtr: 168, // void *
  cqRingMask: 176, // unsigned
  cqRingEntries: 180, // unsigned
  flags: 192, // unsigned: IORING_SETUP_* the ring was created with
  ringFd: 196, // int
  features: 200, // unsigned: IORING_FEAT_*
  enterRingFd: 204, // int
} as const;

// ---------------------------------------------------------------------------------------------
// Constants (kernel UAPI)

/** `IORING_OP_NOP`. */
export const IORING_OP_NOP = 0;
/** `IORING_OP_FSYNC`. */
export const IORING_OP_FSYNC = 3;
/** `IORING_OP_WRITE` (Linux 5.6). */
export const IORING_OP_WRITE = 23;
/** `IOSQE_IO_LINK`: the next SQE starts only after this one succeeds in full. */
export const IOSQE_IO_LINK = 1 << 2;
/** `IORING_FSYNC_DATASYNC`: fdatasync instead of fsync. */
export const IORING_FSYNC_DATASYNC = 1 << 0;
/** `IORING_ENTER_GETEVENTS`: `io_uring_enter` waits for `min_complete` completions. */
export const IORING_ENTER_GETEVENTS = 1 << 0;
/** `IORING_SETUP_SQPOLL`: not used; a ring with it would need SQ wake-ups. */
export const IORING_SETUP_SQPOLL = 1 << 1;
/** `IORING_SETUP_SQE128`: not used; SQEs would be 128 bytes. */
export const IORING_SETUP_SQE128 = 1 << 10;
/** `IORING_SETUP_CQE32`: not used; CQEs would be 32 bytes. */
export const IORING_SETUP_CQE32 = 1 << 11;
/** `IORING_FEAT_SINGLE_MMAP` (5.4): SQ and CQ rings share one mapping. */
export const IORING_FEAT_SINGLE_MMAP = 1 << 0;
/** `IORING_FEAT_NODROP` (5.5): the kernel keeps CQEs that do not fit instead of dropping them. */
export const IORING_FEAT_NODROP = 1 << 1;

/** errno numbers (Linux) after which a refused `io_uring_submit` is retried. */
const EINTR = 4;
const EAGAIN = 11;
const EBUSY = 16;

/**
 * What an SQE is for; stored in the high 32 bits of `user_data` (the op id is in the low 32), so
 * `user_data` is never `LIBURING_UDATA_TIMEOUT` (all ones), which liburing consumes itself.
 */
export const STEP_WRITE = 1;
/** The linked fsync/fdatasync of an op. */
export const STEP_SYNC = 2;
/** A NOP (never matched to an op). */
export const STEP_NOP = 3;

/**
 * Largest write submitted in one SQE. The kernel caps one write at `MAX_RW_COUNT` (2 GiB − 4 KiB)
 * and `len` is 32 bits; larger writes go in chunks (only the last one is linked to the sync).
 */
export const MAX_WRITE_CHUNK_BYTES = 1 << 30;

// ---------------------------------------------------------------------------------------------
// SQE encoder / CQE decoder (pure: they only touch the DataView they are given)

/** A 64-bit unsigned value given as a JS number (< 2^53) or a bigint. */
export type U64 = number | bigint;

function setU64(view: DataView, at: number, value: U64): void {
  if (typeof value === "bigint") {
    view.setBigUint64(at, value, true);
  } else {
    view.setUint32(at, value % 0x1_0000_0000, true);
    view.setUint32(at + 4, Math.floor(value / 0x1_0000_0000), true);
  }
}

function setUserData(view: DataView, at: number, opId: number, step: number): void {
  view.setUint32(at + SQE_OFFSET.userData, opId, true);
  view.setUint32(at + SQE_OFFSET.userData + 4, step, true);
}

/** Fields of an `IORING_OP_WRITE` SQE. */
export interface WriteSqe {
  fd: number;
  /** Address of the first byte to write. */
  addr: U64;
  len: number;
  /** File offset (never −1: that would mean "the current file position"). */
  offset: number;
  opId: number;
  /** Set `IOSQE_IO_LINK` so the next SQE (the sync) runs only if this write completes in full. */
  link: boolean;
}

/**
 * Fills the 64 bytes at `view[at…at+64)` as `io_uring_prep_write` + `IOSQE_IO_LINK` would: every
 * byte is written (the SQE slot is reused and liburing 2.3's `io_uring_get_sqe` does not clear it).
 */
export function encodeWriteSqe(view: DataView, at: number, sqe: WriteSqe): void {
  clearSqe(view, at);
  view.setUint8(at + SQE_OFFSET.opcode, IORING_OP_WRITE);
  view.setUint8(at + SQE_OFFSET.flags, sqe.link ? IOSQE_IO_LINK : 0);
  view.setInt32(at + SQE_OFFSET.fd, sqe.fd, true);
  setU64(view, at + SQE_OFFSET.off, sqe.offset);
  setU64(view, at + SQE_OFFSET.addr, sqe.addr);
  view.setUint32(at + SQE_OFFSET.len, sqe.len, true);
  setUserData(view, at, sqe.opId, STEP_WRITE);
}

/** Fills the 64 bytes at `view[at…at+64)` as `io_uring_prep_fsync(sqe, fd, datasync ? DATASYNC : 0)`. */
export function encodeFsyncSqe(
  view: DataView,
  at: number,
  sqe: { fd: number; datasync: boolean; opId: number },
): void {
  clearSqe(view, at);
  view.setUint8(at + SQE_OFFSET.opcode, IORING_OP_FSYNC);
  view.setInt32(at + SQE_OFFSET.fd, sqe.fd, true);
  view.setUint32(at + SQE_OFFSET.opFlags, sqe.datasync ? IORING_FSYNC_DATASYNC : 0, true);
  setUserData(view, at, sqe.opId, STEP_SYNC);
}

/** Fills the 64 bytes at `view[at…at+64)` as `io_uring_prep_nop`. */
export function encodeNopSqe(view: DataView, at: number, opId: number): void {
  clearSqe(view, at);
  view.setUint8(at + SQE_OFFSET.opcode, IORING_OP_NOP);
  setUserData(view, at, opId, STEP_NOP);
}

function clearSqe(view: DataView, at: number): void {
  for (let i = 0; i < SQE_BYTES; i += 8) view.setBigUint64(at + i, 0n, true);
}

/** A decoded CQE. */
export interface Cqe {
  opId: number;
  step: number;
  /** The result: bytes written, 0, or −errno. */
  res: number;
  flags: number;
}

/** Decodes the 16-byte CQE at `view[at…at+16)`. */
export function decodeCqe(view: DataView, at: number): Cqe {
  return {
    opId: view.getUint32(at + CQE_OFFSET.userData, true),
    step: view.getUint32(at + CQE_OFFSET.userData + 4, true),
    res: view.getInt32(at + CQE_OFFSET.res, true),
    flags: view.getUint32(at + CQE_OFFSET.flags, true),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading the ring struct

/** What the runtime files read out of an initialised `struct io_uring` (held in JS memory). */
export interface RingLayout {
  ringFd: number;
  setupFlags: number;
  features: number;
  sqEntries: number;
  /** Address of the SQE array (`sq.sqes`) and its length in bytes. */
  sqesAddr: bigint;
  sqesBytes: number;
  /** Address and length of the CQ ring mapping (`cq.ring_ptr`, `cq.ring_sz`). */
  cqRingAddr: bigint;
  cqRingBytes: number;
  cqEntries: number;
  cqMask: number;
  /** Byte offsets, inside the CQ ring mapping, of the kernel's head and tail and the CQE array. */
  cqHeadOffset: number;
  cqTailOffset: number;
  cqesOffset: number;
}

/**
 * Reads the fields the backend needs from an initialised `struct io_uring` and checks they are
 * coherent; returns a reason string when they are not (a different liburing layout).
 */
export function readRingLayout(ring: DataView): RingLayout | string {
  const u32 = (at: number) => ring.getUint32(at, true);
  const u64 = (at: number) => ring.getBigUint64(at, true);
  const cqRingAddr = u64(RING_OFFSET.cqRingPtr);
  const cqRingBytes = Number(u64(RING_OFFSET.cqRingSz));
  const sqEntries = u32(RING_OFFSET.sqRingEntries);
  const cqEntries = u32(RING_OFFSET.cqRingEntries);
  const cqMask = u32(RING_OFFSET.cqRingMask);
  const setupFlags = u32(RING_OFFSET.flags);
  const inRing = (addr: bigint) => Number(addr - cqRingAddr);
  const layout: RingLayout = {
    ringFd: ring.getInt32(RING_OFFSET.ringFd, true),
    setupFlags,
    features: u32(RING_OFFSET.features),
    sqEntries,
    sqesAddr: u64(RING_OFFSET.sqSqes),
    sqesBytes: sqEntries * SQE_BYTES,
    cqRingAddr,
    cqRingBytes,
    cqEntries,
    cqMask,
    cqHeadOffset: inRing(u64(RING_OFFSET.cqKhead)),
    cqTailOffset: inRing(u64(RING_OFFSET.cqKtail)),
    cqesOffset: inRing(u64(RING_OFFSET.cqCqes)),
  };
  const pow2 = (n: number) => n > 0 && (n & (n - 1)) === 0;
  const inside = (offset: number, bytes: number) =>
    offset >= 0 && offset % 4 === 0 && offset + bytes <= cqRingBytes;
  if (
    layout.ringFd < 0 || !pow2(sqEntries) || !pow2(cqEntries) || cqMask !== cqEntries - 1 ||
    cqEntries < sqEntries || layout.sqesAddr === 0n || cqRingAddr === 0n ||
    !inside(layout.cqHeadOffset, 4) || !inside(layout.cqTailOffset, 4) ||
    !inside(layout.cqesOffset, cqEntries * CQE_BYTES)
  ) {
    return "struct io_uring read back inconsistent values (not the liburing 2.3 layout this " +
      "backend was written for)";
  }
  if ((setupFlags & (IORING_SETUP_SQPOLL | IORING_SETUP_SQE128 | IORING_SETUP_CQE32)) !== 0) {
    return `io_uring ring has unsupported setup flags 0x${setupFlags.toString(16)}`;
  }
  return layout;
}

// ---------------------------------------------------------------------------------------------
// The engine

/** The runtime-specific calls and views {@linkcode UringEngine} needs. */
export interface RingNative {
  /**
   * JS memory the native side points into (the `struct io_uring` buffer). The engine holds this
   * for its whole life so the collector cannot free it while liburing still uses it: a raw
   * pointer number does not keep its buffer alive.
   */
  readonly owned: readonly object[];
  /** SQ ring size; the engine never has more SQEs in flight than this (so the CQ cannot overflow). */
  readonly sqEntries: number;
  /** Writable view over the SQE array (`sq.sqes`, `sqEntries × 64` bytes). */
  readonly sqes: DataView;
  /** View over the CQ ring mapping, for the head/tail words (index = byte offset / 4). */
  readonly cqWords: Uint32Array;
  /** View over the same mapping, for CQEs. */
  readonly cqBytes: DataView;
  readonly cqHeadIndex: number;
  readonly cqTailIndex: number;
  readonly cqesOffset: number;
  readonly cqMask: number;
  /** `io_uring_get_sqe`: the byte offset of the reserved SQE inside `sqes`, or −1 when full. */
  getSqe(): number;
  /** `io_uring_submit`: SQEs consumed by the kernel, or −errno. */
  submit(): number;
  /** Address of `bytes[0]` (stable while `bytes` is referenced). Only called when length > 0. */
  addressOf(bytes: Uint8Array): U64;
}

/** How the runtime file lets the engine's completions be noticed. */
export interface CompletionHooks {
  /**
   * Completions are now expected: start watching (poll, wait on another thread, eventfd, …) and
   * call {@linkcode UringEngine.reap} on every wake-up until it returns false. Called only when no
   * watcher is running.
   */
  startWatching(): void;
  /** The ring is closed and nothing is in flight in the kernel: `io_uring_queue_exit` now. */
  teardown(): void;
}

interface Op {
  id: number;
  fd: number;
  /** Referenced until the kernel has completed every SQE pointing into it. */
  bytes: Uint8Array;
  position: number;
  sync: "none" | "data" | "full";
  written: number;
  /** Length of the write in flight. */
  chunk: number;
  cqesPending: number;
  writeRes: number;
  syncRes: number;
  /** True once the promise is settled (by completion or by close). */
  settled: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

const SYNC_MODES = new Set(["none", "data", "full"]);

/**
 * The op state machine behind a {@linkcode Uring}. It fills SQEs through {@linkcode RingNative},
 * submits without waiting, and settles ops when the runtime's watcher calls {@linkcode reap}.
 *
 * Threading: every method runs on the JS thread. The engine reads and writes the SQ side only
 * through liburing (`io_uring_get_sqe`, `io_uring_submit`) and the CQ side only in `reap` (load
 * tail, read CQEs, store head). A runtime may block in `io_uring_enter(GETEVENTS)` on another
 * thread meanwhile: that touches no ring memory in user space.
 *
 * Short writes are completed, not reported: the link breaks (the sync CQE is `-ECANCELED`), and
 * the rest is resubmitted with its sync, until it is all written or the kernel returns an error
 * (`ENOSPC`, `EFBIG`, …), which rejects. A write that makes no progress rejects with `EIO`.
 */
export class UringEngine implements Uring {
  readonly #native: RingNative;
  readonly #hooks: CompletionHooks;
  readonly #capacity: number;
  /** Ops waiting for SQ room, in call order (short-write resubmissions go first). */
  #queue: Op[] = [];
  /** Ops with SQEs in the kernel, by id. */
  readonly #inFlight = new Map<number, Op>();
  /** SQEs handed out and not yet completed (≤ capacity). */
  #sqesInFlight = 0;
  /** SQEs placed in the SQ ring that the kernel has not consumed (a failed or partial submit). */
  #unsubmitted = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #nextId = 1;
  #watching = false;
  #closed = false;
  #tornDown = false;

  constructor(native: RingNative, hooks: CompletionHooks) {
    this.#native = native;
    this.#hooks = hooks;
    this.#capacity = native.sqEntries;
  }

  /** SQEs the kernel has not completed yet. */
  get sqesInFlight(): number {
    return this.#sqesInFlight;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  writeAndSync(
    fd: number,
    bytes: Uint8Array,
    positionBytes: number,
    sync: "none" | "data" | "full",
  ): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new ClosedError("Cannot write through io_uring: the ring is closed"));
    }
    if (!Number.isInteger(fd) || fd < -0x8000_0000 || fd > 0x7fff_ffff) {
      return Promise.reject(
        new InvalidArgumentError(`Cannot write through io_uring: bad fd ${fd}`),
      );
    }
    if (!(bytes instanceof Uint8Array)) {
      return Promise.reject(
        new InvalidArgumentError("Cannot write through io_uring: bytes must be a Uint8Array"),
      );
    }
    if (!Number.isSafeInteger(positionBytes) || positionBytes < 0) {
      return Promise.reject(
        new InvalidArgumentError(
          `Cannot write through io_uring: position ${positionBytes} is not a non-negative integer`,
        ),
      );
    }
    if (!SYNC_MODES.has(sync)) {
      return Promise.reject(
        new InvalidArgumentError(
          `Cannot write through io_uring: unknown sync mode ${String(sync)}`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const op: Op = {
        id: this.#allocateId(),
        fd,
        bytes,
        position: positionBytes,
        sync,
        written: 0,
        chunk: 0,
        cqesPending: 0,
        writeRes: 0,
        syncRes: 0,
        settled: false,
        resolve,
        reject,
      };
      this.#queue.push(op);
      this.#pump();
    });
  }

  /**
   * Rejects every pending op with `ClosedError` and refuses new ones. `io_uring_queue_exit` runs
   * now if the kernel holds no SQE of ours, else as soon as the watcher has reaped the last one:
   * until then the written buffers stay referenced (the kernel may still read them) and no thread
   * is left waiting on an unmapped ring. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const error = () => new ClosedError("Cannot complete io_uring write: the ring was closed");
    for (const op of this.#queue) this.#settle(op, error());
    this.#queue = [];
    for (const op of this.#inFlight.values()) this.#settle(op, error());
    // SQEs the kernel never consumed will never complete: nothing submits after close, and the
    // kernel drops them at exit. (They only exist after a refused submit.)
    this.#sqesInFlight -= this.#unsubmitted;
    this.#unsubmitted = 0;
    this.#maybeTeardown();
  }

  /**
   * Consumes every available CQE, settles finished ops, submits queued ones. Returns true while
   * completions are still expected (keep watching), false once the watcher may stop (and then,
   * if closed, the ring has been torn down). Runtime watchers call this on the JS thread only.
   */
  reap(): boolean {
    // SAFETY (every access to cqWords/cqBytes below): they view the CQ ring mapping, which stays
    // mapped until teardown, and teardown happens only after this returns false (then never
    // again: #tornDown). Head, tail and CQE offsets were checked to lie inside the mapping.
    if (this.#tornDown) return false;
    const n = this.#native;
    const words = n.cqWords;
    // Plain read: only this thread writes the head.
    let head = words[n.cqHeadIndex];
    // Acquire: the kernel writes a CQE before it publishes the tail past it.
    const tail = Atomics.load(words, n.cqTailIndex);
    if (head !== tail) {
      const finished: Op[] = [];
      while (head !== tail) {
        const at = n.cqesOffset + (head & n.cqMask) * CQE_BYTES;
        const opId = n.cqBytes.getUint32(at + CQE_OFFSET.userData, true);
        const step = n.cqBytes.getUint32(at + CQE_OFFSET.userData + 4, true);
        const res = n.cqBytes.getInt32(at + CQE_OFFSET.res, true);
        head = (head + 1) >>> 0;
        this.#sqesInFlight--;
        const op = this.#inFlight.get(opId);
        if (op === undefined || step === STEP_NOP) continue;
        if (step === STEP_WRITE) op.writeRes = res;
        else op.syncRes = res;
        if (--op.cqesPending === 0) {
          this.#inFlight.delete(opId);
          finished.push(op);
        }
      }
      // Release: the CQEs are read before the kernel may reuse their slots.
      Atomics.store(words, n.cqHeadIndex, head);
      for (const op of finished) this.#finish(op);
      this.#pump();
    }
    if (this.#inKernel() > 0) return true;
    this.#watching = false;
    this.#maybeTeardown();
    return false;
  }

  /** SQEs the kernel consumed and has not completed: only these can wake a watcher. */
  #inKernel(): number {
    return this.#sqesInFlight - this.#unsubmitted;
  }

  #ensureWatching(): void {
    if (this.#watching || this.#closed || this.#inKernel() === 0) return;
    this.#watching = true;
    this.#hooks.startWatching();
  }

  #allocateId(): number {
    // Ids are 32-bit and skip 0; an id is reused only after 2^32 − 1 later ops, by which time the
    // op holding it long completed (at most `capacity` ops are in flight).
    const id = this.#nextId;
    this.#nextId = id === 0xffff_ffff ? 1 : id + 1;
    return id;
  }

  #finish(op: Op): void {
    if (op.settled) return; // closed meanwhile: nothing more to do, the buffer is released now
    if (op.writeRes < 0) {
      this.#settle(op, new IoError("io_uring write", errnoName(-op.writeRes)));
      return;
    }
    if (op.writeRes === 0 && op.chunk > 0) {
      this.#settle(op, new IoError("io_uring write", "EIO")); // no progress: never loop on it
      return;
    }
    op.written += op.writeRes;
    if (op.written < op.bytes.length) {
      this.#queue.unshift(op); // short write or next chunk: the rest goes first
      return;
    }
    if (op.sync !== "none" && op.syncRes < 0) {
      this.#settle(op, new IoError("io_uring fsync", errnoName(-op.syncRes)));
      return;
    }
    this.#settle(op);
  }

  #settle(op: Op, error?: Error): void {
    if (op.settled) return;
    op.settled = true;
    if (error) op.reject(error);
    else op.resolve();
  }

  /** Moves queued ops into SQEs while there is room, then submits them (never waits). */
  #pump(): void {
    if (this.#closed) return;
    const n = this.#native;
    let placed = 0;
    while (this.#queue.length > 0) {
      const op = this.#queue[0];
      const remaining = op.bytes.length - op.written;
      const chunk = Math.min(remaining, MAX_WRITE_CHUNK_BYTES);
      const last = chunk === remaining;
      const withSync = last && op.sync !== "none";
      const need = withSync ? 2 : 1;
      if (this.#sqesInFlight + need > this.#capacity) break;
      const writeAt = n.getSqe();
      if (writeAt < 0) break;
      const syncAt = withSync ? n.getSqe() : -1;
      this.#sqesInFlight += need;
      placed += need;
      if (withSync && syncAt < 0) {
        // Cannot happen (room was checked); the reserved slot must still be filled and submitted.
        encodeNopSqe(n.sqes, writeAt, 0);
        this.#sqesInFlight -= 1;
        placed -= 1;
        break;
      }
      // SAFETY (the SQE writes below): writeAt/syncAt come from io_uring_get_sqe, so each is a
      // reserved 64-byte slot inside the mapped SQE array that n.sqes views (not torn down: the
      // engine is open). The write SQE's addr/len cover bytes[written, written + chunk), inside
      // `bytes`, which stays referenced in #inFlight until both CQEs are reaped.
      this.#queue.shift();
      op.chunk = chunk;
      op.writeRes = 0;
      op.syncRes = 0;
      op.cqesPending = need;
      encodeWriteSqe(n.sqes, writeAt, {
        fd: op.fd,
        // An empty write points nowhere; the kernel reads no byte of it.
        addr: chunk > 0 ? addressAt(n, op.bytes, op.written) : 0,
        len: chunk,
        offset: op.position + op.written,
        opId: op.id,
        link: withSync,
      });
      if (withSync) {
        encodeFsyncSqe(n.sqes, syncAt, { fd: op.fd, datasync: op.sync === "data", opId: op.id });
      }
      this.#inFlight.set(op.id, op);
    }
    if (placed > 0) this.#unsubmitted += placed;
    if (this.#unsubmitted > 0) this.#submit();
  }

  #submit(): void {
    const ret = this.#native.submit();
    if (ret >= 0) {
      this.#unsubmitted = Math.max(0, this.#unsubmitted - ret);
      if (this.#unsubmitted > 0) this.#scheduleRetry();
      this.#ensureWatching();
      return;
    }
    const errno = -ret;
    if (errno === EAGAIN || errno === EBUSY || errno === EINTR) {
      this.#scheduleRetry(); // the SQEs stay in the SQ ring; the next submit includes them
      return;
    }
    // The ring refuses submissions: fail everything and close it.
    const failure = () => new IoError("io_uring submit", errnoName(errno));
    for (const op of this.#queue) this.#settle(op, failure());
    this.#queue = [];
    for (const op of this.#inFlight.values()) this.#settle(op, failure());
    this.close();
  }

  #scheduleRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#closed && this.#unsubmitted > 0) this.#submit();
    }, 1);
  }

  #maybeTeardown(): void {
    // A watcher still running (e.g. a thread blocked in io_uring_enter) must come back first.
    if (!this.#closed || this.#tornDown || this.#watching || this.#sqesInFlight > 0) return;
    this.#tornDown = true;
    this.#hooks.teardown();
  }
}

function addressAt(native: RingNative, bytes: Uint8Array, offset: number): U64 {
  // SAFETY: offset < bytes.length (the caller writes a non-empty chunk from it), so the address
  // stays inside bytes' store.
  const base = native.addressOf(bytes);
  return typeof base === "bigint" ? base + BigInt(offset) : base + offset;
}
