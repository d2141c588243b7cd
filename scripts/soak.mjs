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
import { countsOf, runners, runStreaming } from "./_runners.mjs";

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
// Processes with Workers start slower (a second or so per Worker in Deno): a tenth of the cycles.
batches.push([
  "test/workers_crash_test.ts",
  { HYBRIDLOG_CRASH_CYCLES: Math.max(1, Math.round(crashCycles / 10)) },
]);

const total = { passed: 0, failed: 0, skipped: 0 };
const lines = [];
for (const spec of runners) {
  const started = performance.now();
  const counts = { passed: 0, failed: 0, skipped: 0 };
  for (const [file, env] of batches) {
    const settings = Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" ");
    const args = spec.args([file], TEST_TIMEOUT_MS);
    const result = await runStreaming(`${spec.runtime} ${settings}`, spec.command, args, env);
    const batch = countsOf(spec, result);
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
  `soak: ${powerLossCycles * runners.length} power-loss cycles, ${
    crashCycles * runners.length
  } kill -9 ` +
    `cycles; ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`,
);
process.exit(total.failed ? 1 : 0);
