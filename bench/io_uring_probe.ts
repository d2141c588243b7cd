// Measurement, not a test: one durable write (write + fdatasync) per op into a preallocated file,
// through io_uring `writeAndSync("data")` against `node:fs` `writeSync` + `fdatasyncSync` (on the
// JS thread) and the callback forms `fs.write` + `fs.fdatasync` (off the JS thread). Reports the
// median (and p99) µs per op of N sequential ops, the process CPU time per op, and the longest
// event-loop gap a 1 ms interval saw while the ops ran (for the synchronous calls that is the whole
// run: the loop never turns). Under Bun it also compares the io_uring completion
// strategies (eventfd / spin / timer) that `ffi/io_uring_bun.ts` chooses between.
//
//   bun bench/io_uring_probe.ts [--n 1000] [--dir .]
//   deno run --allow-ffi --allow-read --allow-write --allow-env bench/io_uring_probe.ts [--n 1000]
import * as fs from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Uring } from "../ffi/types.ts";

const { values } = parseArgs({
  options: { n: { type: "string", default: "1000" }, dir: { type: "string", default: "." } },
});
const N = Number(values.n);
const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
const runtime = isBun
  ? `bun ${(globalThis as any).Bun.version}`
  : `deno ${(globalThis as any).Deno.version.deno}`;

type Open = (entries: number) => { uring?: Uring; reason?: string };
const backend = isBun ? "../ffi/io_uring_bun.ts" : "../ffi/io_uring_deno.ts";
const mod = await import(backend);
const rings: [string, Open][] = isBun
  ? (["eventfd", "spin", "timer"] as const).map((completion) => [
    `io_uring writeAndSync("data") [${completion}]`,
    (entries: number) => mod.openUringWith(entries, { completion }),
  ])
  : [[`io_uring writeAndSync("data") [nonblocking io_uring_enter]`, mod.openUring]];

const FILE_BYTES = 64 * 1024 * 1024;
const dir = fs.mkdtempSync(join(values.dir!, ".io_uring_probe-"));
const path = join(dir, "data");

/** A file of FILE_BYTES real (non-sparse) zero blocks, synced, open read-write. */
function preallocated(): number {
  const fd = fs.openSync(path, "w+");
  const zeros = new Uint8Array(1024 * 1024);
  for (let at = 0; at < FILE_BYTES; at += zeros.length) {
    fs.writeSync(fd, zeros, 0, zeros.length, at);
  }
  fs.fsyncSync(fd);
  return fd;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

interface Result {
  medianUs: number;
  p99Us: number;
  cpuUsPerOp: number;
  maxLoopGapMs: number;
}

async function measure(
  op: (bytes: Uint8Array, at: number) => Promise<void> | void,
  size: number,
): Promise<Result> {
  const bytes = new Uint8Array(size).fill(0x5a);
  for (let i = 0; i < 20; i++) await op(bytes, (i * size) % FILE_BYTES); // warm-up
  const times: number[] = [];
  let last = performance.now();
  let maxGap = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
  }, 1);
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < N; i++) {
    const at = (i * size) % (FILE_BYTES - size);
    const t0 = performance.now();
    await op(bytes, at);
    times.push((performance.now() - t0) * 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  clearInterval(ticker);
  maxGap = Math.max(maxGap, performance.now() - last); // a loop that never yielded: all of it
  const sorted = [...times].sort((a, b) => a - b);
  return {
    medianUs: median(times),
    p99Us: sorted[Math.floor(sorted.length * 0.99)],
    cpuUsPerOp: (cpu.user + cpu.system) / N,
    maxLoopGapMs: maxGap,
  };
}

const rows: [string, number, Result][] = [];
const fd = preallocated();
try {
  for (const size of [100, 12_800]) {
    rows.push([
      "node:fs writeSync + fdatasyncSync",
      size,
      await measure((bytes, at) => {
        fs.writeSync(fd, bytes, 0, bytes.length, at);
        fs.fdatasyncSync(fd);
      }, size),
    ]);
    rows.push([
      "node:fs write + fdatasync (callbacks)",
      size,
      await measure(
        (bytes, at) =>
          new Promise<void>((resolve, reject) =>
            fs.write(fd, bytes, 0, bytes.length, at, (e) => {
              if (e) return reject(e);
              fs.fdatasync(fd, (e2) => (e2 ? reject(e2) : resolve()));
            })
          ),
        size,
      ),
    ]);
    for (const [name, open] of rings) {
      const { uring, reason } = open(64);
      if (!uring) {
        console.log(`${name}: unavailable: ${reason}`);
        continue;
      }
      rows.push([
        name,
        size,
        await measure((bytes, at) => uring.writeAndSync(fd, bytes, at, "data"), size),
      ]);
      uring.close();
    }
  }
} finally {
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
}

console.log(
  `${runtime}, N=${N} sequential durable writes into a preallocated file (${values.dir})`,
);
console.log("bytes  | µs/op p50 | µs/op p99 | CPU µs/op | max loop gap ms | method");
for (const [name, size, r] of rows) {
  console.log(
    `${String(size).padStart(6)} | ${r.medianUs.toFixed(1).padStart(9)} | ${
      r.p99Us.toFixed(1).padStart(9)
    } | ` +
      `${r.cpuUsPerOp.toFixed(1).padStart(9)} | ${
        r.maxLoopGapMs.toFixed(2).padStart(15)
      } | ${name}`,
  );
}
