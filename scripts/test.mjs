#!/usr/bin/env node
// Runs the whole suite under Bun and then Deno, and ends with one line summing both:
// `tests: N passed, N failed, N skipped`. Exits non-zero if either runtime failed.
// Extra arguments are passed to both runners (e.g. a test file path).
import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const extra = process.argv.slice(2);

const denoPermissions = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
];

const runs = [
  {
    runtime: "bun",
    command: bin("bun"),
    args: ["test", "--timeout", "600000", ...(extra.length ? extra : ["test/"])],
    parse(output) {
      const count = (word) =>
        Number(output.match(new RegExp(`^\\s*(\\d+) ${word}$`, "m"))?.[1] ?? 0);
      return {
        passed: count("pass"),
        failed: count("fail"),
        skipped: count("skip") + count("todo"),
      };
    },
  },
  {
    runtime: "deno",
    command: bin("deno"),
    args: ["test", ...denoPermissions, ...extra],
    // Deno reports a describe() as one test with steps; count leaves (tests and steps without
    // children) so both runtimes count the same thing. A container prints "name ..." first.
    parse(output) {
      const counts = { passed: 0, failed: 0, skipped: 0 };
      const open = [];
      for (const line of output.split("\n")) {
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
      const summary = output.match(/^(ok|FAILED) \| \d+ passed.*?\| (\d+) failed/m);
      if (summary && Number(summary[2]) > 0 && counts.failed === 0) {
        counts.failed = Number(summary[2]);
      }
      return counts;
    },
  },
];

// Deno treats any FORCE_COLOR as "force"; drop it and ask for plain output.
function withoutColor(env) {
  const { FORCE_COLOR: _force, ...rest } = env;
  return { ...rest, NO_COLOR: "1" };
}

function run({ runtime, command, args }) {
  return new Promise((resolve) => {
    console.log(`\n=== ${runtime}: ${[command.replace(root + "/", ""), ...args].join(" ")}`);
    const child = spawn(command, args, {
      cwd: root,
      env: withoutColor(process.env),
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
const failedRuntimes = [];
for (const spec of runs) {
  const { output, code, signal } = await run(spec);
  // deno-lint-ignore no-control-regex
  const counts = spec.parse(output.replace(/\x1b\[[0-9;]*m/g, ""));
  // A runner that exits non-zero without reporting a failure (crash, load error) still fails.
  if ((code !== 0 || signal) && counts.failed === 0) counts.failed = 1;
  if (counts.passed + counts.failed === 0) counts.failed = 1; // ran no test: a failure, not a pass
  if (counts.failed > 0) failedRuntimes.push(spec.runtime);
  console.log(
    `${spec.runtime}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`,
  );
  for (const key of Object.keys(total)) total[key] += counts[key];
}
if (failedRuntimes.length) console.log(`failed in: ${failedRuntimes.join(", ")}`);
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(failedRuntimes.length ? 1 : 0);
