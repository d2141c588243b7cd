// How the test scripts run Bun's and Deno's test runners and read their results: shared by
// scripts/test.mjs (npm test) and scripts/soak.mjs. Both count leaf tests (Deno reports a
// describe() as one test with steps, Bun counts the tests inside it).
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

/**
 * Permissions the Deno test runs need (unscoped --allow-ffi: a scoped grant breaks pointers;
 * --allow-net only for test/examples_test.ts and test/server_test.ts fetching from the example
 * servers on 127.0.0.1).
 */
export const denoPermissions = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
  "--allow-net=127.0.0.1",
];

function bunCounts(output) {
  const count = (word) => Number(output.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"))?.[1] ?? 0);
  return { passed: count("pass"), failed: count("fail"), skipped: count("skip") + count("todo") };
}

// Deno: count leaves — a container prints "name ..." first and "name ... ok" after its steps. A
// leaf prints "name ... ok" on one line, unless output it made after its last step (Deno's
// "post-test output") splits it into "name ..." and, after that output, "name ... ok": a
// "name ..." closed with no result line in between is such a leaf, not a container.
export function denoCounts(output) {
  const counts = { passed: 0, failed: 0, skipped: 0 };
  /** Lines "name ..." not closed yet, each with the number of result lines seen since. */
  const open = [];
  // A test running over a minute gets "'name' has been running for over (1m0s)" written into the
  // middle of its line; remove the notice so the line still parses.
  // Likewise Deno's "Check <file>" when a test starts a Worker (it type-checks the module).
  const cleaned = output
    .replace(/'[^'\n]*' has been running for over \([^)]*\)\n?/g, "")
    // deno-lint-ignore no-control-regex -- the colour codes around "Check" are ESC sequences
    .replace(/(?:\x1b\[[0-9;]*m)*Check [^\n]*\n/g, "");
  for (const line of cleaned.split("\n")) {
    if (/ \.\.\.$/.test(line)) {
      open.push({ line, results: 0 });
      continue;
    }
    const m = line.match(/^(.*) \.\.\. (ok|FAILED|ignored)\b/);
    if (!m) continue;
    const top = open[open.length - 1];
    const closes = top !== undefined && top.line === `${m[1]} ...`;
    if (closes) open.pop();
    if (open.length) open[open.length - 1].results++;
    if (closes && top.results > 0) continue; // a container: its steps were counted
    if (m[2] === "ok") counts.passed++;
    else if (m[2] === "FAILED") counts.failed++;
    else counts.skipped++;
  }
  const summary = cleaned.match(/^(ok|FAILED) \| \d+ passed.*?\| (\d+) failed/m);
  if (summary && Number(summary[2]) > 0 && counts.failed === 0) counts.failed = Number(summary[2]);
  return counts;
}

/** The two runners: `args(files)` builds the command line, `counts(output)` reads results. */
export const runners = [
  {
    runtime: "bun",
    command: bin("bun"),
    args: (files, timeoutMs) => ["test", "--timeout", String(timeoutMs), ...files],
    counts: bunCounts,
  },
  {
    runtime: "deno",
    command: bin("deno"),
    args: (files) => ["test", ...denoPermissions, ...files],
    counts: denoCounts,
  },
];

/**
 * Runs a command in the repository with colour off, streaming its output, and resolves with the
 * output and how it ended. Deno treats any FORCE_COLOR as "force", so it is removed.
 */
export function runStreaming(label, command, args, extraEnv = {}) {
  return new Promise((resolve) => {
    console.log(`\n=== ${label}: ${[command.replace(root + "/", ""), ...args].join(" ")}`);
    const { FORCE_COLOR: _force, ...env } = process.env;
    const child = spawn(command, args, {
      cwd: root,
      env: { ...env, ...extraEnv, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const tee = (stream, sink) =>
      stream.on("data", (chunk) => {
        output += chunk;
        sink.write(chunk);
      });
    tee(child.stdout, process.stdout);
    tee(child.stderr, process.stderr);
    child.on("close", (code, signal) => resolve({ output, code: code ?? 1, signal }));
    child.on("error", (error) => resolve({ output: String(error), code: 1, signal: null }));
  });
}

/**
 * The counts of one run: a runner that exits non-zero without reporting a failure (a crash, a
 * load error) or that ran no test at all counts as a failure, never as a pass.
 */
export function countsOf(runner, { output, code, signal }) {
  // deno-lint-ignore no-control-regex
  const counts = runner.counts(output.replace(/\x1b\[[0-9;]*m/g, ""));
  if ((code !== 0 || signal) && counts.failed === 0) counts.failed = 1;
  if (counts.passed + counts.failed === 0) counts.failed = 1;
  return counts;
}
