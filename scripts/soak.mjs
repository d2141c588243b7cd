#!/usr/bin/env node
// Soak run of the durability suites under Bun and then Deno: the power-loss cycles on the
// in-memory device (HYBRIDLOG_POWER_LOSS_CYCLES, default 200) and the kill -9 cycles of real
// writer processes (HYBRIDLOG_CRASH_CYCLES, default 500). Prints one line per runtime and a total
// line `soak: N passed, N failed, N skipped`; exits non-zero if either runtime failed.
//
// The kill -9 test re-verifies its whole, ever-growing log every cycle, so its cost grows with the
// square of its cycles (100 cycles took 221 s in Bun here, and it times out at 600 s). The soak
// runs it in batches of HYBRIDLOG_CRASH_BATCH_CYCLES (default 50), each on a fresh directory; the
// kill moments differ between batches because they depend on timing.
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const powerLossCycles = Number(process.env.HYBRIDLOG_POWER_LOSS_CYCLES ?? 200);
const crashCycles = Number(process.env.HYBRIDLOG_CRASH_CYCLES ?? 500);
const crashBatchCycles = Number(process.env.HYBRIDLOG_CRASH_BATCH_CYCLES ?? 50);
// The tests set their own timeouts; this only keeps Bun's default (5 s) out of the way.
const TEST_TIMEOUT_MS = 3_600_000;

/** One invocation per file and batch: [file, environment]. */
const batches = [["test/power_loss_test.ts", { HYBRIDLOG_POWER_LOSS_CYCLES: powerLossCycles }]];
for (let done = 0; done < crashCycles; done += crashBatchCycles) {
  const cycles = Math.min(crashBatchCycles, crashCycles - done);
  batches.push(["test/crash_test.ts", { HYBRIDLOG_CRASH_CYCLES: cycles }]);
}

const runs = [
  {
    runtime: "bun",
    command: bin("bun"),
    args: (file) => ["test", "--timeout", String(TEST_TIMEOUT_MS), file],
    count(output, word) {
      return Number(output.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"))?.[1] ?? 0);
    },
    parse(output) {
      return {
        passed: this.count(output, "pass"),
        failed: this.count(output, "fail"),
        skipped: this.count(output, "skip"),
      };
    },
  },
  {
    runtime: "deno",
    command: bin("deno"),
    args: (file) => [
      "test",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "--allow-run",
      "--allow-sys",
      file,
    ],
    // Counts leaves (tests and steps without children), as scripts/test.mjs does. A test that
    // runs over a minute gets "'name' has been running for over (1m0s)" appended to its line,
    // with its result on the next line: drop the notice first.
    parse(output) {
      const counts = { passed: 0, failed: 0, skipped: 0 };
      const open = [];
      const cleaned = output.replace(/'[^'\n]*' has been running for over \([^)]*\)\n?/g, "");
      for (const line of cleaned.split("\n")) {
        if (/ \.\.\.$/.test(line)) {
          open.push(line);
          continue;
        }
        const m = line.match(/^(.*) \.\.\. (ok|FAILED|ignored)\b/);
        if (!m) continue;
        if (open.length && open[open.length - 1] === `${m[1]} ...`) {
          open.pop();
          continue;
        }
        if (m[2] === "ok") counts.passed++;
        else if (m[2] === "FAILED") counts.failed++;
        else counts.skipped++;
      }
      const summary = cleaned.match(/^(ok|FAILED) \| \d+ passed.*?\| (\d+) failed/m);
      if (summary && Number(summary[2]) > 0 && counts.failed === 0) {
        counts.failed = Number(summary[2]);
      }
      return counts;
    },
  },
];

function run(runtime, command, args, extraEnv) {
  return new Promise((resolve) => {
    const settings = Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`).join(" ");
    console.log(
      `\n=== ${runtime}: ${settings} ${command.replace(root + "/", "")} ${args.join(" ")}`,
    );
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

const total = { passed: 0, failed: 0, skipped: 0 };
const lines = [];
for (const spec of runs) {
  const started = performance.now();
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const [file, env] of batches) {
    const { output, code, signal } = await run(spec.runtime, spec.command, spec.args(file), env);
    // deno-lint-ignore no-control-regex
    const batch = spec.parse(output.replace(/\x1b\[[0-9;]*m/g, ""));
    if ((code !== 0 || signal) && batch.failed === 0) batch.failed = 1;
    if (batch.passed + batch.failed === 0) batch.failed = 1;
    for (const key of Object.keys(counts)) counts[key] += batch[key];
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  lines.push(
    `${spec.runtime}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped ` +
      `(${powerLossCycles} power-loss cycles, ${crashCycles} kill -9 cycles, ${seconds} s)`,
  );
  for (const key of Object.keys(total)) total[key] += counts[key];
}
console.log("");
for (const line of lines) console.log(line);
console.log(
  `soak: ${powerLossCycles * runs.length} power-loss cycles, ${
    crashCycles * runs.length
  } kill -9 ` +
    `cycles; ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`,
);
process.exit(total.failed ? 1 : 0);
