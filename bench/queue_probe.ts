// Measurement, not a test: a durable queue on `zeroFillSegments`. Groups of 100 × 100 B are
// enqueued and committed; with "truncating" each group is freed once the next one is committed
// (a consumer one group behind), so every dropped segment's file can be recycled as the next
// spare; "not truncating" keeps every segment, so each new one is filled with zeros first. For
// each it prints entries/s, the commit's p50 and p99, the spares zero-filled and recycled, and
// the bytes the disk holding the log wrote (/proc/diskstats: /proc/self/io's write_bytes counts a
// 1 MiB range for each fdatasync of an overwrite on some kernels and cannot measure this).
//
// Truncating at every commit also makes each commit write and sync the 4 KiB checkpoint that
// records the new begin, so the two workloads differ in more than their spares.
//
// With small segments (`--segment-mib 4`), a spare is filled as soon as the one before is
// installed, so a dropped segment is kept as a second spare to be recycled at all.
//
//   bun bench/queue_probe.ts [--groups 30000] [--dir /var/tmp] [--segment-mib 64]
//   deno run -A bench/queue_probe.ts   (Deno reads /proc/diskstats only with --allow-all)
import * as fs from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AppendLog } from "../mod.ts";

const { values } = parseArgs({
  options: {
    groups: { type: "string", default: "30000" },
    "segment-mib": { type: "string", default: "64" },
    dir: { type: "string", default: fs.existsSync("/var/tmp") ? "/var/tmp" : "." },
  },
});
const GROUPS = Number(values.groups);
const value = new Uint8Array(100).fill(3);
/** The segment size of the log (by default the log's default). */
const SEGMENT_BYTES = Number(values["segment-mib"]) * 1024 * 1024;

/** Sectors written by the block device holding `dir`, in bytes; undefined if not readable. */
function diskBytesWritten(dir: string): number | undefined {
  const dev = fs.statSync(dir).dev;
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  let table: string;
  try {
    table = fs.readFileSync("/proc/diskstats", "utf8");
  } catch {
    return undefined;
  }
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (Number(fields[0]) === major && Number(fields[1]) === minor) {
      return Number(fields[9]) * 512;
    }
  }
  return undefined;
}

async function run(truncating: boolean) {
  const dir = fs.mkdtempSync(join(values.dir!, ".queue_probe-"));
  try {
    const log = await AppendLog.open({
      dir,
      durability: "data",
      zeroFillSegments: true,
      segmentSizeBytes: SEGMENT_BYTES,
    });
    const before = diskBytesWritten(dir);
    const commitMs = new Float64Array(GROUPS);
    let previous: number | undefined;
    const started = performance.now();
    for (let g = 0; g < GROUPS; g++) {
      const t = performance.now();
      const first = log.enqueue(value);
      for (let i = 1; i < 100; i++) log.enqueue(value);
      await log.commit();
      commitMs[g] = performance.now() - t;
      if (truncating && previous !== undefined) log.truncateUntil(previous);
      previous = first;
    }
    const seconds = (performance.now() - started) / 1000;
    const stats = log.stats();
    await log.close();
    const after = diskBytesWritten(dir);
    commitMs.sort();
    const at = (q: number) => commitMs[Math.floor(q * (GROUPS - 1))] * 1000;
    return {
      workload: truncating ? "truncating one group behind" : "not truncating",
      entriesPerSecond: Math.round(GROUPS * 100 / seconds),
      p50Us: Math.round(at(0.5)),
      p99Us: Math.round(at(0.99)),
      logMB: Math.round(stats.bytesWritten / 1e6),
      diskMB: before === undefined || after === undefined
        ? "—"
        : Math.round((after - before) / 1e6),
      zeroFilled: stats.zeroFillPrepared - stats.zeroFillRecycled,
      recycled: stats.zeroFillRecycled,
      zerosMB: Math.round((stats.zeroFillPrepared - stats.zeroFillRecycled) * SEGMENT_BYTES / 1e6),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const runtime = "Bun" in globalThis
  ? `bun ${process.versions.bun}`
  : `deno ${process.versions.deno}`;
console.log(
  `queue probe — ${runtime}, ${GROUPS} groups of 100 × 100 B, zeroFillSegments, ` +
    `${SEGMENT_BYTES / 1024 / 1024} MiB segments`,
);
console.log(
  "| workload | entries/s | commit p50 | commit p99 | log written | disk written | spares zero-filled | zeros written | spares recycled |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
for (const truncating of [true, false, true, false]) {
  const r = await run(truncating);
  console.log(
    `| ${r.workload} | ${r.entriesPerSecond} | ${r.p50Us} µs | ${r.p99Us} µs | ${r.logMB} MB | ${r.diskMB} MB | ${r.zeroFilled} | ${r.zerosMB} MB | ${r.recycled} |`,
  );
}
