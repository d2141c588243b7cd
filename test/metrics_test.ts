import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import {
  AppendLog,
  ConsensusLog,
  defaultMetrics,
  type HistogramSnapshot,
  InvalidArgumentError,
  LogManager,
  Metrics,
  type MetricsSnapshot,
} from "../mod.ts";
import { crashImage, entryBytes, fingerprint, flipByte, tempDir } from "./_helpers.ts";

const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 8 * 1024 };
const REGION = { segmentSizeBytes: 1024 * 1024, mutableSizeBytes: 256 * 1024 };
const BALLOT = { round: 1, node: 1 };

/** The label set of a log's series, as snapshot keys and Prometheus braces write it. */
const logKey = (label: string) => `log="${label}"`;

function histogram(snapshot: MetricsSnapshot, name: string, key: string): HistogramSnapshot {
  const value = snapshot[name]?.[key];
  assert.equal(typeof value, "object", `${name}{${key}} is a histogram`);
  return value as HistogramSnapshot;
}

/** Checks a histogram's invariants: bounds ascending, counts cumulative, within `count`. */
function assertCumulative(h: HistogramSnapshot): void {
  for (let i = 1; i < h.buckets.length; i++) {
    assert.ok(h.buckets[i][0] > h.buckets[i - 1][0], "bounds ascend");
    assert.ok(h.buckets[i][1] >= h.buckets[i - 1][1], "counts are cumulative");
  }
  assert.ok(h.buckets.at(-1)![1] <= h.count, "no bucket counts more than count");
}

/** `name="value",…` (the text between the braces, or a snapshot's label key) as an object. */
function parseLabels(body: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
  let at = 0;
  while (at < body.length) {
    LABEL.lastIndex = at;
    const label = LABEL.exec(body);
    assert.ok(label, `well-formed labels at ${at} of ${JSON.stringify(body)}`);
    if (label[3] === ",") assert.ok(LABEL.lastIndex < body.length, "no trailing comma");
    labels[label[1]] = label[2].replace(/\\([\\"n])/g, (_, c: string) => (c === "n" ? "\n" : c));
    at = LABEL.lastIndex;
  }
  return labels;
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict reader of the Prometheus text format 0.0.4, as far as this registry writes it: every
 * line is `# HELP name text`, `# TYPE name type` or `name{label="value",…} value`, and a sample's
 * metric must have had its HELP and TYPE first. Label values are unescaped (`\\`, `\"`, `\n`).
 */
function parsePrometheus(text: string): { samples: Sample[]; types: Map<string, string> } {
  assert.ok(text.endsWith("\n"), "the text ends with a line feed");
  const helps = new Set<string>();
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  for (const line of text.slice(0, -1).split("\n")) {
    const help = line.match(new RegExp(`^# HELP (${NAME}) (.*)$`));
    if (help) {
      assert.ok(!helps.has(help[1]), `one HELP for ${help[1]}`);
      helps.add(help[1]);
      continue;
    }
    const type = line.match(new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram)$`));
    if (type) {
      assert.ok(helps.has(type[1]), `HELP before TYPE for ${type[1]}`);
      types.set(type[1], type[2]);
      continue;
    }
    const sample = line.match(new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`));
    assert.ok(sample, `a sample line: ${JSON.stringify(line)}`);
    const [, name, body = "", valueText] = sample;
    const labels = parseLabels(body);
    const value = valueText === "+Inf" ? Infinity : Number(valueText);
    assert.ok(!Number.isNaN(value), `a number: ${valueText}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(family), `TYPE before the samples of ${name}`);
    if (family !== name) assert.equal(types.get(family), "histogram");
    samples.push({ name, labels, value });
  }
  return { samples, types };
}

/** Every label value that appears in `snapshot`, whatever the metric. */
function labelKeysOf(snapshot: MetricsSnapshot): string[] {
  return Object.values(snapshot).flatMap((series) => Object.keys(series));
}

describe("Metrics", () => {
  test("10 appends and 1 commit move every counter by exactly that", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    await using log = await AppendLog.open({ dir: dir.path, metrics });
    const key = logKey(log.dir);
    const opened = metrics.snapshot();
    assert.equal(opened.hybridlog_appends_total[key], 0);
    assert.equal(opened.hybridlog_open_logs[""], 1);
    assert.equal(opened.hybridlog_recoveries_total[""], 1);
    assert.equal(opened.hybridlog_recovery_torn_tails_total[""], 0);
    assert.equal(histogram(opened, "hybridlog_recovery_duration_seconds", "").count, 1);

    for (let i = 0; i < 10; i++) log.enqueue(entryBytes(i));
    await log.commit();

    const s = metrics.snapshot();
    assert.equal(s.hybridlog_appends_total[key], 10);
    assert.equal(s.hybridlog_commits_requested_total[key], 1);
    assert.equal(s.hybridlog_commit_cycles_total[key], 1);
    assert.equal(s.hybridlog_written_bytes_total[key], log.stats().bytesWritten);
    assert.ok(log.stats().bytesWritten > 0);
    const group = histogram(s, "hybridlog_commit_group_size", key);
    assert.deepEqual([group.count, group.sum], [1, 1]);
    assert.deepEqual(group.buckets[0], [1, 1], "one request fits the first bucket");
    const sync = histogram(s, "hybridlog_sync_duration_seconds", key);
    assert.equal(sync.count, 1, "one sync (durability data)");
    assert.ok(sync.sum > 0 && sync.sum < 60);
    assert.equal(s.hybridlog_accepts_total, undefined, "an AppendLog has no accepts series");
  });

  test("tryEnqueue and enqueueBatch count entries; a refused tryEnqueue counts nothing", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    await using log = await AppendLog.open({ dir: dir.path, metrics, ...SMALL });
    log.enqueueBatch([entryBytes(1), entryBytes(2), entryBytes(3)]);
    let placed = 0;
    while (log.tryEnqueue(entryBytes(4, 1000)) !== undefined) placed++;
    assert.equal(metrics.snapshot().hybridlog_appends_total[logKey(log.dir)], 3 + placed);
  });

  test("concurrent commits make one group commit; the histogram is cumulative", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    await using log = await AppendLog.open({ dir: dir.path, metrics });
    log.enqueue(entryBytes(0));
    const commits = [];
    for (let i = 0; i < 20; i++) commits.push(log.commit());
    await Promise.all(commits);
    log.enqueue(entryBytes(1));
    await log.commit();
    const s = metrics.snapshot();
    const key = logKey(log.dir);
    assert.equal(s.hybridlog_commits_requested_total[key], 21);
    assert.equal(s.hybridlog_commit_cycles_total[key], 2);
    const group = histogram(s, "hybridlog_commit_group_size", key);
    assert.deepEqual([group.count, group.sum], [2, 21]);
    assertCumulative(group);
    const le = (bound: number) => group.buckets.find(([b]) => b === bound)![1];
    assert.deepEqual([le(1), le(16), le(32), le(4096)], [1, 1, 2, 2]);
    assertCumulative(histogram(s, "hybridlog_sync_duration_seconds", key));
    assert.equal(histogram(s, "hybridlog_sync_duration_seconds", key).count, 2);
  });

  test("durability none records no sync latency", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    await using log = await AppendLog.open({ dir: dir.path, metrics, durability: "none" });
    log.enqueue(entryBytes(0));
    await log.commit();
    const s = metrics.snapshot();
    assert.equal(s.hybridlog_commit_cycles_total[logKey(log.dir)], 1);
    assert.equal(histogram(s, "hybridlog_sync_duration_seconds", logKey(log.dir)).count, 0);
  });

  test("ConsensusLog counts stored accepts and reports its region fill at snapshot time", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    await using log = await ConsensusLog.open({ dir: dir.path, metrics, ...REGION });
    const key = logKey(dir.path);
    for (let slot = 0; slot < 5; slot++) log.accept(slot, BALLOT, entryBytes(slot, 100));
    assert.throws(() => log.accept(0, { round: 0, node: 0 }, entryBytes(9)), {
      code: "ERR_BALLOT",
    });
    let s = metrics.snapshot();
    assert.equal(s.hybridlog_accepts_total[key], 5, "the refused accept is not counted");
    assert.equal(s.hybridlog_appends_total, undefined);
    const stats = log.stats();
    assert.equal(s.hybridlog_region_capacity_bytes[key], stats.regionCapacityBytes);
    assert.equal(s.hybridlog_region_live_bytes[key], stats.regionLiveBytes);
    assert.ok(stats.regionLiveBytes >= 500);

    await log.commitMany([0, 1, 2, 3, 4]);
    s = metrics.snapshot();
    assert.equal(s.hybridlog_region_live_bytes[key], log.stats().regionLiveBytes);
    assert.ok((s.hybridlog_region_live_bytes[key] as number) < stats.regionLiveBytes);
    assert.equal(s.hybridlog_commits_requested_total[key], 1);
    assert.equal(s.hybridlog_commit_cycles_total[key], 1);
    assert.equal(s.hybridlog_written_bytes_total[key], log.stats().bytesWritten);
  });

  test("a torn tail cut off at open counts as a torn-tail recovery", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    const image = join(dir.path, "image");
    const groups = await crashImage(join(dir.path, "log"), image, 3, { ...SMALL, metrics });
    flipByte(join(image, "segment-000000000000.hlog"), groups[2][5] % SMALL.segmentSizeBytes + 20);
    const before = metrics.snapshot();
    await using log = await AppendLog.open({ dir: image, ...SMALL, metrics });
    assert.equal(log.recoveredTruncatedTail, true);
    const after = metrics.snapshot();
    assert.equal(
      (after.hybridlog_recoveries_total[""] as number) -
        (before.hybridlog_recoveries_total[""] as number),
      1,
    );
    assert.equal(
      (after.hybridlog_recovery_torn_tails_total[""] as number) -
        (before.hybridlog_recovery_torn_tails_total[""] as number),
      1,
    );
  });

  test("Prometheus text parses line by line and agrees with the snapshot", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    const manager = new LogManager({ dir: dir.path, metrics, ...REGION });
    // A name that needs every escape: backslash, double quote, line feed.
    const name = 'table "a\\b"\nline two';
    {
      await using lease = await manager.acquire(name);
      lease.log.accept(1, BALLOT, entryBytes(1));
      await lease.log.commit(1);
      const text = metrics.prometheus();
      const { samples, types } = parsePrometheus(text);
      assert.ok(text.includes('log="table \\"a\\\\b\\"\\nline two"'), "the value is escaped");
      const ofLog = samples.filter((s) => s.labels.log === name);
      assert.ok(ofLog.length > 0, "the managed log's series are labelled with its name");
      const value = (sampleName: string, labels: Record<string, string>) =>
        samples.find((s) =>
          s.name === sampleName &&
          Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
          Object.keys(s.labels).length === Object.keys(labels).length
        )?.value;
      assert.equal(value("hybridlog_accepts_total", { log: name }), 1);
      assert.equal(types.get("hybridlog_accepts_total"), "counter");
      assert.equal(types.get("hybridlog_sync_duration_seconds"), "histogram");
      assert.equal(types.get("hybridlog_open_logs"), "gauge");

      // Every series of the snapshot is in the text with the same value.
      const snapshot = metrics.snapshot();
      for (const [metric, series] of Object.entries(snapshot)) {
        for (const [key, v] of Object.entries(series)) {
          const labels = parseLabels(key);
          if (typeof v === "number") {
            assert.equal(value(metric, labels), v, `${metric}{${key}}`);
            continue;
          }
          assert.equal(value(`${metric}_count`, labels), v.count);
          assert.equal(value(`${metric}_sum`, labels), v.sum);
          assert.equal(value(`${metric}_bucket`, { ...labels, le: "+Inf" }), v.count);
          for (const [bound, count] of v.buckets) {
            assert.equal(value(`${metric}_bucket`, { ...labels, le: String(bound) }), count);
          }
        }
      }
    }
    await manager.closeAll();
    const { samples } = parsePrometheus(metrics.prometheus());
    assert.ok(samples.every((s) => s.labels.log === undefined), "no log series after closeAll");
  });

  test("the snapshot is plain JSON and does not change with later recording", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    await using log = await AppendLog.open({ dir: dir.path, metrics });
    log.enqueue(entryBytes(0));
    await log.commit();
    const snapshot = metrics.snapshot();
    assert.deepEqual(JSON.parse(JSON.stringify(snapshot)), snapshot);
    log.enqueue(entryBytes(1));
    assert.equal(snapshot.hybridlog_appends_total[logKey(log.dir)], 1);
  });

  test("a closed log stops reporting, in the snapshot and in the Prometheus text", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    const append = await AppendLog.open({ dir: join(dir.path, "a"), metrics });
    const consensus = await ConsensusLog.open({ dir: join(dir.path, "c"), metrics, ...REGION });
    append.enqueue(entryBytes(0));
    consensus.accept(0, BALLOT, entryBytes(0));
    assert.equal(metrics.snapshot().hybridlog_open_logs[""], 2);
    const keys = [logKey(append.dir), logKey(join(dir.path, "c"))];
    for (const key of keys) assert.ok(labelKeysOf(metrics.snapshot()).includes(key));

    await append.close();
    await consensus.close();
    const s = metrics.snapshot();
    for (const key of keys) assert.ok(!labelKeysOf(s).includes(key), `${key} is gone`);
    assert.equal(s.hybridlog_open_logs[""], 0);
    assert.equal(s.hybridlog_recoveries_total[""], 2, "registry-wide series stay");
    assert.ok(!metrics.prometheus().includes(dir.path), "nor in the Prometheus text");
  });

  test("a LogManager counts evictions and labels a bytes-named log with its directory", async () => {
    using dir = tempDir();
    const metrics = new Metrics();
    const manager = new LogManager({ dir: dir.path, metrics, logCountMax: 1, ...REGION });
    const managerKey = `manager="${dir.path}"`;
    assert.equal(metrics.snapshot().hybridlog_manager_evictions_total[managerKey], 0);
    {
      await using lease = await manager.acquire(new Uint8Array([1, 2, 3]));
      lease.log.accept(1, BALLOT, entryBytes(1));
      const logDir = fs.readdirSync(dir.path).find((n) => n.startsWith("log-"))!;
      assert.equal(
        metrics.snapshot().hybridlog_accepts_total[logKey(join(dir.path, logDir))],
        1,
      );
    }
    {
      await using _lease = await manager.acquire("second");
    }
    const s = metrics.snapshot();
    assert.equal(s.hybridlog_manager_evictions_total[managerKey], 1);
    assert.equal(s.hybridlog_open_logs[""], 1, "the evicted log's series are gone");
    assert.equal(s.hybridlog_accepts_total[logKey("second")], 0);
    await manager.closeAll();
    assert.deepEqual(labelKeysOf(metrics.snapshot()).filter((k) => k !== ""), []);
  });

  test("a bad metrics option throws InvalidArgumentError and changes nothing on disk", async () => {
    using dir = tempDir();
    const existing = join(dir.path, "existing");
    await (await AppendLog.open({ dir: existing })).close();
    const before = fingerprint(dir.path);
    const fresh = join(dir.path, "fresh");
    for (const bad of [{}, "default", 1, null, { snapshot() {}, prometheus() {} }]) {
      for (const target of [existing, fresh]) {
        // deno-lint-ignore no-explicit-any
        const options = { dir: target, metrics: bad as any };
        for (const open of [() => AppendLog.open(options), () => ConsensusLog.open(options)]) {
          await assert.rejects(open(), (error: InvalidArgumentError) => {
            assert.ok(error instanceof InvalidArgumentError);
            assert.equal(error.code, "ERR_INVALID_ARGUMENT");
            assert.match(error.message, /metrics must be a Metrics registry/);
            return true;
          });
        }
        assert.throws(() => new LogManager(options), { code: "ERR_INVALID_ARGUMENT" });
      }
    }
    assert.equal(fingerprint(dir.path), before);
    assert.equal(fs.existsSync(fresh), false);
  });

  test("separate registries do not mix, and neither reaches defaultMetrics", async () => {
    using dir = tempDir();
    const one = new Metrics();
    const two = new Metrics();
    await using a = await AppendLog.open({ dir: join(dir.path, "a"), metrics: one });
    await using b = await AppendLog.open({ dir: join(dir.path, "b"), metrics: two });
    for (let i = 0; i < 3; i++) a.enqueue(entryBytes(i));
    b.enqueue(entryBytes(0));
    const s1 = one.snapshot();
    const s2 = two.snapshot();
    assert.deepEqual(s1.hybridlog_appends_total, { [logKey(a.dir)]: 3 });
    assert.deepEqual(s2.hybridlog_appends_total, { [logKey(b.dir)]: 1 });
    assert.equal(s1.hybridlog_open_logs[""], 1);
    const everywhere = labelKeysOf(defaultMetrics.snapshot());
    assert.ok(!everywhere.includes(logKey(a.dir)) && !everywhere.includes(logKey(b.dir)));
  });

  test("logs opened without the option record into defaultMetrics", async () => {
    using dir = tempDir();
    await using log = await AppendLog.open({ dir: dir.path });
    log.enqueue(entryBytes(0));
    log.enqueue(entryBytes(1));
    assert.equal(defaultMetrics.snapshot().hybridlog_appends_total[logKey(log.dir)], 2);
    await log.close();
    assert.ok(!labelKeysOf(defaultMetrics.snapshot()).includes(logKey(log.dir)));
  });
});
