#!/usr/bin/env node
// Runs the whole suite under Bun and then Deno, and ends with one line summing both:
// `tests: N passed, N failed, N skipped`. Exits non-zero if either runtime failed.
// Extra arguments (e.g. a test file path) are passed to both runners.
import { countsOf, runners, runStreaming } from "./_runners.mjs";

/** Bun's default of 5 s per test is too short for the crash suites; each sets its own. */
const TEST_TIMEOUT_MS = 600_000;
const files = process.argv.slice(2);

const total = { passed: 0, failed: 0, skipped: 0 };
const failedRuntimes = [];
for (const runner of runners) {
  const runFiles = files.length || runner.runtime === "deno" ? files : ["test/"];
  const result = await runStreaming(
    runner.runtime,
    runner.command,
    runner.args(runFiles, TEST_TIMEOUT_MS),
  );
  const counts = countsOf(runner, result);
  if (counts.failed > 0) failedRuntimes.push(runner.runtime);
  console.log(
    `${runner.runtime}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`,
  );
  for (const key of Object.keys(total)) total[key] += counts[key];
}
if (failedRuntimes.length) console.log(`failed in: ${failedRuntimes.join(", ")}`);
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(failedRuntimes.length ? 1 : 0);
