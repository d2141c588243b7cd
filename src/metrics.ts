/**
 * Metrics: the counters, gauges and histograms every log records into a registry, read back as a
 * plain object ({@linkcode Metrics.snapshot}) or as Prometheus text
 * ({@linkcode Metrics.prometheus}). Logs record into {@linkcode defaultMetrics} unless opened with
 * their own registry (the `metrics` option).
 *
 * Recording is cheap by construction: a log resolves its series objects once, when it opens, and
 * then only adds to a number field — no map lookup, no allocation per append or accept. Gauges
 * that cost something to compute (region fill) are read when a snapshot is taken. A log's series
 * leave the registry when it closes; the registry holds a log's gauges only through a `WeakRef`,
 * so it never keeps a log alive.
 *
 * | metric | type | labels | what |
 * |---|---|---|---|
 * | `hybridlog_appends_total` | counter | `log` | entries appended to an `AppendLog` |
 * | `hybridlog_accepts_total` | counter | `log` | accepts a `ConsensusLog` stored (this thread) |
 * | `hybridlog_commits_requested_total` | counter | `log` | commit requests to the group commit |
 * | `hybridlog_commit_cycles_total` | counter | `log` | group commits: one marker and one sync |
 * | `hybridlog_commit_group_size` | histogram | `log` | commit requests served per group commit |
 * | `hybridlog_sync_duration_seconds` | histogram | `log` | the segment syncs of a group commit |
 * | `hybridlog_written_bytes_total` | counter | `log` | bytes written to segment files |
 * | `hybridlog_region_live_bytes` | gauge | `log` | live bytes in a `ConsensusLog`'s region |
 * | `hybridlog_region_capacity_bytes` | gauge | `log` | capacity of that region |
 * | `hybridlog_open_logs` | gauge | — | logs open in this registry |
 * | `hybridlog_recoveries_total` | counter | — | successful opens (each runs recovery) |
 * | `hybridlog_recovery_torn_tails_total` | counter | — | recoveries that cut off a torn tail |
 * | `hybridlog_recovery_duration_seconds` | histogram | — | time to open a log, recovery included |
 * | `hybridlog_manager_evictions_total` | counter | `manager` | idle logs a `LogManager` closed |
 *
 * `log` is the log's directory (for a `LogManager` log: its name when the name is a string). Logs
 * that share a label value share its series. Recovery series carry no `log` label: they describe
 * opens, and outlive the log that was opened.
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/**
 * A histogram series as {@linkcode Metrics.snapshot} reports it.
 *
 * @example
 * ```ts
 * import { AppendLog, type HistogramSnapshot, Metrics } from "@hybridlog/hybridlog";
 *
 * const metrics = new Metrics();
 * await using log = await AppendLog.open({ dir: "./data/queue", metrics });
 * log.enqueue(new TextEncoder().encode("hello"));
 * await log.commit();
 * const series = metrics.snapshot().hybridlog_sync_duration_seconds;
 * const sync = series[`log="${log.dir}"`] as HistogramSnapshot;
 * console.log(sync.count, sync.sum / sync.count); // 1 sync, its duration in seconds
 * ```
 */
export interface HistogramSnapshot {
  /** Number of observations. */
  count: number;
  /** Sum of the observed values. */
  sum: number;
  /**
   * `[upperBound, cumulativeCount]` in ascending bound order: observations `<= upperBound`. The
   * `+Inf` bucket is left out (JSON has no `Infinity`): its count is `count`.
   */
  buckets: Array<[number, number]>;
}

/**
 * Every series of a registry: metric name, then label set as Prometheus writes it between the
 * braces (`log="/data/orders"`; `""` for a metric without labels), then the value — a number for
 * counters and gauges, a {@linkcode HistogramSnapshot} for histograms.
 *
 * @example
 * ```ts
 * import { AppendLog, Metrics, type MetricsSnapshot } from "@hybridlog/hybridlog";
 *
 * const metrics = new Metrics();
 * await using log = await AppendLog.open({ dir: "./data/queue", metrics });
 * log.enqueue(new TextEncoder().encode("hello"));
 * const snapshot: MetricsSnapshot = metrics.snapshot();
 * console.log(snapshot.hybridlog_appends_total[`log="${log.dir}"`]); // 1
 * ```
 */
export type MetricsSnapshot = Record<string, Record<string, number | HistogramSnapshot>>;

type Kind = "counter" | "gauge" | "histogram";

/** One metric family: its name, type, help text, label (if any) and bucket bounds. */
interface FamilyDefinition {
  readonly name: string;
  readonly kind: Kind;
  readonly help: string;
  /** The one label its series carry; none for registry-wide series. */
  readonly label?: "log" | "manager";
  /** Histogram bucket upper bounds, ascending. */
  readonly bounds?: readonly number[];
}

/**
 * Sync latency buckets, 25 µs to 10 s: an fdatasync with nothing dirty took 20–50 µs here, a
 * durable commit p50 70 µs and p99 up to 1.6 ms (README benchmarks); slow disks reach seconds.
 */
const SYNC_SECONDS_BOUNDS = [
  0.000025,
  0.00005,
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
  10,
];
/** Open-and-recover time, 1 ms (clean close, nothing to scan) to a minute (a large replay). */
const RECOVERY_SECONDS_BOUNDS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  1,
  2.5,
  10,
  60,
];
/** Commit requests per group commit: powers of two up to a few thousand concurrent commits. */
const GROUP_SIZE_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

const FAMILIES = {
  appends: {
    name: "hybridlog_appends_total",
    kind: "counter",
    label: "log",
    help: "Entries appended to an AppendLog.",
  },
  accepts: {
    name: "hybridlog_accepts_total",
    kind: "counter",
    label: "log",
    help: "Accepts a ConsensusLog stored, made in the thread that owns the log.",
  },
  commitsRequested: {
    name: "hybridlog_commits_requested_total",
    kind: "counter",
    label: "log",
    help: "Commit requests made to the log's group commit.",
  },
  commitCycles: {
    name: "hybridlog_commit_cycles_total",
    kind: "counter",
    label: "log",
    help: "Group commits completed, each one commit marker and one sync.",
  },
  groupSize: {
    name: "hybridlog_commit_group_size",
    kind: "histogram",
    label: "log",
    bounds: GROUP_SIZE_BOUNDS,
    help: "Commit requests served by one group commit.",
  },
  syncSeconds: {
    name: "hybridlog_sync_duration_seconds",
    kind: "histogram",
    label: "log",
    bounds: SYNC_SECONDS_BOUNDS,
    help: "Time the segment syncs (fdatasync or fsync) of one group commit took.",
  },
  writtenBytes: {
    name: "hybridlog_written_bytes_total",
    kind: "counter",
    label: "log",
    help: "Bytes written to segment files.",
  },
  regionLiveBytes: {
    name: "hybridlog_region_live_bytes",
    kind: "gauge",
    label: "log",
    help: "Bytes of live accepted entries in a ConsensusLog's mutable region.",
  },
  regionCapacityBytes: {
    name: "hybridlog_region_capacity_bytes",
    kind: "gauge",
    label: "log",
    help: "Capacity of a ConsensusLog's mutable region in bytes.",
  },
  openLogs: {
    name: "hybridlog_open_logs",
    kind: "gauge",
    help: "Logs open and recording into this registry.",
  },
  recoveries: {
    name: "hybridlog_recoveries_total",
    kind: "counter",
    help: "Logs opened; every open runs recovery.",
  },
  tornTails: {
    name: "hybridlog_recovery_torn_tails_total",
    kind: "counter",
    help: "Recoveries that cut off a torn or uncommitted tail.",
  },
  recoverySeconds: {
    name: "hybridlog_recovery_duration_seconds",
    kind: "histogram",
    bounds: RECOVERY_SECONDS_BOUNDS,
    help: "Time opening a log took, recovery included.",
  },
  evictions: {
    name: "hybridlog_manager_evictions_total",
    kind: "counter",
    label: "manager",
    help: "Idle logs a LogManager closed to stay within its limits.",
  },
} as const satisfies Record<string, FamilyDefinition>;

/** A counter or gauge series: record by adding to `value`. */
export class NumberSeries {
  /** The current value. */
  value = 0;
}

/** A histogram series: per-bucket counts (cumulated when read), sum and count. */
export class HistogramSeries {
  /** Bucket upper bounds, ascending. */
  readonly bounds: readonly number[];
  /** Observations per bucket; the last counts those above every bound. */
  readonly counts: Float64Array;
  /** Sum of observed values. */
  sum = 0;
  /** Number of observations. */
  count = 0;

  /** @param bounds Bucket upper bounds, ascending. */
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one observation. */
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

type Series = NumberSeries | HistogramSeries;
/** Reads a gauge at snapshot time; `undefined` once its log is gone (the reader is dropped). */
type Reader = () => number | undefined;

interface SeriesEntry {
  /** Holders of the series; it leaves the registry when the last one releases it. */
  refs: number;
  series: Series;
  /** For gauges computed at snapshot time: their sum is added to `series.value`. */
  readers: Reader[];
}

/** The registry behind a {@linkcode Metrics}: families in catalogue order, series by label key. */
class Registry {
  readonly families = new Map<FamilyDefinition, Map<string, SeriesEntry>>();
  readonly openLogs: NumberSeries;
  readonly recoveries: NumberSeries;
  readonly tornTails: NumberSeries;
  readonly recoverySeconds: HistogramSeries;

  constructor() {
    for (const family of Object.values(FAMILIES)) this.families.set(family, new Map());
    // Registry-wide series exist from the start (and report 0), as Prometheus prefers.
    this.openLogs = this.acquire(FAMILIES.openLogs, "") as NumberSeries;
    this.recoveries = this.acquire(FAMILIES.recoveries, "") as NumberSeries;
    this.tornTails = this.acquire(FAMILIES.tornTails, "") as NumberSeries;
    this.recoverySeconds = this.acquire(FAMILIES.recoverySeconds, "") as HistogramSeries;
  }

  /** The series of `family` for `labelValue`, created if new; the caller must release it. */
  acquire(family: FamilyDefinition, labelValue: string): Series {
    const series = this.families.get(family)!;
    const key = labelKey(family, labelValue);
    let entry = series.get(key);
    if (!entry) {
      const created = family.kind === "histogram"
        ? new HistogramSeries(family.bounds!)
        : new NumberSeries();
      entry = { refs: 0, series: created, readers: [] };
      series.set(key, entry);
    }
    entry.refs++;
    return entry.series;
  }

  release(family: FamilyDefinition, labelValue: string): void {
    const series = this.families.get(family)!;
    const key = labelKey(family, labelValue);
    const entry = series.get(key);
    if (entry && --entry.refs === 0) series.delete(key);
  }

  addReader(family: FamilyDefinition, labelValue: string, reader: Reader): void {
    this.acquire(family, labelValue);
    this.families.get(family)!.get(labelKey(family, labelValue))!.readers.push(reader);
  }

  removeReader(family: FamilyDefinition, labelValue: string, reader: Reader): void {
    const entry = this.families.get(family)!.get(labelKey(family, labelValue));
    const at = entry?.readers.indexOf(reader) ?? -1;
    if (at < 0) return;
    entry!.readers.splice(at, 1);
    this.release(family, labelValue);
  }

  /** Every family with series, reading gauges now; readers of vanished logs are dropped. */
  *collect(): Generator<[FamilyDefinition, Array<[string, Series]>]> {
    for (const [family, series] of this.families) {
      const rows: Array<[string, Series]> = [];
      for (const [key, entry] of series) {
        let value = 0;
        for (const reader of entry.readers.slice()) {
          const read = reader();
          if (read === undefined) {
            entry.readers.splice(entry.readers.indexOf(reader), 1);
            entry.refs--;
          } else value += read;
        }
        if (entry.refs === 0) {
          series.delete(key);
          continue;
        }
        if (entry.readers.length === 0) {
          rows.push([key, entry.series]);
        } else {
          const gauge = new NumberSeries();
          gauge.value = (entry.series as NumberSeries).value + value;
          rows.push([key, gauge]);
        }
      }
      if (rows.length > 0) yield [family, rows];
    }
  }
}

/** A character {@linkcode escapeLabelValue} changes. */
const LABEL_ESCAPED_CHARACTER = /[\\"\n]/;

/** Prometheus label-value escaping: backslash, double quote and line feed. */
function escapeLabelValue(value: string): string {
  // Every open and close looks its log's series up by label ~20 times, and a log directory
  // rarely holds any of the three: test once rather than run three replacements each time.
  if (!LABEL_ESCAPED_CHARACTER.test(value)) return value;
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text escaping: backslash and line feed. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function labelKey(family: FamilyDefinition, labelValue: string): string {
  return family.label === undefined ? "" : `${family.label}="${escapeLabelValue(labelValue)}"`;
}

/** A sample value as Prometheus writes it (`+Inf`, `-Inf`, `NaN` for the non-finite). */
function formatValue(value: number): string {
  if (Number.isFinite(value)) return String(value);
  if (Number.isNaN(value)) return "NaN";
  return value > 0 ? "+Inf" : "-Inf";
}

function braces(...labels: string[]): string {
  const body = labels.filter((label) => label !== "").join(",");
  return body === "" ? "" : `{${body}}`;
}

let registryOf: (metrics: Metrics) => Registry;

/**
 * A metrics registry: the counters, gauges and histograms of the logs that record into it,
 * readable as a plain object or as Prometheus text. Logs use {@linkcode defaultMetrics} unless
 * given another with the `metrics` option; separate registries never mix.
 *
 * @example
 * ```ts
 * import { AppendLog, Metrics } from "@hybridlog/hybridlog";
 *
 * const metrics = new Metrics();
 * await using log = await AppendLog.open({ dir: "./data/queue", metrics });
 * for (let i = 0; i < 10; i++) log.enqueue(new TextEncoder().encode(`entry ${i}`));
 * await log.commit();
 * console.log(metrics.snapshot().hybridlog_commit_cycles_total[`log="${log.dir}"`]); // 1
 * console.log(metrics.prometheus()); // # HELP hybridlog_appends_total ...
 * ```
 */
export class Metrics {
  #registry = new Registry();

  static {
    registryOf = (metrics) => metrics.#registry;
  }

  /**
   * Every series now, as a plain JSON-serialisable object: metric name, then label set, then a
   * number (counters, gauges) or `{ count, sum, buckets }` (histograms, buckets cumulative).
   *
   * @returns A new object; later recording does not change it.
   */
  snapshot(): MetricsSnapshot {
    const snapshot: MetricsSnapshot = {};
    for (const [family, rows] of this.#registry.collect()) {
      const values: Record<string, number | HistogramSnapshot> = {};
      for (const [key, series] of rows) {
        if (series instanceof NumberSeries) {
          values[key] = series.value;
          continue;
        }
        let cumulative = 0;
        const buckets: Array<[number, number]> = series.bounds.map((bound, i) => {
          cumulative += series.counts[i];
          return [bound, cumulative];
        });
        values[key] = { count: series.count, sum: series.sum, buckets };
      }
      snapshot[family.name] = values;
    }
    return snapshot;
  }

  /**
   * Every series now in the Prometheus text exposition format 0.0.4 (`# HELP`, `# TYPE`, one
   * sample per line; histograms as `_bucket{le="…"}`, `_sum`, `_count`). Serve it with
   * `Content-Type: text/plain; version=0.0.4`.
   *
   * @returns The text, ending with a line feed (empty when there is nothing to report).
   */
  prometheus(): string {
    const lines: string[] = [];
    for (const [family, rows] of this.#registry.collect()) {
      const name = family.name;
      lines.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.kind}`);
      for (const [key, series] of rows) {
        if (series instanceof NumberSeries) {
          lines.push(`${name}${braces(key)} ${formatValue(series.value)}`);
          continue;
        }
        let cumulative = 0;
        series.bounds.forEach((bound, i) => {
          cumulative += series.counts[i];
          lines.push(`${name}_bucket${braces(key, `le="${formatValue(bound)}"`)} ${cumulative}`);
        });
        lines.push(`${name}_bucket${braces(key, 'le="+Inf"')} ${series.count}`);
        lines.push(`${name}_sum${braces(key)} ${formatValue(series.sum)}`);
        lines.push(`${name}_count${braces(key)} ${series.count}`);
      }
    }
    return lines.length === 0 ? "" : `${lines.join("\n")}\n`;
  }
}

/**
 * The process-wide registry (one per JavaScript realm: each Worker has its own) that every log
 * records into unless opened with another one.
 *
 * @example
 * ```ts
 * import { AppendLog, defaultMetrics } from "@hybridlog/hybridlog";
 *
 * await using log = await AppendLog.open({ dir: "./data/queue" });
 * log.enqueue(new TextEncoder().encode("hello"));
 * await log.commit();
 * // A server answers GET /metrics with this text, as content-type "text/plain; version=0.0.4".
 * console.log(defaultMetrics.prometheus());
 * ```
 */
export const defaultMetrics: Metrics = new Metrics();

/**
 * Checks the `metrics` option: `undefined` means {@linkcode defaultMetrics}.
 *
 * @throws {InvalidArgumentError} `value` is not a {@linkcode Metrics}.
 */
export function checkMetrics(what: string, value: unknown): Metrics {
  if (value === undefined) return defaultMetrics;
  if (value instanceof Metrics) return value;
  const got = value === null
    ? "null"
    : typeof value === "object"
    ? `a ${(value as object).constructor?.name ?? "object"}`
    : `${typeof value} ${String(value)}`;
  throw new InvalidArgumentError(`Cannot ${what}: metrics must be a Metrics registry, got ${got}`);
}

/** What a region gauge reads. */
interface RegionFill {
  readonly liveBytes: number;
  readonly capacityBytes: number;
}

/** A reader that holds its target only weakly, so the registry never keeps a log alive. */
function weakReader<T extends object>(target: T, read: (target: T) => number): Reader {
  const ref = new WeakRef(target);
  return () => {
    const held = ref.deref();
    return held === undefined ? undefined : read(held);
  };
}

/**
 * The series of one open log, resolved once at open: recording is `series.value += n`. The log's
 * series leave the registry at {@linkcode LogMetrics.release} (its close).
 */
export class LogMetrics {
  readonly commitsRequested: NumberSeries;
  readonly commitCycles: NumberSeries;
  readonly groupSize: HistogramSeries;
  readonly syncSeconds: HistogramSeries;
  readonly writtenBytes: NumberSeries;
  #registry: Registry;
  #label: string;
  #held: FamilyDefinition[] = [];
  #readers: Array<[FamilyDefinition, Reader]> = [];
  #released = false;

  /**
   * @param metrics The registry to record into.
   * @param label The `log` label: the log's directory, or a managed log's name.
   */
  constructor(metrics: Metrics, label: string) {
    this.#registry = registryOf(metrics);
    this.#label = label;
    this.commitsRequested = this.#hold(FAMILIES.commitsRequested) as NumberSeries;
    this.commitCycles = this.#hold(FAMILIES.commitCycles) as NumberSeries;
    this.groupSize = this.#hold(FAMILIES.groupSize) as HistogramSeries;
    this.syncSeconds = this.#hold(FAMILIES.syncSeconds) as HistogramSeries;
    this.writtenBytes = this.#hold(FAMILIES.writtenBytes) as NumberSeries;
    this.#registry.openLogs.value++;
  }

  #hold(family: FamilyDefinition): Series {
    this.#held.push(family);
    return this.#registry.acquire(family, this.#label);
  }

  /** The appends counter (an `AppendLog`'s; call once, at open). */
  appends(): NumberSeries {
    return this.#hold(FAMILIES.appends) as NumberSeries;
  }

  /** The accepts counter (a `ConsensusLog`'s; call once, at open). */
  accepts(): NumberSeries {
    return this.#hold(FAMILIES.accepts) as NumberSeries;
  }

  /** Reports `region`'s live bytes and capacity at snapshot time, until release. */
  watchRegion(region: RegionFill): void {
    const gauges: Array<[FamilyDefinition, Reader]> = [
      [FAMILIES.regionLiveBytes, weakReader(region, (r) => r.liveBytes)],
      [FAMILIES.regionCapacityBytes, weakReader(region, (r) => r.capacityBytes)],
    ];
    for (const [family, reader] of gauges) {
      this.#registry.addReader(family, this.#label, reader);
      this.#readers.push([family, reader]);
    }
  }

  /** Records a successful open that began at `startedMs` (`performance.now()`). */
  recovered(startedMs: number, tornTail: boolean): void {
    const registry = this.#registry;
    registry.recoveries.value++;
    if (tornTail) registry.tornTails.value++;
    registry.recoverySeconds.observe((performance.now() - startedMs) / 1000);
  }

  /** Removes the log's series from the registry (at close). Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    const registry = this.#registry;
    for (const family of this.#held) registry.release(family, this.#label);
    for (const [family, reader] of this.#readers) {
      registry.removeReader(family, this.#label, reader);
    }
    registry.openLogs.value--;
  }
}

/** The series of one `LogManager`, labelled `manager` with its directory. */
export class ManagerMetrics {
  readonly evictions: NumberSeries;
  #registry: Registry;
  #label: string;
  #released = false;

  /**
   * @param metrics The registry to record into.
   * @param dir The manager's directory (the `manager` label).
   */
  constructor(metrics: Metrics, dir: string) {
    this.#registry = registryOf(metrics);
    this.#label = dir;
    this.evictions = this.#registry.acquire(FAMILIES.evictions, dir) as NumberSeries;
  }

  /** Removes the manager's series (at `closeAll`). Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#registry.release(FAMILIES.evictions, this.#label);
  }
}

/**
 * Key of an internal `ConsensusLog.open` option: the `log` label value to use instead of the
 * directory (a `LogManager` passes the log's name).
 */
export const LOG_LABEL: unique symbol = Symbol("hybridlog.logLabel");
