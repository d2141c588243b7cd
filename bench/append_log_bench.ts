/**
 * `AppendLog` against the hardware floor, measured side by side in the same run (the machine is
 * shared and noisy, so a figure only means something next to its floor; BASELINES.md).
 *
 * Each group pairs an `AppendLog` workload (100 B values, durability `"data"`, default options)
 * with what the same bytes cost with no log at all, reached through the same FFI layer:
 *
 * | workload                              | floor                                                   |
 * |---------------------------------------|---------------------------------------------------------|
 * | `enqueue` of 100 B, no commit         | memcpy of 100 B (`Uint8Array.prototype.set`)            |
 * | `enqueue` + `await commit()`          | 1 × 120 B `writeSync` + `native.fdatasync`, prealloc'd  |
 * | 100 × `enqueue` + one `await commit()`| one 12 KB `writeSync` + `native.fdatasync`, prealloc'd  |
 * | `read` (copy) of a random entry / 100k| view over a mapped page + memcpy of 100 B (sum)         |
 * | `readView` of a random entry / 100k   | `new Uint8Array(mapped, randomOffset, 100)`             |
 * | `scan` of 100k entries, per entry     | the same view over a mapped page                        |
 * | reopen a 1M-entry log + first `read`  | none                                                    |
 *
 * The commit rows run also with `zeroFillSegments`, against the same floors written into a file
 * filled with zeros first (blocks already written: no journal commit for newly written blocks).
 *
 * plus `native.fdatasync` with nothing dirty, the fixed cost of any durable commit. Benches of
 * sub-microsecond operations run 100 of them per measured call (see `OPS_PER_CALL`).
 *
 * The write paths the log could take are compared on the same bytes (120 B and 12 KB) into a
 * preallocated file: `pwrite` + `fdatasync` on the JS thread and on the runtime's worker pool (the
 * log's default), a copy into a writable shared mapping + `msync(MS_SYNC)` of its pages, and
 * io_uring's write + `fdatasync` linked in one submission (when liburing loads). They make the
 * second table.
 *
 * After mitata's output it prints a markdown table (mean times; ratio = log time / floor time,
 * so 1.0 is the floor) and writes it with the raw statistics to `bench/results/<runtime>.json`.
 *
 *   bun bench/append_log_bench.ts
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys bench/append_log_bench.ts
 *
 * @module
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { bench, do_not_optimize, group, summary } from "mitata";
import { native } from "../ffi/mod.ts";
import type { Mapping } from "../ffi/types.ts";
import { AppendLog } from "../src/append_log.ts";
import { BUFFER_SIZE_BYTES_DEFAULT } from "../src/constants.ts";
import {
  formatTime,
  makeTempDir,
  meanOf,
  PICKS_COUNT,
  randomPicks,
  removeTempDir,
  reopenAppendLog,
  runAndReport,
  runtime,
  runtimeVersion,
  shared,
  sharedAppendLog,
  type Stats,
  writeResults,
} from "./_shared.ts";

/** Bytes of every value (BASELINES.md measures 100 B values). */
const VALUE_BYTES = 100;
/** What a 100 B entry occupies on disk: 16 B header + 100 B, rounded up to 8 (record_format.ts). */
const RECORD_BYTES = 120;
/** Entries per group commit. */
const GROUP_ENTRIES = 100;
/** Entries of the log that reads and scans run over. */
const READ_LOG_ENTRIES = 100_000;
/** Entries of the log that is reopened. */
const REOPEN_LOG_ENTRIES = 1_000_000;
/**
 * Operations per measured call of the sub-microsecond benches. mitata times such calls in batches
 * only when its warm-up happens to see fast calls; otherwise it times each call alone and the
 * timer's own cost (and its variance, large in Deno) lands in every sample. 100 operations per
 * call keep both cases honest; the table divides by it.
 */
const OPS_PER_CALL = 100;
/**
 * Size of the preallocated floor files: the floor writes never wrap inside a run (a group floor
 * runs ~6k calls of 12 KB; a wrapped write lands in blocks already written, which sync faster).
 */
const FLOOR_FILE_BYTES = 256 * 1024 * 1024;
/** Staging buffer of the memcpy floor: the log's default staging buffer. */
const FLOOR_COPY_BUFFER_BYTES = BUFFER_SIZE_BYTES_DEFAULT;

const value = new Uint8Array(VALUE_BYTES).map((_, i) => i);

/**
 * Opens a new file of `sizeBytes` with real blocks (never sparse), as segments are; with
 * `zeroFilled`, written with zeros and synced first, as `zeroFillSegments` makes segments.
 */
function preallocatedFile(sizeBytes: number, zeroFilled = false): { fd: number; close(): void } {
  const dir = makeTempDir();
  const fd = fs.openSync(join(dir, "floor"), "w+", 0o600);
  native.allocate(fd, 0, sizeBytes);
  if (zeroFilled) {
    const zeros = new Uint8Array(1024 * 1024);
    for (let at = 0; at < sizeBytes; at += zeros.length) {
      fs.writeSync(fd, zeros, 0, Math.min(zeros.length, sizeBytes - at), at);
    }
  }
  native.fdatasync(fd);
  return {
    fd,
    close() {
      fs.closeSync(fd);
      removeTempDir(dir);
    },
  };
}

/** 100k committed entries, read and scanned by several benches. */
const readLog = sharedAppendLog(value, READ_LOG_ENTRIES);

/** A preallocated file the size of `readLog`'s data, mapped read-only. */
const mappedFloor = shared(
  () => {
    const sizeBytes = Math.ceil(READ_LOG_ENTRIES * RECORD_BYTES / native.pageSizeBytes) *
      native.pageSizeBytes;
    const file = preallocatedFile(sizeBytes);
    const mapping = native.map(file.fd, sizeBytes, { access: "read", populate: true });
    const offsets = Array.from(
      { length: sizeBytes / RECORD_BYTES - 1 },
      (_, i) => i * RECORD_BYTES,
    );
    return Promise.resolve({ file, mapping, picks: randomPicks(offsets) });
  },
  ({ file, mapping }: { file: { close(): void }; mapping: Mapping }) => {
    mapping.unmap();
    file.close();
  },
);

const NAMES = {
  enqueue: `hybridlog: ${OPS_PER_CALL} × enqueue 100 B`,
  memcpy: `floor: ${OPS_PER_CALL} × memcpy 100 B`,
  commitOne: "hybridlog: enqueue + await commit()",
  commitOneInline: "hybridlog (inlineSync): enqueue + await commit()",
  writeSyncOne: "floor: write 120 B + fdatasync",
  writeSyncOneAsync: "floor: write 120 B + fdatasync on the runtime's worker pool",
  syncClean: "floor: fdatasync, nothing dirty",
  commitGroup: `hybridlog: ${GROUP_ENTRIES} × enqueue + await commit()`,
  commitGroupInline: `hybridlog (inlineSync): ${GROUP_ENTRIES} × enqueue + await commit()`,
  writeSyncGroup: `floor: write ${GROUP_ENTRIES} × 120 B + fdatasync`,
  writeSyncGroupAsync:
    `floor: write ${GROUP_ENTRIES} × 120 B + fdatasync on the runtime's worker pool`,
  commitOneZeroInline: "hybridlog (zeroFillSegments, inlineSync): enqueue + await commit()",
  writeSyncOneZero: "floor: write 120 B + fdatasync, zero-filled file",
  commitGroupZero: `hybridlog (zeroFillSegments): ${GROUP_ENTRIES} × enqueue + await commit()`,
  commitGroupZeroInline:
    `hybridlog (zeroFillSegments, inlineSync): ${GROUP_ENTRIES} × enqueue + await commit()`,
  writeSyncGroupZero: `floor: write ${GROUP_ENTRIES} × 120 B + fdatasync, zero-filled file`,
  read: `hybridlog: ${OPS_PER_CALL} × read (copy), random of 100k`,
  readView: `hybridlog: ${OPS_PER_CALL} × readView, random of 100k`,
  mappedView: `floor: ${OPS_PER_CALL} × view over a mapped page`,
  mappedViewHeader: `floor: ${OPS_PER_CALL} × view over a mapped page, length read from it`,
  mappedWriteOne: "write path: copy 120 B into a writable mapping + msync",
  uringWriteOne: "write path: io_uring write 120 B + fdatasync, linked",
  mappedWriteGroup: `write path: copy ${GROUP_ENTRIES} × 120 B into a writable mapping + msync`,
  uringWriteGroup: `write path: io_uring write ${GROUP_ENTRIES} × 120 B + fdatasync, linked`,
  scan: "hybridlog: scan 100k entries",
  reopen: "hybridlog: open 1M-entry log + read + close",
} as const;

group("enqueue of 100 B (no commit in the loop)", () => {
  summary(() => {
    // Default options and hundreds of thousands of calls: the 4 MiB staging buffer fills every
    // ~35k enqueues, so its write-outs (and a segment creation) land inside the measured samples.
    bench(NAMES.enqueue, async function* () {
      const log = await AppendLog.open({ dir: makeTempDir(), durability: "data" });
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) log.enqueue(value);
      };
      const dir = log.dir;
      await log.close();
      removeTempDir(dir);
    });
    bench(NAMES.memcpy, function* () {
      const staging = new Uint8Array(FLOOR_COPY_BUFFER_BYTES);
      let offset = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          staging.set(value, offset);
          offset += RECORD_BYTES;
          if (offset > staging.length - RECORD_BYTES) offset = 0;
        }
      };
    });
  });
});

/**
 * Floor (a): `entries` records coalesced into one write at an advancing offset, then synced on
 * the JS thread (`native.fdatasync`), or with `onPool` on the runtime's worker pool (node:fs
 * callback), as the log runs its syncs.
 */
const writeAndSyncFloor = (entries: number, onPool = false, zeroFilled = false) =>
  function* () {
    const file = preallocatedFile(FLOOR_FILE_BYTES, zeroFilled);
    const bytes = new Uint8Array(entries * RECORD_BYTES).fill(7);
    let position = 0;
    yield () => {
      fs.writeSync(file.fd, bytes, 0, bytes.length, position);
      position += bytes.length;
      if (position > FLOOR_FILE_BYTES - bytes.length) position = 0;
      if (!onPool) return native.fdatasync(file.fd);
      return new Promise<void>((resolve, reject) =>
        fs.fdatasync(file.fd, (error) => error ? reject(error) : resolve())
      );
    };
    file.close();
  };

/**
 * Write path (c): `entries` records copied into a writable shared mapping of a preallocated file
 * at an advancing offset, then `msync(MS_SYNC)` of the pages they touched, on the JS thread.
 */
const mappedWriteAndSync = (entries: number) =>
  function* () {
    const file = preallocatedFile(FLOOR_FILE_BYTES);
    const mapping = native.map(file.fd, FLOOR_FILE_BYTES, { access: "readwrite" });
    const target = new Uint8Array(mapping.buffer);
    const bytes = new Uint8Array(entries * RECORD_BYTES).fill(7);
    let position = 0;
    yield () => {
      target.set(bytes, position);
      mapping.sync(position, bytes.length);
      position += bytes.length;
      if (position > FLOOR_FILE_BYTES - bytes.length) position = 0;
    };
    mapping.unmap();
    file.close();
  };

/**
 * Write path (d): io_uring's write + `fdatasync` linked in one submission, completed off the JS
 * thread (ffi/io_uring*.ts), into a preallocated file at an advancing offset.
 */
const uringWriteAndSync = (entries: number) =>
  async function* () {
    const uring = native.openUring(8);
    if (uring === undefined) throw new Error(`io_uring: ${native.uringUnavailableReason}`);
    const file = preallocatedFile(FLOOR_FILE_BYTES);
    const bytes = new Uint8Array(entries * RECORD_BYTES).fill(7);
    let position = 0;
    yield () => {
      const at = position;
      position += bytes.length;
      if (position > FLOOR_FILE_BYTES - bytes.length) position = 0;
      return uring.writeAndSync(file.fd, bytes, at, "data");
    };
    uring.close();
    file.close();
  };

/** Why the io_uring write path is not measured here, or `undefined` when it is. */
const uringMissing: string | undefined = (() => {
  const uring = native.openUring(8);
  uring?.close();
  return uring === undefined ? native.uringUnavailableReason ?? "io_uring unavailable" : undefined;
})();

/** Enqueues `entries` values and awaits one commit, on a log with the options given. */
const commitBench = (entries: number, inlineSync: boolean, zeroFillSegments = false) =>
  async function* () {
    const log = await AppendLog.open({
      dir: makeTempDir(),
      durability: "data",
      inlineSync,
      zeroFillSegments,
    });
    yield async () => {
      for (let i = 0; i < entries; i++) log.enqueue(value);
      await log.commit();
    };
    const dir = log.dir;
    await log.close();
    removeTempDir(dir);
  };

group("durable commit per entry", () => {
  summary(() => {
    bench(NAMES.commitOne, commitBench(1, false));
    // Syncs on the JS thread, as the floor below does: no hand-off to the pool and back.
    bench(NAMES.commitOneInline, commitBench(1, true));
    bench(NAMES.writeSyncOne, writeAndSyncFloor(1));
    // The same, with the sync handed to the runtime's worker pool as the log does (node:fs
    // callback API): what keeping the event loop free costs a lone commit.
    bench(NAMES.writeSyncOneAsync, writeAndSyncFloor(1, true));
    // Into blocks already written (zeros): no journal commit for newly written blocks.
    bench(NAMES.commitOneZeroInline, commitBench(1, true, true));
    bench(NAMES.writeSyncOneZero, writeAndSyncFloor(1, false, true));
    bench(NAMES.syncClean, function* () {
      const file = preallocatedFile(native.pageSizeBytes);
      yield () => native.fdatasync(file.fd);
      file.close();
    });
  });
});

group(`group commit: ${GROUP_ENTRIES} enqueues + one commit`, () => {
  summary(() => {
    bench(NAMES.commitGroup, commitBench(GROUP_ENTRIES, false));
    bench(NAMES.commitGroupInline, commitBench(GROUP_ENTRIES, true));
    bench(NAMES.writeSyncGroup, writeAndSyncFloor(GROUP_ENTRIES));
    bench(NAMES.writeSyncGroupAsync, writeAndSyncFloor(GROUP_ENTRIES, true));
    bench(NAMES.commitGroupZero, commitBench(GROUP_ENTRIES, false, true));
    bench(NAMES.commitGroupZeroInline, commitBench(GROUP_ENTRIES, true, true));
    bench(NAMES.writeSyncGroupZero, writeAndSyncFloor(GROUP_ENTRIES, false, true));
  });
});

group("write paths: one durable write of the same bytes into a preallocated file", () => {
  summary(() => {
    bench(NAMES.mappedWriteOne, mappedWriteAndSync(1));
    bench(NAMES.mappedWriteGroup, mappedWriteAndSync(GROUP_ENTRIES));
    if (uringMissing === undefined) {
      bench(NAMES.uringWriteOne, uringWriteAndSync(1));
      bench(NAMES.uringWriteGroup, uringWriteAndSync(GROUP_ENTRIES));
    }
  });
});

group("random read of a committed entry (100k entries)", () => {
  summary(() => {
    for (const [name, zeroCopy] of [[NAMES.read, false], [NAMES.readView, true]] as const) {
      bench(name, async function* () {
        const { log, addresses } = await readLog();
        const picks = randomPicks(addresses);
        // Measures reads of a warm log: fault the mapped pages in first.
        for (const address of addresses) do_not_optimize(log.readView(address));
        let i = 0;
        yield zeroCopy
          ? () => {
            for (let n = 0; n < OPS_PER_CALL; n++) {
              do_not_optimize(log.readView(picks[i]));
              i = (i + 1) & (PICKS_COUNT - 1);
            }
          }
          : () => {
            for (let n = 0; n < OPS_PER_CALL; n++) {
              do_not_optimize(log.read(picks[i]));
              i = (i + 1) & (PICKS_COUNT - 1);
            }
          };
      });
    }
    bench(NAMES.mappedView, async function* () {
      const { mapping, picks } = await mappedFloor();
      const buffer = mapping.buffer;
      let i = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          do_not_optimize(new Uint8Array(buffer, picks[i], VALUE_BYTES));
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    });
    // The same view, its length read from the mapped page first as a log must (it knows only the
    // address): one touch of the entry's cache line, which the plain view above never makes.
    bench(NAMES.mappedViewHeader, async function* () {
      const { mapping, picks } = await mappedFloor();
      const buffer = mapping.buffer;
      // The file is zeros (read-only mapping): the length word reads 0, plus 100 B keeps the
      // view's size and its dependence on the load.
      const words = new Uint32Array(buffer);
      let i = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          const at = picks[i];
          do_not_optimize(new Uint8Array(buffer, at, words[(at >>> 2) + 1] + VALUE_BYTES));
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    });
  });
});

group("scan of 100k committed entries", () => {
  bench(NAMES.scan, async function* () {
    const { log } = await readLog();
    yield () => {
      let bytes = 0;
      for (const entry of log.scan()) bytes += entry.value.length;
      do_not_optimize(bytes);
    };
  });
});

group("reopen of a 1M-entry log to the first read", () => {
  // A generator function of its own: mitata runs setup and teardown only for those.
  bench(NAMES.reopen, async function* () {
    yield* reopenAppendLog(value, REOPEN_LOG_ENTRIES);
  });
});

/** The write paths compared, in the columns of the second table. */
const WRITE_PATHS = [
  { key: "pwriteJsThread", label: "pwrite + fdatasync, JS thread" },
  { key: "pwritePool", label: "pwrite + fdatasync, worker pool (the default)" },
  { key: "mappingMsync", label: "writable mapping + msync, JS thread" },
  { key: "uringLinked", label: "io_uring write + fdatasync linked, off the JS thread" },
] as const;

await runAndReport(report);

type WritePathRow =
  & { bytes: string }
  & Partial<Record<typeof WRITE_PATHS[number]["key"], { avg: number; p50: number; p99: number }>>;

/** Mean, p50 and p99 of each write path for 120 B and for 100 × 120 B, from one run. */
function writePathTable(results: Map<string, Stats>): WritePathRow[] {
  const of = (name: string) => {
    const stats = results.get(name);
    return stats && { avg: stats.avg, p50: stats.p50, p99: stats.p99 };
  };
  return [
    {
      bytes: `${RECORD_BYTES} B`,
      pwriteJsThread: of(NAMES.writeSyncOne),
      pwritePool: of(NAMES.writeSyncOneAsync),
      mappingMsync: of(NAMES.mappedWriteOne),
      uringLinked: of(NAMES.uringWriteOne),
    },
    {
      bytes: `${GROUP_ENTRIES} × ${RECORD_BYTES} B`,
      pwriteJsThread: of(NAMES.writeSyncGroup),
      pwritePool: of(NAMES.writeSyncGroupAsync),
      mappingMsync: of(NAMES.mappedWriteGroup),
      uringLinked: of(NAMES.uringWriteGroup),
    },
  ];
}

function report(results: Map<string, Stats>, context: unknown): void {
  const mean = (name: string): number => meanOf(results, name);
  const time = formatTime;
  const rate = (ns: number) => `${(GROUP_ENTRIES / ns * 1e3).toFixed(2)}M entries/s`;
  const rows: Array<{ workload: string; logNs?: number; floorNs?: number; show?: typeof time }> = [
    {
      workload: "enqueue 100 B vs memcpy 100 B",
      logNs: mean(NAMES.enqueue) / OPS_PER_CALL,
      floorNs: mean(NAMES.memcpy) / OPS_PER_CALL,
    },
    {
      workload: "durable commit per entry vs 120 B write + fdatasync",
      logNs: mean(NAMES.commitOne),
      floorNs: mean(NAMES.writeSyncOne),
    },
    {
      workload: "durable commit per entry vs 120 B write + fdatasync on the worker pool",
      logNs: mean(NAMES.commitOne),
      floorNs: mean(NAMES.writeSyncOneAsync),
    },
    {
      workload: "durable commit per entry, inlineSync, vs 120 B write + fdatasync",
      logNs: mean(NAMES.commitOneInline),
      floorNs: mean(NAMES.writeSyncOne),
    },
    {
      workload:
        "durable commit per entry, zeroFillSegments + inlineSync, vs 120 B write + fdatasync into a zero-filled file",
      logNs: mean(NAMES.commitOneZeroInline),
      floorNs: mean(NAMES.writeSyncOneZero),
    },
    {
      workload: `group commit of ${GROUP_ENTRIES} vs 12 KB write + fdatasync`,
      logNs: mean(NAMES.commitGroup),
      floorNs: mean(NAMES.writeSyncGroup),
      show: rate,
    },
    {
      workload: `group commit of ${GROUP_ENTRIES} vs 12 KB write + fdatasync on the worker pool`,
      logNs: mean(NAMES.commitGroup),
      floorNs: mean(NAMES.writeSyncGroupAsync),
      show: rate,
    },
    {
      workload: `group commit of ${GROUP_ENTRIES}, inlineSync, vs 12 KB write + fdatasync`,
      logNs: mean(NAMES.commitGroupInline),
      floorNs: mean(NAMES.writeSyncGroup),
      show: rate,
    },
    {
      workload:
        `group commit of ${GROUP_ENTRIES}, zeroFillSegments, vs 12 KB write + fdatasync into a zero-filled file`,
      logNs: mean(NAMES.commitGroupZero),
      floorNs: mean(NAMES.writeSyncGroupZero),
      show: rate,
    },
    {
      workload:
        `group commit of ${GROUP_ENTRIES}, zeroFillSegments + inlineSync, vs 12 KB write + fdatasync into a zero-filled file`,
      logNs: mean(NAMES.commitGroupZeroInline),
      floorNs: mean(NAMES.writeSyncGroupZero),
      show: rate,
    },
    {
      workload: "random read (copy) vs mapped view + memcpy",
      logNs: mean(NAMES.read) / OPS_PER_CALL,
      floorNs: (mean(NAMES.mappedView) + mean(NAMES.memcpy)) / OPS_PER_CALL,
    },
    {
      workload: "random readView vs mapped view",
      logNs: mean(NAMES.readView) / OPS_PER_CALL,
      floorNs: mean(NAMES.mappedView) / OPS_PER_CALL,
    },
    {
      workload: "random readView vs mapped view that reads its length",
      logNs: mean(NAMES.readView) / OPS_PER_CALL,
      floorNs: mean(NAMES.mappedViewHeader) / OPS_PER_CALL,
    },
    {
      workload: "scan, per entry vs mapped view",
      logNs: mean(NAMES.scan) / READ_LOG_ENTRIES,
      floorNs: mean(NAMES.mappedView) / OPS_PER_CALL,
    },
    { workload: "reopen 1M entries + first read (no floor)", logNs: mean(NAMES.reopen) },
    { workload: "fdatasync with nothing dirty (floor only)", floorNs: mean(NAMES.syncClean) },
  ];
  const table = rows.map(({ workload, logNs, floorNs, show = time }) => ({
    workload,
    hybridlog: logNs === undefined ? "—" : show(logNs),
    floor: floorNs === undefined ? "—" : show(floorNs),
    ratio: logNs === undefined || floorNs === undefined ? undefined : logNs / floorNs,
    hybridlogNs: logNs,
    floorNs,
  }));
  const version = runtimeVersion;
  console.log(`\n### AppendLog vs floor — ${runtime} ${version} (mean; ratio = log / floor)\n`);
  console.log("| workload | hybridlog | floor | ratio |\n|---|---:|---:|---:|");
  for (const row of table) {
    const ratio = row.ratio === undefined ? "—" : `${row.ratio.toFixed(1)}×`;
    console.log(`| ${row.workload} | ${row.hybridlog} | ${row.floor} | ${ratio} |`);
  }
  const writePaths = writePathTable(results);
  console.log(
    `\n### Write paths — ${runtime} ${version} (one durable write into a preallocated file; mean, p99 in parentheses)\n`,
  );
  console.log(`| bytes | ${WRITE_PATHS.map((path) => path.label).join(" | ")} |`);
  console.log(`|---|${WRITE_PATHS.map(() => "---:").join("|")}|`);
  for (const row of writePaths) {
    const cells = WRITE_PATHS.map(({ key }) => {
      const cell = row[key];
      return cell === undefined ? uringMissing ?? "—" : `${time(cell.avg)} (${time(cell.p99)})`;
    });
    console.log(`| ${row.bytes} | ${cells.join(" | ")} |`);
  }
  const raw = Object.fromEntries(results);
  const json = {
    runtime,
    version,
    date: new Date().toISOString(),
    unit: "ns",
    context,
    table,
    writePaths,
    uringMissing,
    raw,
  };
  writeResults(`${runtime}.json`, json);
}
