#!/usr/bin/env node
// Runs every bench/*_bench.ts under Bun and then Deno, one after the other (they would skew each
// other's timings on this 2-core machine), streaming their output. Exits non-zero if any run
// failed. Extra arguments select bench files instead of all of them (e.g. bench/append_log_bench.ts).
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const extra = process.argv.slice(2);

// mitata needs --allow-sys (CPU name, memory); the rest are what the log and FFI layer need;
// --unstable-kv lets bench/peers_bench.ts measure Deno KV.
const denoPermissions = [
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
  "--unstable-kv",
];

// bench/pressure_bench.ts samples the heap after a forced GC: V8 offers `gc()` only with this flag
// (Bun has Bun.gc). Only that file gets it, so the other benches run as they always did.
const denoFlags = (file) =>
  file.replaceAll("\\", "/").endsWith("bench/pressure_bench.ts") ? ["--v8-flags=--expose-gc"] : [];

const files = extra.length ? extra : readdirSync(join(root, "bench"))
  .filter((name) => name.endsWith("_bench.ts"))
  .sort()
  .map((name) => join("bench", name));

const runtimes = [
  { runtime: "bun", command: bin("bun"), args: (file) => [file] },
  {
    runtime: "deno",
    command: bin("deno"),
    args: (file) => ["run", ...denoPermissions, ...denoFlags(file), file],
  },
];

// Deno treats any FORCE_COLOR as "force"; drop it and ask for plain output.
function withoutColor(env) {
  const { FORCE_COLOR: _force, ...rest } = env;
  return { ...rest, NO_COLOR: "1" };
}

function run(runtime, command, args) {
  return new Promise((resolve) => {
    console.log(`\n=== ${runtime}: ${[relative(root, command), ...args].join(" ")}`);
    const child = spawn(command, args, {
      cwd: root,
      env: withoutColor(process.env),
      stdio: ["ignore", "inherit", "inherit"],
    });
    child.on("close", (code, signal) => resolve(code === 0 && !signal));
    child.on("error", (error) => {
      console.error(String(error));
      resolve(false);
    });
  });
}

if (files.length === 0) {
  console.error("bench: no bench/*_bench.ts files found");
  process.exit(1);
}
const failed = [];
for (const { runtime, command, args } of runtimes) {
  for (const file of files) {
    if (!(await run(runtime, command, args(file)))) failed.push(`${runtime} ${file}`);
  }
}
if (failed.length) console.log(`\nbench failed in: ${failed.join(", ")}`);
else console.log(`\nbench: ${files.length * runtimes.length} runs passed`);
process.exit(failed.length ? 1 : 0);
