// The io_uring backend: the pure SQE/CQE codec and op state machine (ffi/io_uring.ts, with a fake
// ring), then the real ring of the runtime running the tests (skipped, with the reason, when
// liburing.so.2 or io_uring is unavailable).
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CQE_BYTES,
  decodeCqe,
  encodeFsyncSqe,
  encodeWriteSqe,
  IORING_FSYNC_DATASYNC,
  IORING_OP_FSYNC,
  IORING_OP_WRITE,
  IOSQE_IO_LINK,
  type RingNative,
  SQE_BYTES,
  STEP_SYNC,
  STEP_WRITE,
  UringEngine,
} from "../ffi/io_uring.ts";
import type { Uring } from "../ffi/types.ts";

// ------------------------------------------------------------------------------------------------
// Pure codec

test("encodeWriteSqe and encodeFsyncSqe put every field at its kernel offset", () => {
  const view = new DataView(new ArrayBuffer(2 * SQE_BYTES));
  new Uint8Array(view.buffer).fill(0xee); // stale bytes from an earlier use of the slot
  const addr = 0x7f12_3456_7890; // > 2^32: both halves matter
  const offset = 5 * 2 ** 32 + 12_345;
  encodeWriteSqe(view, 0, { fd: 7, addr, len: 12_800, offset, opId: 0xdead_beef, link: true });
  encodeFsyncSqe(view, SQE_BYTES, { fd: 7, datasync: true, opId: 0xdead_beef });

  assert.equal(view.getUint8(0), IORING_OP_WRITE);
  assert.equal(IORING_OP_WRITE, 23);
  assert.equal(view.getUint8(1), IOSQE_IO_LINK);
  assert.equal(IOSQE_IO_LINK, 4);
  assert.equal(view.getUint16(2, true), 0); // ioprio
  assert.equal(view.getInt32(4, true), 7); // fd
  assert.equal(view.getBigUint64(8, true), BigInt(offset)); // off
  assert.equal(view.getBigUint64(16, true), BigInt(addr)); // addr
  assert.equal(view.getUint32(24, true), 12_800); // len
  assert.equal(view.getUint32(28, true), 0); // rw_flags
  assert.equal(view.getUint32(32, true), 0xdead_beef); // user_data low: op id
  assert.equal(view.getUint32(36, true), STEP_WRITE); // user_data high: step
  for (let i = 40; i < 64; i++) assert.equal(view.getUint8(i), 0, `write SQE byte ${i}`);

  const f = SQE_BYTES;
  assert.equal(view.getUint8(f), IORING_OP_FSYNC);
  assert.equal(IORING_OP_FSYNC, 3);
  assert.equal(view.getUint8(f + 1), 0); // last of the chain: no link flag
  assert.equal(view.getInt32(f + 4, true), 7);
  assert.equal(view.getBigUint64(f + 8, true), 0n);
  assert.equal(view.getBigUint64(f + 16, true), 0n);
  assert.equal(view.getUint32(f + 24, true), 0);
  assert.equal(view.getUint32(f + 28, true), IORING_FSYNC_DATASYNC); // fsync_flags
  assert.equal(IORING_FSYNC_DATASYNC, 1);
  assert.equal(view.getUint32(f + 32, true), 0xdead_beef);
  assert.equal(view.getUint32(f + 36, true), STEP_SYNC);
  for (let i = 40; i < 64; i++) assert.equal(view.getUint8(f + i), 0, `fsync SQE byte ${i}`);

  encodeFsyncSqe(view, f, { fd: 3, datasync: false, opId: 1 });
  assert.equal(view.getUint32(f + 28, true), 0, "full sync is a plain fsync");
  encodeWriteSqe(view, 0, { fd: 3, addr: 16n, len: 1, offset: 0, opId: 2, link: false });
  assert.equal(view.getUint8(1), 0, "no link when there is no sync");
  assert.equal(view.getBigUint64(16, true), 16n, "bigint addresses too");
});

test("decodeCqe reads user_data, a negative res and flags", () => {
  const view = new DataView(new ArrayBuffer(CQE_BYTES));
  view.setUint32(0, 42, true);
  view.setUint32(4, STEP_SYNC, true);
  view.setInt32(8, -9, true);
  view.setUint32(12, 2, true);
  assert.deepEqual(decodeCqe(view, 0), { opId: 42, step: STEP_SYNC, res: -9, flags: 2 });
});

// ------------------------------------------------------------------------------------------------
// The op state machine against a fake ring that executes SQEs in JS

interface SeenSqe {
  opcode: number;
  flags: number;
  len: number;
  off: number;
  addr: number;
  fsyncFlags: number;
}

/** A ring whose "kernel" runs `execute` on every submitted SQE and posts its result. */
function fakeRing(execute: (sqe: SeenSqe) => number) {
  const entries = 8;
  const sqes = new DataView(new ArrayBuffer(entries * SQE_BYTES));
  const cq = new ArrayBuffer(16 + 2 * entries * CQE_BYTES);
  const cqWords = new Uint32Array(cq);
  const cqBytes = new DataView(cq);
  const reserved: number[] = [];
  let next = 0;
  const seen: SeenSqe[] = [];
  const native: RingNative = {
    owned: [],
    sqEntries: entries,
    sqes,
    cqWords,
    cqBytes,
    cqHeadIndex: 0,
    cqTailIndex: 1,
    cqesOffset: 16,
    cqMask: 2 * entries - 1,
    getSqe() {
      const at = (next++ % entries) * SQE_BYTES;
      reserved.push(at);
      return at;
    },
    submit() {
      let linkBroken = false;
      const count = reserved.length;
      for (const at of reserved.splice(0)) {
        const sqe: SeenSqe = {
          opcode: sqes.getUint8(at),
          flags: sqes.getUint8(at + 1),
          len: sqes.getUint32(at + 24, true),
          off: Number(sqes.getBigUint64(at + 8, true)),
          addr: Number(sqes.getBigUint64(at + 16, true)),
          fsyncFlags: sqes.getUint32(at + 28, true),
        };
        seen.push(sqe);
        let res: number = linkBroken ? -125 : execute(sqe); // ECANCELED after a failed link
        linkBroken = (sqe.flags & IOSQE_IO_LINK) !== 0 &&
          (res < 0 || (sqe.opcode === IORING_OP_WRITE && res < sqe.len));
        if (sqe.opcode !== IORING_OP_WRITE && sqe.opcode !== IORING_OP_FSYNC) res = -22;
        const tail = cqWords[1];
        const c = 16 + (tail & (2 * entries - 1)) * CQE_BYTES;
        cqBytes.setUint32(c, sqes.getUint32(at + 32, true), true);
        cqBytes.setUint32(c + 4, sqes.getUint32(at + 36, true), true);
        cqBytes.setInt32(c + 8, res, true);
        Atomics.store(cqWords, 1, tail + 1);
      }
      return count;
    },
    addressOf: () => 0x1000,
  };
  let tornDown = 0;
  const engine = new UringEngine(native, {
    startWatching() {
      const tick = () => {
        if (engine.reap()) setTimeout(tick, 0);
      };
      setTimeout(tick, 0);
    },
    teardown: () => tornDown++,
  });
  return { engine, seen, tornDown: () => tornDown };
}

test("engine: a short write is completed by resubmitting the rest with its sync", async () => {
  const ring = fakeRing((sqe) => (sqe.opcode === IORING_OP_WRITE ? Math.min(sqe.len, 4) : 0));
  await ring.engine.writeAndSync(5, new Uint8Array(10), 100, "data");
  const writes = ring.seen.filter((s) => s.opcode === IORING_OP_WRITE);
  assert.deepEqual(writes.map((s) => [s.len, s.off, s.addr - 0x1000]), [
    [10, 100, 0],
    [6, 104, 4],
    [2, 108, 8],
  ]);
  const syncs = ring.seen.filter((s) => s.opcode === IORING_OP_FSYNC);
  assert.equal(syncs.length, 3, "every round carries its linked fdatasync");
  assert.ok(syncs.every((s) => s.fsyncFlags === IORING_FSYNC_DATASYNC));
  assert.ok(writes.every((s) => s.flags === IOSQE_IO_LINK));
  ring.engine.close();
  assert.equal(ring.tornDown(), 1);
  ring.engine.close();
  assert.equal(ring.tornDown(), 1, "close is idempotent");
});

test("engine: errors name the failed step and the errno", async () => {
  const noSpace = fakeRing((sqe) => (sqe.opcode === IORING_OP_WRITE ? -28 : 0));
  await assert.rejects(noSpace.engine.writeAndSync(5, new Uint8Array(10), 0, "full"), {
    code: "ERR_IO",
    syscall: "io_uring write",
    errno: "ENOSPC",
  });
  const badSync = fakeRing((sqe) => (sqe.opcode === IORING_OP_WRITE ? sqe.len : -5));
  await assert.rejects(badSync.engine.writeAndSync(5, new Uint8Array(10), 0, "data"), {
    code: "ERR_IO",
    syscall: "io_uring fsync",
    errno: "EIO",
  });
  const stuck = fakeRing(() => 0);
  await assert.rejects(stuck.engine.writeAndSync(5, new Uint8Array(10), 0, "none"), {
    code: "ERR_IO",
    errno: "EIO",
  });
  await assert.rejects(noSpace.engine.writeAndSync(5, new Uint8Array(1), -1, "none"), {
    code: "ERR_INVALID_ARGUMENT",
  });
  for (const r of [noSpace, badSync, stuck]) r.engine.close();
});

test("engine: never more SQEs in flight than the ring has entries", async () => {
  let inFlightMax = 0;
  const ring = fakeRing((sqe) => (sqe.opcode === IORING_OP_WRITE ? sqe.len : 0));
  const ops = Array.from({ length: 20 }, (_, i) => {
    const p = ring.engine.writeAndSync(5, new Uint8Array(8), i * 8, "full");
    inFlightMax = Math.max(inFlightMax, ring.engine.sqesInFlight);
    return p;
  });
  await Promise.all(ops);
  assert.ok(inFlightMax <= 8, `at most 8 SQEs in flight, saw ${inFlightMax}`);
  assert.equal(ring.seen.length, 40);
  ring.engine.close();
});

// ------------------------------------------------------------------------------------------------
// The real ring of this runtime

type OpenUring = (entries: number) => { uring?: Uring; reason?: string };
const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
// A computed specifier: each runtime loads only its own backend (and tsc never follows Deno's).
const backend = isBun ? "../ffi/io_uring_bun.ts" : "../ffi/io_uring_deno.ts";
const { openUring } = (await import(backend)) as { openUring: OpenUring };

test("openUring returns a reason instead of throwing for a ring it cannot make", () => {
  for (const entries of [0, -1, 1.5, 1 << 20]) {
    const result = openUring(entries);
    assert.equal(result.uring, undefined);
    assert.match(result.reason ?? "", /entries/);
  }
});

const opened = openUring(64);
const skip = opened.reason === undefined ? false : `io_uring unavailable: ${opened.reason}`;
const uring = opened.uring!;
const dir = fs.mkdtempSync(join(tmpdir(), "hybridlog-uring-"));
after(() => {
  uring?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A preallocated file of `size` zero bytes, open read-write; closed by the caller. */
function fileOf(name: string, size: number): { fd: number; path: string } {
  const path = join(dir, name);
  const fd = fs.openSync(path, "w+");
  fs.ftruncateSync(fd, size);
  return { fd, path };
}

function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed) & 0xff;
  return bytes;
}

/**
 * How many io_uring instances this process has open (each is an fd). Listed by `ls` in a child
 * process because Deno refuses `/proc/self` to a test without `--allow-all`.
 */
function ringFdCount(): number {
  let listing: string;
  try {
    // stderr piped: ls's complaint about a vanished entry (below) is not test output.
    listing = execFileSync("ls", ["-l", `/proc/${process.pid}/fd`], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
  } catch (error) {
    // ls exits 1 when an entry vanished between its listing and its lstat: the pipes the runtime
    // opened for this very child and closed meanwhile (seen once in CI, Bun). The rest of the
    // listing is complete, and the rings, opened by the test, are in it.
    const { status, stdout } = error as { status?: number; stdout?: unknown };
    if (status !== 1 || typeof stdout !== "string") throw error;
    listing = stdout;
  }
  return listing.split("\n").filter((line) => line.endsWith("anon_inode:[io_uring]")).length;
}

for (const sync of ["none", "data", "full"] as const) {
  test(`writeAndSync(${sync}) writes exactly the bytes at the position`, { skip }, async () => {
    const { fd, path } = fileOf(`exact-${sync}`, 8192);
    try {
      const source = pattern(300, 7);
      const bytes = source.subarray(17, 217); // a view with a byteOffset
      await uring.writeAndSync(fd, bytes, 1000, sync);
      const expected = new Uint8Array(8192);
      expected.set(bytes, 1000);
      assert.deepEqual(new Uint8Array(fs.readFileSync(path)), expected);
      await uring.writeAndSync(fd, new Uint8Array(0), 0, sync); // empty write: nothing changes
      assert.deepEqual(new Uint8Array(fs.readFileSync(path)), expected);
    } finally {
      fs.closeSync(fd);
    }
  });
}

test("64 concurrent writeAndSync calls to different offsets all land", { skip }, async () => {
  const size = 128;
  const { fd, path } = fileOf("concurrent", 64 * size);
  try {
    const writes = Array.from({ length: 64 }, (_, i) => pattern(size, i));
    // More ops than the 64-entry ring holds SQEs (2 each): the rest queue and follow.
    await Promise.all(writes.map((bytes, i) => uring.writeAndSync(fd, bytes, i * size, "data")));
    const back = new Uint8Array(fs.readFileSync(path));
    for (let i = 0; i < 64; i++) {
      assert.deepEqual(back.subarray(i * size, (i + 1) * size), writes[i], `write ${i}`);
    }
  } finally {
    fs.closeSync(fd);
  }
});

test("a ring keeps working across garbage collections", { skip }, async () => {
  // Regression: the struct io_uring buffer must stay referenced by the ring itself, not only by
  // the pointer number liburing is called with. A fresh ring whose opener returned is collected
  // here, and same-sized buffers are churned through the allocator to reuse freed memory.
  const ring = openUring(4).uring!;
  const { fd, path } = fileOf("gc", 4096);
  const collect = () => {
    const g = globalThis as { Bun?: { gc(force: boolean): void }; gc?: () => void };
    if (g.Bun) g.Bun.gc(true);
    else g.gc?.();
  };
  try {
    for (let round = 0; round < 20; round++) {
      collect();
      const churn = Array.from({ length: 2000 }, () => new ArrayBuffer(216));
      new Uint8Array(churn[churn.length - 1]).fill(0xff);
      for (let i = 0; i < 10; i++) {
        await ring.writeAndSync(fd, pattern(16, round + i), ((round * 10 + i) * 16) % 4096, "none");
      }
    }
    assert.equal(fs.statSync(path).size, 4096);
  } finally {
    ring.close();
    fs.closeSync(fd);
  }
});

test("a bad fd rejects with IoError ERR_IO EBADF", { skip }, async () => {
  const { fd } = fileOf("closed", 0);
  fs.closeSync(fd); // a number that is no open file now
  for (const sync of ["none", "data"] as const) {
    await assert.rejects(uring.writeAndSync(fd, pattern(10, 1), 0, sync), (error: unknown) => {
      const e = error as { name: string; code: string; errno: string; syscall: string };
      assert.equal(e.name, "IoError");
      assert.equal(e.code, "ERR_IO");
      assert.equal(e.errno, "EBADF");
      assert.equal(e.syscall, "io_uring write");
      return true;
    });
  }
});

test("the event loop keeps turning while a 32 MiB write + fdatasync is in flight", {
  skip,
}, async () => {
  const size = 32 * 1024 * 1024;
  const { fd, path } = fileOf("large", 0);
  try {
    const order: string[] = [];
    const bytes = pattern(size, 3);
    const written = uring.writeAndSync(fd, bytes, 0, "data").then(() => order.push("synced"));
    const timer = new Promise<void>((resolve) =>
      setTimeout(() => {
        order.push("timer");
        resolve();
      }, 0)
    );
    await Promise.all([written, timer]);
    assert.deepEqual(order, ["timer", "synced"]);
    assert.equal(fs.statSync(path).size, size);
    const back = new Uint8Array(fs.readFileSync(path));
    assert.equal(back[size - 1], bytes[size - 1]);
    assert.deepEqual(back.subarray(size - 4096), bytes.subarray(size - 4096));
  } finally {
    fs.closeSync(fd);
  }
});

test("close() rejects pending and later writes, is idempotent, and releases the ring", {
  skip,
}, async () => {
  const before = ringFdCount();
  const second = openUring(8);
  assert.ok(second.uring, second.reason ?? "no ring");
  const ring = second.uring;
  // Rings of earlier tests may still be tearing down (queue_exit waits for the kernel), so
  // count relative to the rings open now rather than exactly.
  const opened = ringFdCount();
  assert.ok(opened >= 1, `the new ring shows as an io_uring fd (${opened})`);
  const { fd } = fileOf("close", 0);
  try {
    await ring.writeAndSync(fd, pattern(100, 1), 0, "data"); // the ring works
    const pending = ring.writeAndSync(fd, pattern(1 << 20, 2), 0, "full");
    ring.close();
    await assert.rejects(pending, { code: "ERR_CLOSED" });
    await assert.rejects(ring.writeAndSync(fd, pattern(10, 3), 0, "data"), {
      code: "ERR_CLOSED",
    });
    ring.close();
    // The ring is torn down once the kernel has finished the op it already held.
    for (let i = 0; i < 200 && ringFdCount() >= opened; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(ringFdCount() < opened, "closing released the ring's fd");
    assert.ok(ringFdCount() <= before, "no ring is left behind");
  } finally {
    fs.closeSync(fd);
  }
});
