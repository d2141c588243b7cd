// The conformance suite of the Native interface (ffi/types.ts). It runs, unchanged, under
// `bun test` and `deno test`, against every implementation available in the current runtime:
// today the one ffi/mod.ts picks; a fake or fault-injecting Native would be added to
// `implementations` and must pass the same cases.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { crc32 } from "node:zlib";
import { native, runtimeName } from "../ffi/mod.ts";
import { errnoName } from "../ffi/errno.ts";
import type { MapAdvice, Native } from "../ffi/types.ts";
import { ClosedError, InvalidArgumentError, IoError } from "../src/errors.ts";

/** Every Native this runtime offers. */
const implementations: readonly Native[] = [native];

/** Size of the test files: several pages on any page size up to 16 KiB. */
const FILE_SIZE_BYTES = 64 * 1024;
/** What posix_fallocate is asked to reserve. */
const ALLOCATE_SIZE_BYTES = 1024 * 1024;
/** `st_blocks` counts 512-byte units on Linux whatever the file system's block size. */
const STAT_BLOCK_BYTES = 512;
/** Size of the buffer the range checksums are tested over: a page and then some. */
const RANGE_BUFFER_BYTES = 4096 + 512;
const ADVICES: readonly MapAdvice[] = ["normal", "sequential", "random", "willneed", "dontneed"];

/** The byte the test files hold at `offset`: varies within and across pages. */
function patternByte(offset: number): number {
  return (offset * 7 + (offset >> 12)) & 0xff;
}

/** Runs `body` in a fresh temporary directory that is removed afterwards. */
function withTempDir(body: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hybridlog-ffi-"));
  try {
    body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `body` with a file of `sizeBytes` pattern bytes (see {@linkcode patternByte}) opened with
 * `flags`; the descriptor is closed afterwards.
 */
function withPatternFile(
  sizeBytes: number,
  flags: "r" | "r+",
  body: (fd: number, filePath: string) => void,
): void {
  withTempDir((dir) => {
    const filePath = path.join(dir, "segment");
    const bytes = new Uint8Array(sizeBytes);
    for (let offset = 0; offset < sizeBytes; offset++) bytes[offset] = patternByte(offset);
    fs.writeFileSync(filePath, bytes);
    const fd = fs.openSync(filePath, flags);
    try {
      body(fd, filePath);
    } finally {
      fs.closeSync(fd);
    }
  });
}

/** A descriptor number that was valid a moment ago and is now closed. */
function closedFd(dir: string): number {
  const fd = fs.openSync(path.join(dir, "closed"), "w");
  fs.closeSync(fd);
  return fd;
}

/** Reads `length` bytes at `position` through node:fs (pread), not through any mapping. */
function preadBytes(fd: number, position: number, length: number): number[] {
  const bytes = new Uint8Array(length);
  assert.equal(fs.readSync(fd, bytes, 0, length, position), length);
  return [...bytes];
}

/** Asserts that `call` throws an IoError (code ERR_IO) from `syscall` with errno `errno`. */
function assertIoError(call: () => unknown, syscall: string, errno: string): void {
  assert.throws(call, (error: unknown) => {
    assert.ok(error instanceof IoError, `expected an IoError, got ${String(error)}`);
    assert.equal(error.code, "ERR_IO");
    assert.equal(error.syscall, syscall);
    assert.equal(error.errno, errno);
    return true;
  });
}

describe("errno names", () => {
  test("errnoName() names Linux errno numbers and falls back to ERRNO_n", () => {
    assert.equal(errnoName(9), "EBADF");
    assert.equal(errnoName(28), "ENOSPC");
    assert.equal(errnoName(122), "EDQUOT");
    assert.equal(errnoName(9999), "ERRNO_9999");
  });
});

for (const impl of implementations) {
  describe(`Native (${impl.runtime})`, () => {
    test("the implementation is the one for the running runtime", () => {
      assert.equal(impl.runtime, runtimeName);
      assert.equal(runtimeName, "Bun" in globalThis ? "bun" : "deno");
    });

    test("pageSizeBytes is a power of two of at least 4096", () => {
      const page = impl.pageSizeBytes;
      assert.ok(Number.isSafeInteger(page) && page >= 4096, `page size ${page}`);
      assert.equal(page & (page - 1), 0, `page size ${page} is not a power of two`);
    });

    test("a read-only mapping sees bytes written with pwrite after it was made", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "read" });
        try {
          const view = new Uint8Array(mapping.buffer);
          assert.equal(mapping.lengthBytes, FILE_SIZE_BYTES);
          assert.equal(view.length, FILE_SIZE_BYTES);
          assert.equal(view[12345], patternByte(12345));
          const written = fs.writeSync(fd, new Uint8Array([0xde, 0xad, 0xbe, 0xef]), 0, 4, 9000);
          assert.equal(written, 4);
          assert.deepEqual([...view.subarray(9000, 9004)], [0xde, 0xad, 0xbe, 0xef]);
        } finally {
          mapping.unmap();
        }
      });
    });

    test("readwrite mapping writes reach node:fs reads after sync() of an unaligned range", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "readwrite" });
        try {
          new Uint8Array(mapping.buffer).set([1, 2, 3], 5000);
          mapping.sync(5000, 3); // 5000 is not page aligned: msync would say EINVAL unrounded
          assert.deepEqual(preadBytes(fd, 5000, 3), [1, 2, 3]);
          assert.deepEqual(preadBytes(fd, 4999, 1), [patternByte(4999)]);
        } finally {
          mapping.unmap();
        }
      });
    });

    test("Atomics.add on a readwrite mapping updates the file", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "readwrite" });
        try {
          const words = new Int32Array(mapping.buffer, 0, 4);
          words[1] = 40;
          assert.equal(Atomics.add(words, 1, 2), 40);
          mapping.sync(0, 16);
          const bytes = new Uint8Array(preadBytes(fd, 4, 4));
          assert.equal(new DataView(bytes.buffer).getInt32(0, true), 42);
        } finally {
          mapping.unmap();
        }
      });
    });

    test("a copy-on-write mapping keeps stores private and still sees later file writes", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "copy-on-write" });
        const view = new Uint8Array(mapping.buffer);
        view[10] = patternByte(10) ^ 0xff; // a caller scribbling on a view: no fault
        assert.equal(view[10], patternByte(10) ^ 0xff);
        const fromFile = new Uint8Array(1);
        fs.readSync(fd, fromFile, 0, 1, 10);
        assert.equal(fromFile[0], patternByte(10), "the store did not reach the file");
        const page = impl.pageSizeBytes;
        fs.writeSync(fd, new Uint8Array([0xab]), 0, 1, page + 3);
        assert.equal(view[page + 3], 0xab, "an untouched page shows the later pwrite");
        mapping.unmap();
        assert.equal(view.length, 0);
      });
    });

    test("map() at a page-aligned offset starts at that byte of the file (with populate)", () => {
      withPatternFile(FILE_SIZE_BYTES, "r", (fd) => {
        const page = impl.pageSizeBytes;
        const mapping = impl.map(fd, page, { access: "read", offsetBytes: page, populate: true });
        try {
          const view = new Uint8Array(mapping.buffer);
          assert.equal(view.length, page);
          assert.equal(view[0], patternByte(page));
          assert.equal(view[page - 1], patternByte(2 * page - 1));
        } finally {
          mapping.unmap();
        }
      });
    });

    test("map() rejects an unaligned offset and a length that is not positive", () => {
      withPatternFile(FILE_SIZE_BYTES, "r", (fd) => {
        assert.throws(
          () => impl.map(fd, 4096, { access: "read", offsetBytes: 100 }),
          InvalidArgumentError,
        );
        assert.throws(() => impl.map(fd, 0, { access: "read" }), InvalidArgumentError);
        assert.throws(() => impl.map(fd, 1.5, { access: "read" }), InvalidArgumentError);
      });
    });

    test("unmap() detaches every earlier view: they read undefined instead of crashing", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "readwrite" });
        const bytes = new Uint8Array(mapping.buffer);
        const middle = bytes.subarray(100, 200);
        const words = new Uint32Array(mapping.buffer, 8, 4);
        const data = new DataView(mapping.buffer, 4096, 16);
        assert.equal(bytes[100], patternByte(100));
        mapping.unmap();
        assert.equal(mapping.buffer.byteLength, 0);
        assert.equal(mapping.buffer.detached, true);
        assert.equal(bytes.length, 0);
        assert.equal(bytes[0], undefined);
        assert.equal(middle.length, 0);
        assert.equal(middle[5], undefined);
        assert.equal(words.length, 0);
        assert.equal(words[0], undefined);
        assert.throws(() => data.getUint8(0), TypeError);
        bytes[0] = 1; // a write to a detached view is dropped, not a fault
        assert.equal(bytes[0], undefined);
      });
    });

    test("unmap() is idempotent and the file can be mapped again afterwards", () => {
      withPatternFile(FILE_SIZE_BYTES, "r", (fd) => {
        const first = impl.map(fd, FILE_SIZE_BYTES, { access: "read" });
        const old = new Uint8Array(first.buffer);
        first.unmap();
        first.unmap();
        assert.equal(old.length, 0);
        const second = impl.map(fd, FILE_SIZE_BYTES, { access: "read" });
        try {
          assert.equal(new Uint8Array(second.buffer)[777], patternByte(777));
          assert.equal(old[777], undefined);
        } finally {
          second.unmap();
        }
      });
    });

    test("unmap() of a buffer transferred away leaves the moved bytes readable as zeros", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "readwrite" });
        const moved = new Uint8Array(mapping.buffer.transfer());
        assert.equal(moved[3], patternByte(3));
        mapping.unmap();
        // The range now holds private anonymous memory: reads are zeros, writes stay in memory.
        assert.equal(moved.length, FILE_SIZE_BYTES);
        assert.equal(moved[3], 0);
        moved[3] = 0xaa;
        assert.equal(moved[3], 0xaa);
        assert.deepEqual(preadBytes(fd, 3, 1), [patternByte(3)]);
      });
    });

    test("sync() and advise() refuse ranges outside the mapping and throw once unmapped", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "readwrite" });
        assert.throws(() => mapping.sync(FILE_SIZE_BYTES - 1, 2), InvalidArgumentError);
        assert.throws(() => mapping.sync(-1, 1), InvalidArgumentError);
        assert.throws(
          () => mapping.advise("dontneed", 0, FILE_SIZE_BYTES + 1),
          InvalidArgumentError,
        );
        mapping.unmap();
        assert.throws(() => mapping.sync(0, 1), ClosedError);
        assert.throws(() => mapping.advise("normal"), ClosedError);
      });
    });

    test("advise() accepts every advice, and data survives dontneed", () => {
      withPatternFile(FILE_SIZE_BYTES, "r", (fd) => {
        const mapping = impl.map(fd, FILE_SIZE_BYTES, { access: "read" });
        try {
          const view = new Uint8Array(mapping.buffer);
          assert.equal(view[20000], patternByte(20000));
          for (const advice of ADVICES) mapping.advise(advice);
          mapping.advise("willneed", 5000, 100);
          // MADV_DONTNEED drops the pages of a shared file mapping; they refault from the file.
          assert.equal(view[20000], patternByte(20000));
          assert.equal(view[FILE_SIZE_BYTES - 1], patternByte(FILE_SIZE_BYTES - 1));
        } finally {
          mapping.unmap();
        }
      });
    });

    test("map() of a closed fd throws IoError EBADF with code ERR_IO", () => {
      withTempDir((dir) => {
        const fd = closedFd(dir);
        assertIoError(() => impl.map(fd, 4096, { access: "read" }), "mmap", "EBADF");
        assertIoError(() => impl.map(-1, 4096, { access: "read" }), "mmap", "EBADF");
      });
    });

    test("a readwrite map() of a read-only fd throws IoError EACCES", () => {
      withPatternFile(FILE_SIZE_BYTES, "r", (fd) => {
        assertIoError(() => impl.map(fd, 4096, { access: "readwrite" }), "mmap", "EACCES");
      });
    });

    test("fsync() and fdatasync() succeed on an open fd and throw EBADF on a closed one", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd, filePath) => {
        fs.writeSync(fd, new Uint8Array([9]), 0, 1, 0);
        assert.doesNotThrow(() => impl.fdatasync(fd));
        assert.doesNotThrow(() => impl.fsync(fd));
        const bad = closedFd(path.dirname(filePath));
        assertIoError(() => impl.fdatasync(bad), "fdatasync", "EBADF");
        assertIoError(() => impl.fsync(bad), "fsync", "EBADF");
      });
    });

    test("fileSizeBytes() follows the file as it grows and shrinks; a bad fd throws IoError", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (fd, filePath) => {
        assert.equal(impl.fileSizeBytes(fd), FILE_SIZE_BYTES);
        fs.writeSync(fd, new Uint8Array([1, 2, 3]), 0, 3, 5 * FILE_SIZE_BYTES);
        assert.equal(impl.fileSizeBytes(fd), 5 * FILE_SIZE_BYTES + 3);
        fs.ftruncateSync(fd, 100);
        assert.equal(impl.fileSizeBytes(fd), 100);
        // Reads and writes by position are unaffected by where it leaves the file offset.
        const byte = new Uint8Array(1);
        fs.readSync(fd, byte, 0, 1, 7);
        assert.equal(byte[0], patternByte(7));
        assertIoError(() => impl.fileSizeBytes(closedFd(path.dirname(filePath))), "lseek", "EBADF");
        assert.throws(() => impl.fileSizeBytes(1.5), InvalidArgumentError);
      });
    });

    test("allocate() reserves real blocks and grows the file", () => {
      withTempDir((dir) => {
        const filePath = path.join(dir, "preallocated");
        const fd = fs.openSync(filePath, "w+");
        try {
          impl.allocate(fd, 0, ALLOCATE_SIZE_BYTES);
          const stat = fs.statSync(filePath);
          assert.equal(stat.size, ALLOCATE_SIZE_BYTES);
          assert.ok(
            stat.blocks * STAT_BLOCK_BYTES >= ALLOCATE_SIZE_BYTES,
            `only ${stat.blocks} blocks reserved: the file is sparse`,
          );
          impl.allocate(fd, ALLOCATE_SIZE_BYTES, ALLOCATE_SIZE_BYTES);
          assert.equal(fs.statSync(filePath).size, 2 * ALLOCATE_SIZE_BYTES);
        } finally {
          fs.closeSync(fd);
        }
      });
    });

    test("allocate() on a read-only fd throws IoError EBADF and rejects negative lengths", () => {
      withPatternFile(FILE_SIZE_BYTES, "r", (fd, filePath) => {
        assertIoError(() => impl.allocate(fd, 0, ALLOCATE_SIZE_BYTES), "posix_fallocate", "EBADF");
        assert.equal(fs.statSync(filePath).size, FILE_SIZE_BYTES);
        assert.throws(() => impl.allocate(fd, 0, -1), InvalidArgumentError);
      });
    });

    test("tryLock() shuts out a second open file description of the file until unlock()", () => {
      withPatternFile(FILE_SIZE_BYTES, "r+", (first, filePath) => {
        const second = fs.openSync(filePath, "r+");
        try {
          assert.equal(impl.tryLock(first), true);
          assert.equal(impl.tryLock(first), true, "the holder may lock again");
          assert.equal(impl.tryLock(second), false);
          impl.unlock(first);
          assert.equal(impl.tryLock(second), true);
          assert.equal(impl.tryLock(first), false);
          impl.unlock(second);
        } finally {
          fs.closeSync(second);
        }
      });
    });

    test("tryLock() and unlock() of a closed fd throw IoError EBADF", () => {
      withTempDir((dir) => {
        const fd = closedFd(dir);
        assertIoError(() => impl.tryLock(fd), "flock", "EBADF");
        assertIoError(() => impl.unlock(fd), "flock", "EBADF");
      });
    });

    test("rangeChecksum() is undefined only with a reason", () => {
      const sum = impl.rangeChecksum(new ArrayBuffer(8));
      const reason = impl.rangeChecksumUnavailableReason;
      if (sum === undefined) assert.ok(typeof reason === "string" && reason.length > 0);
      else assert.equal(reason, undefined);
    });

    const rangeSkip = impl.rangeChecksum(new ArrayBuffer(8)) === undefined &&
      `no native range checksum: ${impl.rangeChecksumUnavailableReason}`;

    test("rangeChecksum() equals node:zlib crc32 of the range", { skip: rangeSkip }, () => {
      const buffer = new ArrayBuffer(RANGE_BUFFER_BYTES);
      const bytes = new Uint8Array(buffer);
      for (let i = 0; i < bytes.length; i++) bytes[i] = patternByte(i * 13);
      const sum = impl.rangeChecksum(buffer)!;
      for (const offset of [0, 1, 2, 3, 4, 5, 7, 8, 13, 4093, RANGE_BUFFER_BYTES - 300]) {
        for (const length of [0, 1, 2, 3, 7, 8, 11, 12, 15, 16, 31, 63, 100, 112, 255, 300]) {
          for (const seed of [0, 1, 0x7fff_ffff, 0x8000_0000, 0xdead_beef, 0xffff_ffff]) {
            const expected = crc32(bytes.subarray(offset, offset + length), seed) >>> 0;
            assert.equal(sum(offset, length, seed), expected, `[${offset}, +${length}) ${seed}`);
          }
        }
      }
      assert.equal(sum(RANGE_BUFFER_BYTES, 0, 5), 5, "an empty range at the end is the seed");
      assert.equal(
        sum(0, RANGE_BUFFER_BYTES, 0),
        crc32(bytes) >>> 0,
        "the whole buffer",
      );
    });

    test("rangeChecksum() sees later writes and refuses ranges outside its buffer", {
      skip: rangeSkip,
    }, () => {
      const buffer = new ArrayBuffer(64);
      const bytes = new Uint8Array(buffer);
      const sum = impl.rangeChecksum(buffer)!;
      const before = sum(8, 16, 0);
      bytes[20] = 1;
      assert.notEqual(sum(8, 16, 0), before);
      assert.equal(sum(8, 16, 0), crc32(bytes.subarray(8, 24)) >>> 0);
      for (const [offset, length] of [[60, 5], [64, 1], [-1, 2], [0, 65], [1.5, 2], [0, -1]]) {
        assert.throws(
          () => sum(offset, length, 0),
          InvalidArgumentError,
          `[${offset}, +${length})`,
        );
      }
      buffer.transfer(0);
      assert.throws(() => sum(0, 1, 0), InvalidArgumentError, "a detached buffer has no bytes");
    });

    test("rangeChecksum() refuses buffers whose address could change or vanish", {
      skip: rangeSkip,
    }, () => {
      const detached = new ArrayBuffer(8);
      detached.transfer(0);
      const resizable = new ArrayBuffer(8, { maxByteLength: 64 });
      for (const buffer of [detached, resizable, new ArrayBuffer(0)]) {
        assert.throws(() => impl.rangeChecksum(buffer), InvalidArgumentError);
      }
    });

    test("openUring() returns a ring, or undefined with a reason", () => {
      const uring = impl.openUring(8);
      if (uring) {
        uring.close();
        assert.equal(impl.uringUnavailableReason, undefined);
      } else {
        const reason = impl.uringUnavailableReason;
        assert.equal(typeof reason, "string");
        assert.ok(reason && reason.length > 0);
      }
    });
  });
}
