#!/usr/bin/env bun
/**
 * `hybridlog`: inspect, verify and dump hybridlog directories from the command line. Read-only:
 * it never locks, recovers or writes, so it is safe on a log another process has open.
 *
 * ```sh
 * bun bin/hybridlog.ts verify ./data/orders
 * deno run --allow-read --allow-env bin/hybridlog.ts inspect ./data/orders
 * ```
 *
 * Exit codes: 0 clean, 1 torn tail, 2 corrupt, 64 usage error, 66 no such directory or not a log.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  CONSENSUS_ENTRY_HEADER_BYTES,
  decodeConsensusEntry,
  detectKind,
  type DirectoryKind,
  inspectLog,
  listManagedLogs,
  listSnapshots,
  type LogReport,
  type ManagedLogReport,
  readEntries,
  statusOf,
} from "../src/inspect.ts";
import {
  describeStatus,
  exitCodeOf,
  hex,
  inspectLines,
  line,
  ProgressBar,
  snapshotLines,
  statsLines,
  verifySummary,
} from "./_report.ts";

/** The tool's version (the package version). */
export const VERSION = "0.1.0";

/** Exit codes (BSD sysexits for usage and input errors). */
export const EXIT = {
  clean: 0,
  torn: 1,
  corrupt: 2,
  usage: 64,
  noInput: 66,
  software: 70,
} as const;

const USAGE = `Usage: hybridlog <command> DIR [options]

Inspect and verify hybridlog directories without opening them for writing: no lock, no
recovery, nothing written. Safe on a log another process has open.

Commands:
  inspect DIR   checkpoint slots, segments, addresses, commit point, cookie, slot range,
                index checkpoint, hard state and snapshots
  verify DIR    check every checksum; exit 0 clean, 1 torn tail, 2 corrupt
  dump DIR      committed entries as JSON lines, in address order:
                {address, slot?, ballot?, type?, length, value}; slots below a consensus
                log's truncation point are left out
  stats DIR     counts, bytes, segments and fill

DIR is a log directory (AppendLog or ConsensusLog), a LogManager directory (every log in it,
or one with --log) or a SnapshotStore directory.

Options:
  --from ADDRESS        dump: entries at or after this address (default: the begin address)
  --to ADDRESS          dump: entries before this address (default: the committed-until address)
  --format json|hex     dump: value as base64 (json, the default) or hex
  --log NAME            a LogManager directory: only the log with this name (or log-… directory)
  --json                inspect, verify, stats: one JSON object instead of text
  -h, --help            show this help
  -V, --version         show the version

Exit codes: 0 clean, 1 torn tail, 2 corrupt, 64 usage error, 66 no such directory or not a log.
`;

const OPTIONS = {
  from: { type: "string" },
  to: { type: "string" },
  format: { type: "string" },
  log: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

/** Which options each command takes. */
const COMMAND_OPTIONS: Record<string, readonly string[]> = {
  inspect: ["log", "json"],
  verify: ["log", "json"],
  stats: ["log", "json"],
  dump: ["from", "to", "format", "log"],
};

/** A failure the tool reports in one line and turns into an exit code. */
class CliError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number, message: string) {
    super(message);
    this.exitCode = exitCode;
  }
}

type Values = {
  from?: string;
  to?: string;
  format?: string;
  log?: string;
  json?: boolean;
  help?: boolean;
  version?: boolean;
};

/** Output goes through here so `dump` can stream and stop quietly on a closed pipe. */
function write(text: string): Promise<void> {
  return new Promise((done) => {
    if (!process.stdout.write(text)) process.stdout.once("drain", () => done());
    else done();
  });
}

function jsonOf(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, v) => (v instanceof Uint8Array ? hex(v) : v),
    2,
  );
}

function parseAddress(option: string, text: string): number {
  const value = /^(0x[0-9a-f]+|\d+)$/i.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new CliError(
      EXIT.usage,
      `--${option} must be a non-negative integer address, got "${text}"`,
    );
  }
  return value;
}

/** Resolves DIR and says what it is, or fails with exit code 66 and the reason. */
function target(command: string, dirArgument: string): { dir: string; kind: DirectoryKind } {
  const dir = resolve(dirArgument);
  const cannot = (reason: string) =>
    new CliError(EXIT.noInput, `cannot ${command} ${dirArgument}: ${reason}`);
  let kind: DirectoryKind | undefined;
  try {
    if (!fs.statSync(dir).isDirectory()) throw cannot("not a directory");
    kind = detectKind(dir);
  } catch (error) {
    if (error instanceof CliError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw cannot("no such directory");
    if (code === "ENOTDIR") throw cannot("not a directory");
    if (code === "EACCES" || code === "EPERM") throw cannot("permission denied");
    throw cannot(String((error as Error).message ?? error));
  }
  if (kind === undefined) {
    throw cannot("not a hybridlog directory (no checkpoint, segment, log-… or snapshot files)");
  }
  return { dir, kind };
}

function nameOf(log: ManagedLogReport): string {
  if (log.name === undefined) return "(no name file)";
  return typeof log.name === "string" ? JSON.stringify(log.name) : `0x${hex(log.name)}`;
}

/** The managed log `name` (its name, or its `log-…` directory name). */
function pickLog(command: string, dir: string, dirArgument: string, name: string): string {
  const logs = listManagedLogs(dir);
  const found = logs.find((log) => log.name === name || basename(log.path) === name);
  if (!found) {
    throw new CliError(
      EXIT.noInput,
      `cannot ${command} ${dirArgument}: no log named ${
        JSON.stringify(name)
      } (${logs.length} logs in it)`,
    );
  }
  return found.path;
}

function progressFor(label: string): ProgressBar {
  return new ProgressBar(label, Boolean(process.stderr.isTTY));
}

function inspectWithProgress(dir: string, label: string): LogReport {
  const bar = progressFor(label);
  try {
    return inspectLog(dir, { onProgress: bar.update });
  } finally {
    bar.clear();
  }
}

/** inspect, verify and stats of a LogManager directory: each log, then the worst status. */
async function managerCommand(command: string, dir: string, json: boolean): Promise<number> {
  const logs = listManagedLogs(dir);
  const reports = logs.map((log) => ({
    log,
    report: inspectWithProgress(log.path, `${command} ${basename(log.path)}`),
  }));
  const exitCode = Math.max(0, ...reports.map(({ report }) => exitCodeOf(statusOf(report))));
  if (json) {
    await write(
      jsonOf({
        dir,
        kind: "manager",
        logs: reports.map(({ log, report }) => ({
          name: log.name,
          status: statusOf(report),
          report,
        })),
      }) + "\n",
    );
    return command === "verify" ? exitCode : EXIT.clean;
  }
  const out: string[] = [];
  if (command === "verify") {
    for (const { log, report } of reports) {
      out.push(verifySummary(`${log.path} ${nameOf(log)}`, report));
    }
    if (reports.length === 0) out.push(`${dir}: LogManager directory without logs`);
    await write(out.join("\n") + "\n");
    return exitCode;
  }
  out.push(line("directory", dir), line("kind", `LogManager directory, ${logs.length} logs`));
  for (const { log, report } of reports) {
    const walk = report.walk;
    const slots = walk?.consensus.committedSlotMin === undefined
      ? "none"
      : `${walk.consensus.committedSlotMin}..${walk.consensus.committedSlotMax}`;
    out.push("", line("log", `${basename(log.path)} ${nameOf(log)}`));
    if (command === "stats") out.push(...statsLines(report));
    else if (walk) {
      out.push(
        line("commit number", walk.commitNumber),
        line("committed until", walk.committedUntilAddress),
        line("slots", slots),
        line("status", describeStatus(report)),
      );
    } else out.push(line("status", describeStatus(report)));
  }
  await write(out.join("\n") + "\n");
  return EXIT.clean;
}

/** inspect, verify and stats of a SnapshotStore directory. */
async function snapshotCommand(command: string, dir: string, json: boolean): Promise<number> {
  const snapshots = listSnapshots(dir);
  const bad = snapshots.filter((s) => !s.valid && !s.temporary);
  const exitCode = bad.length ? EXIT.corrupt : EXIT.clean;
  if (json) {
    await write(jsonOf({ dir, kind: "snapshots", snapshots }) + "\n");
    return command === "verify" ? exitCode : EXIT.clean;
  }
  if (command === "verify") {
    const valid = snapshots.filter((s) => s.valid).length;
    const summary = bad.length
      ? `corrupt: ${bad.map((s) => `${s.path}: ${s.problem}`).join("; ")}`
      : `clean: ${valid} snapshot(s) verified`;
    await write(`${dir}: ${summary}\n`);
    return exitCode;
  }
  const out = [line("directory", dir), line("kind", "SnapshotStore directory")];
  if (command === "stats") {
    const bytes = snapshots.reduce((sum, s) => sum + (s.sizeBytes ?? 0), 0);
    out.push(
      line("snapshots", `${snapshots.length} (${snapshots.filter((s) => s.valid).length} valid)`),
      line("data bytes", bytes),
    );
  } else out.push(...snapshotLines(snapshots));
  await write(out.join("\n") + "\n");
  return EXIT.clean;
}

async function logCommand(command: string, dir: string, json: boolean): Promise<number> {
  const report = inspectWithProgress(dir, command === "verify" ? "verifying" : command);
  const status = statusOf(report);
  if (json) {
    await write(jsonOf({ status, ...report }) + "\n");
    return command === "verify" ? exitCodeOf(status) : EXIT.clean;
  }
  if (command === "verify") {
    await write(verifySummary(dir, report) + "\n");
    return exitCodeOf(status);
  }
  const lines = command === "stats" ? statsLines(report) : inspectLines(report);
  await write(lines.join("\n") + "\n");
  return EXIT.clean;
}

interface DumpOptions {
  from: number;
  to: number;
  format: "json" | "hex";
}

/** Checks the options of `dump` (before any file is touched: a usage error wins). */
function dumpOptions(values: Values): DumpOptions {
  const format = values.format ?? "json";
  if (format !== "json" && format !== "hex") {
    throw new CliError(EXIT.usage, `--format must be json or hex, got "${format}"`);
  }
  const from = values.from === undefined ? 0 : parseAddress("from", values.from);
  const to = values.to === undefined ? Infinity : parseAddress("to", values.to);
  return { from, to, format };
}

async function dump(dir: string, { from, to: toOption, format }: DumpOptions): Promise<number> {
  const report = inspectWithProgress(dir, "dump");
  const walk = report.walk;
  const point = report.checkpoint.newest;
  if (!walk || !point || report.problem) {
    throw new CliError(EXIT.corrupt, `cannot dump ${dir}: ${describeStatus(report)}`);
  }
  const consensus = report.kind === "consensus";
  // Slots below the truncation point are still on disk but no longer served: leave them out.
  const below = report.hardState?.newest?.truncatedBelowSlot ?? 0;
  const to = Math.min(toOption, walk.committedUntilAddress);
  const encode = (bytes: Uint8Array) =>
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)
      .toString(format === "json" ? "base64" : "hex");
  let chunk = "";
  for (const { address, payload } of readEntries(dir, point, report.segments, from, to)) {
    const entry = consensus ? decodeConsensusEntry(payload) : undefined;
    if (entry && entry.slot < below) continue;
    const value = entry ? payload.subarray(CONSENSUS_ENTRY_HEADER_BYTES) : payload;
    const record = entry
      ? {
        address,
        slot: entry.slot,
        ballot: { round: entry.round, node: entry.node },
        type: entry.type,
        length: value.length,
        value: encode(value),
      }
      : { address, length: value.length, value: encode(value) };
    chunk += JSON.stringify(record) + "\n";
    if (chunk.length >= 1 << 16) {
      await write(chunk);
      chunk = "";
    }
  }
  await write(chunk);
  if (walk.status === "corrupt") {
    process.stderr.write(
      `hybridlog: dump of ${dir} stopped early: ${describeStatus(report)}\n`,
    );
    return EXIT.corrupt;
  }
  return EXIT.clean;
}

/**
 * Runs the tool with `args` (without the runtime and script) and returns the exit code.
 * Messages go to stdout (results) and stderr (errors, progress).
 *
 * @param args The command line, e.g. `["verify", "./data/orders", "--json"]`.
 * @returns The exit code: one of {@linkcode EXIT}.
 *
 * @example
 * ```ts
 * import { AppendLog } from "@hybridlog/hybridlog";
 * import { EXIT, main } from "@hybridlog/hybridlog/cli";
 *
 * const log = await AppendLog.open({ dir: "./data/orders" });
 * log.enqueue(new TextEncoder().encode("order 1"));
 * await log.close();
 *
 * const exitCode = await main(["verify", "./data/orders"]); // prints a summary line
 * console.log(exitCode === EXIT.clean); // true
 * ```
 */
export async function main(args: readonly string[]): Promise<number> {
  let values: Values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...args],
      options: OPTIONS,
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    const message = (error as Error).message.replace(
      /^Unknown option '(.*)'.*$/s,
      "unknown option $1",
    )
      .replace(/^Option '(\S*)[^']*'.*argument missing.*$/s, "option $1 needs a value");
    process.stderr.write(`hybridlog: ${message} (see hybridlog --help)\n`);
    return EXIT.usage;
  }
  if (values.help) {
    await write(USAGE);
    return EXIT.clean;
  }
  if (values.version) {
    await write(`hybridlog ${VERSION}\n`);
    return EXIT.clean;
  }
  try {
    const [command, dirArgument, ...extra] = positionals;
    if (command === undefined) throw new CliError(EXIT.usage, "no command given");
    const allowed = COMMAND_OPTIONS[command];
    if (!allowed) throw new CliError(EXIT.usage, `unknown command "${command}"`);
    if (dirArgument === undefined) throw new CliError(EXIT.usage, `${command} needs a directory`);
    if (extra.length) {
      throw new CliError(EXIT.usage, `${command} takes one directory, got also "${extra[0]}"`);
    }
    for (const [option, value] of Object.entries(values)) {
      if (value !== undefined && !allowed.includes(option)) {
        throw new CliError(EXIT.usage, `--${option} does not apply to ${command}`);
      }
    }
    const dumping = command === "dump" ? dumpOptions(values) : undefined;
    let { dir, kind } = target(command, dirArgument);
    if (values.log !== undefined) {
      if (kind !== "manager") {
        throw new CliError(
          EXIT.usage,
          `--log needs a LogManager directory, ${dirArgument} is not one`,
        );
      }
      ({ dir, kind } = target(command, pickLog(command, dir, dirArgument, values.log)));
    }
    if (command === "dump") {
      if (kind === "manager") {
        throw new CliError(
          EXIT.usage,
          `cannot dump ${dirArgument}: it is a LogManager directory; choose a log with --log NAME`,
        );
      }
      if (kind === "snapshots") {
        throw new CliError(
          EXIT.noInput,
          `cannot dump ${dirArgument}: it holds snapshots, not a log`,
        );
      }
      return await dump(dir, dumping!);
    }
    const json = values.json ?? false;
    if (kind === "manager") return await managerCommand(command, dir, json);
    if (kind === "snapshots") return await snapshotCommand(command, dir, json);
    return await logCommand(command, dir, json);
  } catch (error) {
    if (!(error instanceof CliError)) throw error;
    const hint = error.exitCode === EXIT.usage ? " (see hybridlog --help)" : "";
    process.stderr.write(`hybridlog: ${error.message}${hint}\n`);
    return error.exitCode;
  }
}

if (import.meta.main) {
  // A reader that closed the pipe (`hybridlog dump DIR | head`) is not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(EXIT.clean);
    throw error;
  });
  try {
    process.exitCode = await main(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`hybridlog: internal error: ${(error as Error).stack ?? error}\n`);
    process.exitCode = EXIT.software;
  }
}
