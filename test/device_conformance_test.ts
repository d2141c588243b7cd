// One conformance suite for every Device (real file system, in memory, fault-injecting but
// unarmed), then what only the in-memory device promises: what a power loss keeps and loses.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import type { Device } from "../src/device.ts";
import { native } from "../ffi/mod.ts";
import { checksum } from "../src/checksum.ts";
import { IoError, LockedError } from "../src/errors.ts";
import { FaultyDevice } from "../src/faulty_device.ts";
import { fsDevice } from "../src/fs_device.ts";
import { MEMORY_PAGE_BYTES, MemoryDevice } from "../src/memory_device.ts";
import { entryBytes, fileBytes, tempDir } from "./_helpers.ts";

interface Subject extends Disposable {
  device: Device;
  /** An existing, empty directory to work in. */
  root: string;
}

const devices: Array<{ name: string; make(): Subject }> = [
  {
    name: "fs",
    make() {
      const dir = tempDir("hybridlog-device-");
      return { device: fsDevice, root: dir.path, [Symbol.dispose]: () => dir[Symbol.dispose]() };
    },
  },
  {
    name: "memory",
    make() {
      const device = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
      device.makeDirectory("/work");
      return { device, root: "/work", [Symbol.dispose]() {} };
    },
  },
  {
    name: "faulty(memory)",
    make() {
      const device = new FaultyDevice(new MemoryDevice({ fileSizeBytesMax: 1 << 20 }));
      device.makeDirectory("/work");
      return { device, root: "/work", [Symbol.dispose]() {} };
    },
  },
];

function isIoError(errno: string) {
  return (error: unknown) => {
    assert.ok(error instanceof IoError, `expected IoError ${errno}, got ${error}`);
    assert.equal(error.code, "ERR_IO");
    assert.equal(error.errno, errno);
    return true;
  };
}

for (const make of devices) {
  describe(`device conformance: ${make.name}`, () => {
    test("open without create of a missing file fails with ENOENT", () => {
      using s = make.make();
      assert.throws(() => s.device.open(join(s.root, "missing")), isIoError("ENOENT"));
      assert.throws(
        () => s.device.open(join(s.root, "no-dir", "file"), { create: true }),
        isIoError("ENOENT"),
      );
    });

    test("open with create makes an empty file; exclusive fails with EEXIST once it exists", () => {
      using s = make.make();
      const path = join(s.root, "a");
      const file = s.device.open(path, { create: true, exclusive: true });
      assert.equal(file.path, path);
      assert.equal(file.sizeBytes(), 0);
      file.close();
      assert.equal(s.device.exists(path), true);
      assert.throws(
        () => s.device.open(path, { create: true, exclusive: true }),
        isIoError("EEXIST"),
      );
      s.device.open(path, { create: true }).close();
      s.device.open(path).close();
    });

    test("write then read returns the same bytes; a read past the end is short", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      const bytes = entryBytes(7, 10_000);
      file.write(bytes, 0);
      assert.equal(file.sizeBytes(), 10_000);
      const back = new Uint8Array(10_000);
      assert.equal(file.read(back, 0), 10_000);
      assert.deepEqual(back, bytes);
      const tail = new Uint8Array(100);
      assert.equal(file.read(tail, 9_950), 50);
      assert.deepEqual(tail.subarray(0, 50), bytes.subarray(9_950));
      assert.equal(file.read(tail, 20_000), 0);
      file.close();
    });

    test("writeAsync writes every byte off the JS thread and resolves once they read back", async () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      const bytes = entryBytes(3, 70_000);
      const pending = file.writeAsync(bytes, 100);
      assert.ok(pending instanceof Promise);
      await pending;
      assert.equal(file.sizeBytes(), 70_100);
      const back = new Uint8Array(70_000);
      assert.equal(file.read(back, 100), 70_000);
      assert.deepEqual(back, bytes);
      file.close();
      const readOnly = s.device.open(join(s.root, "a"), { readOnly: true });
      await assert.rejects(readOnly.writeAsync(new Uint8Array(1), 0), isIoError("EBADF"));
      readOnly.close();
      await assert.rejects(file.writeAsync(new Uint8Array(1), 0), isIoError("EBADF"));
    });

    test("a write at an offset past the end extends the size; the gap reads as zeros", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.write(new Uint8Array([1, 2, 3]), 0);
      file.write(new Uint8Array([9, 9]), 5000);
      assert.equal(file.sizeBytes(), 5002);
      const back = new Uint8Array(5002);
      file.read(back, 0);
      assert.deepEqual([...back.subarray(0, 4)], [1, 2, 3, 0]);
      assert.ok(back.subarray(3, 5000).every((b) => b === 0));
      assert.deepEqual([...back.subarray(5000)], [9, 9]);
      file.close();
    });

    test("allocate grows the size with zeros and never shrinks it", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.write(new Uint8Array([5]), 0);
      file.allocate(0, 65536);
      assert.equal(file.sizeBytes(), 65536);
      file.allocate(0, 100);
      assert.equal(file.sizeBytes(), 65536);
      const back = new Uint8Array(65536);
      file.read(back, 0);
      assert.equal(back[0], 5);
      assert.ok(back.subarray(1).every((b) => b === 0));
      file.close();
    });

    test("truncate shrinks the file; growing it again reads zeros where the bytes were", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.write(entryBytes(1, 8192), 0);
      file.truncate(100);
      assert.equal(file.sizeBytes(), 100);
      file.allocate(100, 8092);
      assert.equal(file.sizeBytes(), 8192);
      const back = new Uint8Array(8192);
      file.read(back, 0);
      assert.deepEqual(back.subarray(0, 100), entryBytes(1, 8192).subarray(0, 100));
      assert.ok(back.subarray(100).every((b) => b === 0), "the cut bytes are gone");
      file.close();
    });

    test("a view sees writes made after it was taken, and truncation", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.allocate(0, 65536);
      const view = file.view(65536);
      assert.equal(view.bytes.length, 65536);
      assert.equal(view.words.length, 16384);
      file.write(new Uint8Array([1, 2, 3, 4]), 4096);
      assert.deepEqual([...view.bytes.subarray(4096, 4100)], [1, 2, 3, 4]);
      assert.equal(view.words[1024], 0x04030201);
      file.truncate(4098);
      file.allocate(0, 65536);
      assert.deepEqual([...view.bytes.subarray(4096, 4100)], [1, 2, 0, 0]);
      view.release();
      view.release();
      file.close();
    });

    test("a view's native checksum, where it has one, sums what node:zlib sums over its bytes", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.allocate(0, 65536);
      file.write(entryBytes(3, 20_000), 1000);
      const view = file.view(65536);
      if (view.checksum !== undefined) {
        for (
          const [offset, length, seed] of [[4, 116, 7], [1000, 20_000, 0], [
            60_000,
            5536,
            2 ** 31 + 9,
          ]]
        ) {
          assert.equal(
            view.checksum(offset, length, seed),
            checksum(view.bytes.subarray(offset, offset + length), seed),
            `[${offset}, +${length})`,
          );
        }
        view.release();
        assert.throws(() => view.checksum!(4, 116, 7), "a released view's range is gone");
      } else {
        // Only the real device has one, and only where libdeflate loads (CI installs it).
        assert.ok(make.name !== "fs" || native.rangeChecksumUnavailableReason !== undefined);
        view.release();
      }
      file.close();
    });

    test("sync and syncNow resolve in both modes", async () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.write(new Uint8Array(10), 0);
      await file.sync("data");
      await file.sync("full");
      file.syncNow("data");
      file.syncNow("full");
      await s.device.syncDirectory(s.root);
      s.device.syncDirectoryNow(s.root);
      file.close();
    });

    test("rename moves a file and replaces the target; remove deletes; list is sorted", () => {
      using s = make.make();
      for (const name of ["c", "a", "b"]) {
        const file = s.device.open(join(s.root, name), { create: true });
        file.write(new TextEncoder().encode(name), 0);
        file.close();
      }
      assert.deepEqual(s.device.list(s.root), ["a", "b", "c"]);
      s.device.rename(join(s.root, "a"), join(s.root, "d"));
      assert.equal(s.device.exists(join(s.root, "a")), false);
      s.device.rename(join(s.root, "d"), join(s.root, "b"));
      assert.deepEqual(s.device.list(s.root), ["b", "c"]);
      const file = s.device.open(join(s.root, "b"));
      const back = new Uint8Array(4);
      assert.equal(file.read(back, 0), 1);
      assert.equal(back[0], "a".charCodeAt(0), "b now holds what a held");
      file.close();
      s.device.remove(join(s.root, "c"));
      s.device.remove(join(s.root, "c"));
      assert.deepEqual(s.device.list(s.root), ["b"]);
      assert.throws(
        () => s.device.rename(join(s.root, "missing"), join(s.root, "x")),
        isIoError("ENOENT"),
      );
      assert.throws(() => s.device.list(join(s.root, "missing")), isIoError("ENOENT"));
    });

    test("makeDirectory returns the directories it created, outermost first", async () => {
      using s = make.make();
      const deep = join(s.root, "x", "y", "z");
      assert.deepEqual(s.device.makeDirectory(deep), [
        join(s.root, "x"),
        join(s.root, "x", "y"),
        deep,
      ]);
      assert.deepEqual(s.device.makeDirectory(deep), []);
      assert.equal(s.device.exists(deep), true);
      assert.deepEqual(s.device.list(deep), []);
      s.device.syncDirectoryNow(deep);
      await s.device.syncDirectory(join(s.root, "x"));
      await assert.rejects(s.device.syncDirectory(join(s.root, "nope")), isIoError("ENOENT"));
      assert.throws(() => s.device.syncDirectoryNow(join(s.root, "nope")), isIoError("ENOENT"));
    });

    test("a directory lock conflicts until it is released", () => {
      using s = make.make();
      const lock = s.device.lock(s.root);
      assert.throws(() => s.device.lock(s.root), (error: unknown) => {
        assert.ok(error instanceof LockedError);
        assert.equal(error.code, "ERR_LOCKED");
        return true;
      });
      const other = join(s.root, "other");
      s.device.makeDirectory(other);
      s.device.lock(other).release();
      lock.release();
      lock.release();
      s.device.lock(s.root).release();
    });

    test("a closed file throws IoError EBADF; close is idempotent", () => {
      using s = make.make();
      const file = s.device.open(join(s.root, "a"), { create: true });
      file.close();
      file.close();
      assert.throws(() => file.write(new Uint8Array(1), 0), isIoError("EBADF"));
      assert.throws(() => file.read(new Uint8Array(1), 0), isIoError("EBADF"));
      assert.throws(() => file.sizeBytes(), isIoError("EBADF"));
      assert.throws(() => file.truncate(0), isIoError("EBADF"));
      assert.throws(() => file.syncNow("data"), isIoError("EBADF"));
    });
  });
}

const PAGE = MEMORY_PAGE_BYTES;

/** A device with a durable directory `/d` holding `f`, synced with `pages` pages of `fill`. */
function syncedFile(pages: number, fill = 1) {
  const device = new MemoryDevice({ fileSizeBytesMax: 1 << 20 });
  device.makeDirectory("/d");
  device.syncDirectoryNow("/");
  const file = device.open("/d/f", { create: true });
  device.syncDirectoryNow("/d");
  file.write(new Uint8Array(pages * PAGE).fill(fill), 0);
  file.syncNow("data");
  return { device, file };
}

describe("fs device", () => {
  /** Descriptors open in this process (/proc/self/fd needs Deno's --allow-all; fstat does not). */
  const openDescriptors = () => {
    let open = 0;
    for (let fd = 0; fd < 4096; fd++) {
      try {
        fs.fstatSync(fd);
        open++;
      } catch {
        // not open
      }
    }
    return open;
  };

  test("syncs of one file in flight at once all resolve, and close leaves no descriptor open", async () => {
    using dir = tempDir("hybridlog-device-");
    const before = openDescriptors();
    const file = fsDevice.open(join(dir.path, "a"), { create: true });
    for (let round = 0; round < 3; round++) {
      file.write(entryBytes(round, 4096), round * 4096);
      // Three at once: the second and third go through a second descriptor of the file.
      await Promise.all([file.sync("data"), file.sync("full"), file.sync("data")]);
    }
    assert.equal(openDescriptors(), before + 2, "the file and its sync descriptor");
    await file.sync("data"); // alone again: through the file's own descriptor
    file.close();
    assert.equal(openDescriptors(), before, "close closed both");
    assert.throws(() => file.sync("data"), isIoError("EBADF"));
    const read = fsDevice.open(join(dir.path, "a"), { readOnly: true });
    const bytes = new Uint8Array(3 * 4096);
    read.read(bytes, 0);
    read.close();
    assert.deepEqual(bytes.subarray(8192), entryBytes(2, 4096));
  });
});

describe("MemoryDevice power loss", () => {
  test("drop loses unsynced writes and keeps synced ones", () => {
    const { device, file } = syncedFile(2);
    file.write(new Uint8Array(PAGE).fill(2), PAGE);
    file.write(new Uint8Array(10).fill(3), 2 * PAGE);
    assert.equal(device.stats().unsyncedPages, 2);
    const after = device.powerLoss({ mode: "drop" });
    assert.deepEqual(fileBytes(after, "/d/f"), new Uint8Array(2 * PAGE).fill(1));
    assert.equal(after.stats().unsyncedPages, 0);
    // The original is untouched: its page cache still holds the writes.
    assert.equal(fileBytes(device, "/d/f")[PAGE], 2);
    file.syncNow("full");
    const synced = fileBytes(device.powerLoss({ mode: "drop" }), "/d/f");
    assert.equal(synced.length, 2 * PAGE + 10);
    assert.equal(synced[PAGE], 2);
    assert.equal(synced[2 * PAGE], 3);
  });

  test("a sync makes the size durable: unsynced allocate and truncate are undone", () => {
    const { device, file } = syncedFile(2);
    file.allocate(0, 8 * PAGE);
    assert.equal(fileBytes(device.powerLoss({ mode: "drop" }), "/d/f").length, 2 * PAGE);
    file.truncate(10);
    const after = fileBytes(device.powerLoss({ mode: "drop" }), "/d/f");
    assert.deepEqual(after, new Uint8Array(2 * PAGE).fill(1), "the cut bytes come back");
    file.syncNow("data");
    assert.equal(fileBytes(device.powerLoss({ mode: "drop" }), "/d/f").length, 10);
  });

  test("an async sync is durable only once it resolves", async () => {
    const { device, file } = syncedFile(1);
    file.write(new Uint8Array(4).fill(9), 0);
    const pending = file.sync("data");
    assert.equal(device.stats().pendingSyncs, 1);
    assert.equal(fileBytes(device.powerLoss({ mode: "drop" }), "/d/f")[0], 1, "in flight: lost");
    await pending;
    assert.equal(fileBytes(device.powerLoss({ mode: "drop" }), "/d/f")[0], 9, "resolved: kept");
  });

  test("a sync makes durable what was written before it was called, not after", async () => {
    const { device, file } = syncedFile(1);
    file.write(new Uint8Array([5]), 0);
    const pending = file.sync("data");
    file.write(new Uint8Array([6]), 1);
    await pending;
    const after = fileBytes(device.powerLoss({ mode: "drop" }), "/d/f");
    assert.deepEqual([after[0], after[1]], [5, 1]);
    assert.equal(device.stats().unsyncedPages, 1, "the later write is still unsynced");
  });

  test("an unsynced create vanishes even if the file itself was synced", () => {
    const { device } = syncedFile(1);
    const file = device.open("/d/new", { create: true });
    file.write(new Uint8Array(10), 0);
    file.syncNow("full");
    assert.equal(device.powerLoss({ mode: "drop" }).exists("/d/new"), false);
    device.syncDirectoryNow("/d");
    assert.equal(fileBytes(device.powerLoss({ mode: "drop" }), "/d/new").length, 10);
  });

  test("an unsynced rename reverts; an unsynced remove is undone", () => {
    const { device } = syncedFile(1);
    device.rename("/d/f", "/d/g");
    let after = device.powerLoss({ mode: "drop" });
    assert.deepEqual(after.list("/d"), ["f"]);
    assert.equal(fileBytes(after, "/d/f")[0], 1);
    device.syncDirectoryNow("/d");
    device.remove("/d/g");
    after = device.powerLoss({ mode: "drop" });
    assert.deepEqual(after.list("/d"), ["g"]);
    assert.equal(fileBytes(after, "/d/g")[0], 1);
  });

  test("a new directory is durable only once its parent directory is synced", () => {
    const device = new MemoryDevice();
    assert.deepEqual(device.makeDirectory("/a/b"), ["/a", "/a/b"]);
    device.syncDirectoryNow("/a");
    assert.equal(device.powerLoss({ mode: "drop" }).exists("/a"), false);
    device.syncDirectoryNow("/");
    const after = device.powerLoss({ mode: "drop" });
    assert.equal(after.exists("/a/b"), true);
  });

  test("random-pages keeps a seeded subset of unsynced pages, the same for the same seed", () => {
    const { device, file } = syncedFile(64);
    for (let page = 0; page < 64; page++) file.write(new Uint8Array(PAGE).fill(2), page * PAGE);
    const kept = (seed: number) => {
      const bytes = fileBytes(device.powerLoss({ mode: "random-pages", seed }), "/d/f");
      return Array.from({ length: 64 }, (_, page) => bytes[page * PAGE]);
    };
    const first = kept(7);
    assert.deepEqual(kept(7), first, "deterministic per seed");
    assert.ok(first.every((b) => b === 1 || b === 2), "a page is old or new, never mixed");
    const persisted = first.filter((b) => b === 2).length;
    assert.ok(persisted > 8 && persisted < 56, `${persisted} of 64 pages persisted`);
    assert.notDeepEqual(kept(8), first, "another seed keeps other pages");
    let calls = 0;
    device.powerLoss({ mode: "random-pages", random: () => (calls++, 0.99) });
    assert.ok(calls >= 64, "a random source replaces the seed");
    const chosen = device.powerLoss({
      mode: "random-pages",
      persistPage: (path, page) => path === "/d/f" && page % 2 === 0,
    });
    const bytes = fileBytes(chosen, "/d/f");
    assert.deepEqual([bytes[0], bytes[PAGE], bytes[2 * PAGE]], [2, 1, 2], "persistPage decides");
  });

  test("torn-sector keeps only the first sectors of the last written page", () => {
    const { device, file } = syncedFile(4);
    file.write(new Uint8Array(PAGE).fill(2), PAGE);
    file.write(new Uint8Array(PAGE).fill(3), 2 * PAGE);
    for (let seed = 0; seed < 8; seed++) {
      const bytes = fileBytes(device.powerLoss({ mode: "torn-sector", seed }), "/d/f");
      assert.ok(bytes.subarray(PAGE, 2 * PAGE).every((b) => b === 1), "earlier page dropped");
      const page = bytes.subarray(2 * PAGE, 3 * PAGE);
      const torn = page.findIndex((b) => b === 1);
      assert.ok(torn > 0 && torn % 512 === 0, `seed ${seed}: torn at ${torn}`);
      assert.ok(page.subarray(0, torn).every((b) => b === 3));
      assert.ok(page.subarray(torn).every((b) => b === 1));
    }
  });

  test("crash() keeps the page cache, releases locks, and a later power loss still drops", () => {
    const { device, file } = syncedFile(1);
    device.lock("/d");
    file.write(new Uint8Array([8]), 0);
    device.open("/d/new", { create: true }).close();
    const restarted = device.crash();
    assert.equal(fileBytes(restarted, "/d/f")[0], 8);
    assert.equal(restarted.exists("/d/new"), true);
    restarted.lock("/d").release();
    assert.throws(() => device.lock("/d"), LockedError, "the old device still holds its lock");
    file.write(new Uint8Array([9]), 0);
    assert.equal(fileBytes(restarted, "/d/f")[0], 8, "independent of the old device");
    const after = restarted.powerLoss({ mode: "drop" });
    assert.equal(fileBytes(after, "/d/f")[0], 1);
    assert.equal(after.exists("/d/new"), false);
  });

  test("views are live, beyond-size views are refused, and oversized files fail with EFBIG", () => {
    const device = new MemoryDevice({ fileSizeBytesMax: 2 * PAGE });
    const file = device.open("/f", { create: true });
    file.allocate(0, PAGE);
    const view = file.view(PAGE);
    file.allocate(0, 2 * PAGE);
    file.write(new Uint8Array([4]), 100);
    assert.equal(view.bytes[100], 4, "growing the file keeps existing views live");
    assert.throws(() => file.view(3 * PAGE), isIoError("EINVAL"));
    assert.throws(() => file.write(new Uint8Array(1), 2 * PAGE), isIoError("EFBIG"));
    assert.throws(() => device.powerLoss({ mode: "melt" as "drop" }), /mode must be/);
  });
});
