/**
 * `LogManager` and `SnapshotStore`: what a replica pays to reach one of many logs, to commit on
 * many logs at once, and to take and read a snapshot.
 *
 * | workload                                             | hold it against                       |
 * |------------------------------------------------------|---------------------------------------|
 * | acquire + release of an open ("hot") log             | a Map lookup: nothing to open         |
 * | acquire + release of a closed ("cold") log           | reopen of a small log                 |
 * | 1 / 4 / 16 logs committing one entry at once         | durable commit per entry (one log)    |
 * | snapshot create of 1 MiB / 256 MiB (streamed)        | sequential write incl. fsync: ~2 GB/s |
 * | snapshot read of 1 MiB / 256 MiB (streamed, checked) | page-cache copy-out                   |
 *
 * Concurrent commits of different logs share the device flush where the file system allows it:
 * each log's fdatasync runs on the runtime's worker pool at the same time, and ext4 folds them
 * into one journal commit. The 1/4/16-log rows show how much of that sharing the OS delivers.
 *
 *   bun bench/manager_bench.ts
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys bench/manager_bench.ts
 *
 * @module
 */
import { bench, do_not_optimize, group } from "mitata";
import { LogManager } from "../src/log_manager.ts";
import { SnapshotStore } from "../src/snapshot_store.ts";
import {
  formatTime,
  makeTempDir,
  meanOf,
  runAndReport,
  runtime,
  runtimeVersion,
  shared,
  writeResults,
} from "./_shared.ts";

const VALUE = new Uint8Array(100).fill(7);
const CHUNK_BYTES = 1024 * 1024;
const SNAPSHOT_SIZES = [1, 256] as const; // MiB

const manager = shared(async () => {
  const m = new LogManager({ dir: makeTempDir(), logCountMax: 64 });
  for (let i = 0; i < 16; i++) (await m.acquire(`hot ${i}`)).release();
  return m;
}, (m) => m.closeAll({ timeoutMs: 10_000 }));

const coldManager = shared(async () => {
  const m = new LogManager({ dir: makeTempDir(), logCountMax: 1 });
  for (const name of ["cold a", "cold b"]) (await m.acquire(name)).release();
  return m;
}, (m) => m.closeAll({ timeoutMs: 10_000 }));

const snapshots = shared(() => SnapshotStore.open({ dir: makeTempDir() }), (s) => s.close());

async function* chunks(mebibytes: number): AsyncGenerator<Uint8Array> {
  const chunk = new Uint8Array(CHUNK_BYTES).fill(3);
  for (let i = 0; i < mebibytes; i++) yield chunk;
}

group("LogManager", () => {
  bench("acquire + release, hot log", async function* () {
    const m = await manager();
    yield async () => (await m.acquire("hot 0")).release();
  });
  bench("acquire + release, cold log (logCountMax 1: reopened each time)", async function* () {
    const m = await coldManager();
    let flip = false;
    yield async () => {
      flip = !flip;
      (await m.acquire(flip ? "cold a" : "cold b")).release();
    };
  });
  for (const count of [1, 4, 16]) {
    bench(`${count} logs each commit 1 entry at once`, async function* () {
      const m = await manager();
      const leases = await Promise.all(
        Array.from({ length: count }, (_, i) => m.acquire(`hot ${i}`)),
      );
      let slot = 1_000_000 * count;
      yield async () => {
        slot++;
        await Promise.all(leases.map((lease) => {
          lease.log.accept(slot, { round: 1, node: 1 }, VALUE);
          return lease.log.commit(slot);
        }));
      };
      for (const lease of leases) lease.release();
    });
  }
});

group("SnapshotStore", () => {
  for (const size of SNAPSHOT_SIZES) {
    bench(`create ${size} MiB snapshot`, async function* () {
      const store = await snapshots();
      let slot = size * 1_000_000;
      yield async () => do_not_optimize(await store.create(++slot, chunks(size)));
      await store.prune({ keep: 1 });
    });
    bench(`read ${size} MiB snapshot`, async function* () {
      const store = await snapshots();
      const info = await store.create(size * 10_000_000, chunks(size));
      yield async () => {
        let total = 0;
        for await (const part of store.open(info.slot)) total += part.length;
        do_not_optimize(total);
      };
    });
  }
});

await runAndReport((results, context) => {
  const rows = [...results.keys()].map((name) => {
    const ns = meanOf(results, name);
    const perLog = name.match(/^(\d+) logs/);
    const extra = perLog
      ? `${(Number(perLog[1]) / (ns / 1e9)).toFixed(0)} commits/s`
      : name.includes("MiB snapshot")
      ? `${(Number(name.match(/(\d+) MiB/)![1]) * 1024 * 1024 / (ns / 1e9) / 1e9).toFixed(2)} GB/s`
      : "";
    return { workload: name, mean: formatTime(ns), throughput: extra, ns };
  });
  console.log(`\n| workload | ${runtime} ${runtimeVersion} | throughput |\n|---|---:|---:|`);
  for (const row of rows) console.log(`| ${row.workload} | ${row.mean} | ${row.throughput} |`);
  writeResults(`${runtime}-manager.json`, {
    runtime,
    version: runtimeVersion,
    date: new Date().toISOString(),
    context,
    table: rows,
    raw: Object.fromEntries(results),
  });
});
