/**
 * Human-readable formatting for the `hybridlog` command-line tool: the inspect and stats reports,
 * the one-line verify summary, and the progress bar drawn on a terminal.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { basename } from "node:path";
import type {
  CheckpointSlotReport,
  LogReport,
  LogStatus,
  SnapshotFileReport,
} from "../src/inspect.ts";

/** Width of the label column of reports. */
const LABEL_WIDTH = 17;
/** Cells of the progress bar. */
const BAR_CELLS = 30;
/** The bar is redrawn at most this often. */
const REDRAW_INTERVAL_MS = 100;

/** `label` padded to the label column, then `value`. */
export function line(label: string, value: string | number): string {
  return `${label.padEnd(LABEL_WIDTH - 1)} ${value}`;
}

/** Continuation line of a multi-line value. */
export function more(value: string): string {
  return `${" ".repeat(LABEL_WIDTH)}${value}`;
}

/** `1536` → `1.5 KiB`. */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Lowercase hex of `bytes`. */
export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");
}

/** A slot range `a..b`, or `none`. */
function range(low: number | undefined, high: number | undefined): string {
  return low === undefined ? "none" : `${low}..${high}`;
}

/** Where a problem is, for messages: `address 4096 in /d/segment-000000000000.hlog`. */
export function describeStatus(report: LogReport): string {
  const problem = report.problem ?? report.walk!.problem;
  const status = report.problem ? "corrupt" : report.walk!.status;
  if (status === "clean" || !problem) return "clean";
  const what = status === "torn" ? "torn tail" : "corrupt";
  return `${what} at address ${problem.address} in ${problem.path}: ${problem.reason}`;
}

function checkpointSlot(slot: CheckpointSlotReport): string {
  const c = slot.checkpoint;
  if (!c) return `slot ${slot.slot}: ${slot.empty ? "empty" : "INVALID (torn or damaged)"}`;
  return `slot ${slot.slot}: valid, checkpoint ${c.checkpointNumber}, commit ${c.commitNumber}, ` +
    `begin ${c.beginAddress}, committed until ${c.committedUntilAddress}` +
    (c.clean ? ", clean close" : "");
}

function snapshotLine(s: SnapshotFileReport): string {
  const name = basename(s.path);
  if (!s.valid) return `${name}  slot ${s.slot}  INVALID: ${s.problem}`;
  const created = new Date(s.createdAtMs!).toISOString();
  return `${name}  slot ${s.slot}  ${s.sizeBytes} bytes  created ${created}  valid`;
}

/** The snapshot list, one line each. */
export function snapshotLines(snapshots: readonly SnapshotFileReport[]): string[] {
  if (snapshots.length === 0) return [line("snapshots", "none")];
  return [line("snapshots", snapshots.length), ...snapshots.map((s) => more(snapshotLine(s)))];
}

/** The full `inspect` report of one log. */
export function inspectLines(report: LogReport): string[] {
  const out: string[] = [line("directory", report.dir)];
  out.push(line("kind", report.kind === "consensus" ? "ConsensusLog" : "AppendLog"));
  const point = report.checkpoint.newest;
  if (point) {
    out.push(line("log id", `0x${point.logId.toString(16).padStart(8, "0")}`));
    out.push(
      line(
        "segment size",
        `${point.segmentSizeBytes} bytes (${humanBytes(point.segmentSizeBytes)})`,
      ),
    );
  }
  const slots = report.checkpoint.slots;
  if (slots.length === 0) out.push(line("checkpoint", "missing"));
  slots.forEach((slot, i) =>
    out.push(i === 0 ? line("checkpoint", checkpointSlot(slot)) : more(checkpointSlot(slot)))
  );
  if (report.checkpoint.newestSlot !== undefined) {
    out.push(more(`newest valid: slot ${report.checkpoint.newestSlot}`));
  }
  const walk = report.walk;
  if (walk) {
    out.push(line("commit number", walk.commitNumber));
    out.push(line("begin address", walk.beginAddress));
    out.push(line("committed until", walk.committedUntilAddress));
    if (walk.stopAddress !== walk.committedUntilAddress) {
      out.push(line("scanned until", walk.stopAddress));
    }
    out.push(
      line("cookie", walk.cookie ? `0x${hex(walk.cookie)} (${walk.cookie.length} bytes)` : "none"),
    );
  }
  out.push(line("segments", report.segments.length));
  for (const s of report.segments) {
    const end = s.startAddress + (report.segmentSizeBytes ?? 0);
    out.push(more(
      `${basename(s.path)}  index ${s.index}  addresses ${s.startAddress}..${end}  ` +
        (s.problem ? `BAD HEADER: ${s.problem}` : "header ok"),
    ));
  }
  if (walk) {
    out.push(
      line(
        "entries",
        `${walk.counts.entries} committed (${walk.counts.payloadBytes} payload bytes), ${walk.uncommittedEntries} uncommitted`,
      ),
    );
    if (report.kind === "consensus") {
      const c = walk.consensus;
      out.push(
        line(
          "slots",
          `${range(c.committedSlotMin, c.committedSlotMax)} (${c.committed} committed records)`,
        ),
      );
      out.push(
        line(
          "accepted journal",
          `${c.accepted} records` +
            (c.accepted ? ` (slots ${range(c.acceptedSlotMin, c.acceptedSlotMax)})` : ""),
        ),
      );
      if (c.truncated) {
        out.push(
          line("truncated", `${c.truncated} records below the truncation point (not served)`),
        );
      }
    }
  }
  if (report.index) {
    const index = report.index;
    out.push(
      line(
        "index checkpoint",
        !index.present
          ? "none"
          : !index.valid
          ? "invalid (ignored: recovery rebuilds the index by a scan)"
          : `covers addresses below ${index.coveredAddress}: ${index.committedEntries} committed, ${index.acceptedEntries} accepted`,
      ),
    );
  }
  if (report.hardState) {
    const h = report.hardState;
    const state = h.newest;
    if (!h.present) out.push(line("hard state", "none (nothing promised, term 0, no vote)"));
    else if (!state) out.push(line("hard state", "INVALID: no valid slot"));
    else {
      const promised = state.promised
        ? `(${state.promised.round}, ${state.promised.node})`
        : "none";
      out.push(
        line(
          "hard state",
          `promised ${promised}, term ${state.term}, vote ${
            state.vote ?? "none"
          }, truncated below slot ${state.truncatedBelowSlot}`,
        ),
      );
      out.push(
        more(
          `sequence ${state.sequence}; ` +
            h.slots.map((s) =>
              `slot ${s.slot} ${s.valid ? "valid" : s.empty ? "empty" : "INVALID"}`
            ).join(", "),
        ),
      );
    }
  }
  if (report.snapshots.length) out.push(...snapshotLines(report.snapshots));
  out.push(line("status", describeStatus(report)));
  for (const note of walk?.notes ?? []) out.push(line("note", note));
  return out;
}

/** The `stats` report of one log. */
export function statsLines(report: LogReport): string[] {
  const walk = report.walk;
  const S = report.segmentSizeBytes;
  if (!walk || S === undefined) return [line("status", describeStatus(report))];
  const c = walk.counts;
  const committedBytes = walk.committedUntilAddress - walk.beginAddress;
  const diskBytes = report.segments.reduce((sum, s) => sum + s.sizeBytes, 0);
  const tailIndex = Math.floor(Math.max(walk.committedUntilAddress - 1, 0) / S);
  const lastFill = (walk.committedUntilAddress - tailIndex * S) / S;
  const percent = (x: number) => `${(100 * x).toFixed(1)}%`;
  const out = [
    line("entries", `${c.entries} committed, ${walk.uncommittedEntries} uncommitted`),
    line(
      "commits",
      `${c.commitMarkers} markers since the begin address (commit number ${walk.commitNumber})`,
    ),
    line(
      "records",
      `${
        c.entries + c.commitMarkers + c.paddingRecords
      }: ${c.entries} entries, ${c.commitMarkers} commit markers, ${c.paddingRecords} padding`,
    ),
    line("payload bytes", `${c.payloadBytes} (${humanBytes(c.payloadBytes)})`),
    line(
      "committed bytes",
      `${committedBytes} (${
        humanBytes(committedBytes)
      }), addresses ${walk.beginAddress}..${walk.committedUntilAddress}`,
    ),
    line(
      "segments",
      `${report.segments.length} × ${humanBytes(S)} = ${humanBytes(diskBytes)} on disk`,
    ),
    line(
      "fill",
      `${
        diskBytes ? percent(committedBytes / diskBytes) : "0.0%"
      } of segment space holds committed records; last segment ${percent(lastFill)} full`,
    ),
  ];
  if (report.kind === "consensus") {
    const k = walk.consensus;
    out.push(
      line(
        "consensus",
        `${k.committed} committed records (slots ${
          range(k.committedSlotMin, k.committedSlotMax)
        }), ${k.accepted} journaled accepts`,
      ),
    );
  }
  out.push(line("status", describeStatus(report)));
  return out;
}

/** The one-line `verify` summary of one log. */
export function verifySummary(label: string, report: LogReport): string {
  const walk = report.walk;
  if (!walk || report.problem) return `${label}: ${describeStatus(report)}`;
  if (walk.status !== "clean") {
    return `${label}: ${
      describeStatus(report)
    }; committed until ${walk.committedUntilAddress} (commit ${walk.commitNumber})`;
  }
  return `${label}: clean: commit ${walk.commitNumber}, ${walk.counts.entries} entries, ` +
    `${walk.verifiedBytes} bytes verified in ${report.segments.length} segment(s)`;
}

/** Exit code of a status: 0 clean, 1 torn tail, 2 corrupt. */
export function exitCodeOf(status: LogStatus): number {
  return status === "clean" ? 0 : status === "torn" ? 1 : 2;
}

/** A progress bar on stderr, drawn only when stderr is a terminal. */
export class ProgressBar {
  readonly #label: string;
  readonly #enabled: boolean;
  #drawnAtMs = 0;
  #drawn = false;

  constructor(label: string, enabled: boolean) {
    this.#label = label;
    this.#enabled = enabled;
  }

  /** Redraws the bar (throttled). */
  update = (doneBytes: number, totalBytes: number): void => {
    if (!this.#enabled) return;
    const now = Date.now();
    if (now - this.#drawnAtMs < REDRAW_INTERVAL_MS && doneBytes < totalBytes) return;
    this.#drawnAtMs = now;
    const fraction = totalBytes > 0 ? Math.min(doneBytes / totalBytes, 1) : 1;
    const cells = Math.round(fraction * BAR_CELLS);
    const bar = "#".repeat(cells) + "-".repeat(BAR_CELLS - cells);
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    process.stderr.write(
      `\r\x1b[2K${this.#label} [${bar}] ${percent} ${humanBytes(doneBytes)} / ${
        humanBytes(totalBytes)
      }`,
    );
    this.#drawn = true;
  };

  /** Erases the bar. */
  clear(): void {
    if (this.#drawn) process.stderr.write("\r\x1b[2K");
    this.#drawn = false;
  }
}
