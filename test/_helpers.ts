// Shared test helpers: temporary directories, a fingerprint of a directory's bytes, and the
// command that runs a TypeScript file in the current runtime (for crash tests with real processes).
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";
import assert from "node:assert/strict";
import { AppendLog, type AppendLogOptions, ConsensusLog, InvalidArgumentError } from "../mod.ts";
import type { Device } from "../src/device.ts";

/** A fresh temporary directory; removed by the returned cleanup. */
export function tempDir(prefix = "hybridlog-test-"): { path: string; [Symbol.dispose](): void } {
  const path = fs.mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => fs.rmSync(path, { recursive: true, force: true }) };
}

/** Hash of every file's name and bytes under `dir` (to prove "nothing changed on disk"). */
export function fingerprint(dir: string): string {
  const hash = createHash("sha256");
  const walk = (path: string) => {
    for (const name of fs.readdirSync(path).sort()) {
      const full = join(path, name);
      const stat = fs.statSync(full);
      hash.update(name);
      if (stat.isDirectory()) walk(full);
      else hash.update(fs.readFileSync(full));
    }
  };
  walk(dir);
  return hash.digest("hex");
}

/**
 * `[executable, ...args]` that run `script` in the runtime executing the tests; `denoFlags` are
 * added to Deno's (e.g. `--allow-net` for a server).
 */
export function runtimeCommand(script: string, denoFlags: string[] = []): [string, string[]] {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  if (isBun) return [process.execPath, [script]];
  return [process.execPath, [
    "run",
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
    ...denoFlags,
    script,
  ]];
}

/** Name of the runtime executing the tests. */
export const runtimeName: "bun" | "deno" =
  typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "deno";

/** Value of an accept attempt: depends on slot, round and node, so the winner is recognisable. */
export function attemptValue(slot: number, round: number, node: number): Uint8Array {
  return entryBytes(slot * 7919 + round * 31 + node, 16 + ((slot + round + node) % 97));
}

/** Whether `a` and `b` are both present and hold the same bytes. */
export function sameBytes(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined || b === undefined || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Deterministic bytes for entry `i` (length varies with i) so reads can be checked exactly. */
export function entryBytes(i: number, lengthBytes = 10 + (i * 37) % 300): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  let x = (i * 2654435761) >>> 0;
  for (let j = 0; j < lengthBytes; j++) {
    x = (x * 1103515245 + 12345) >>> 0;
    bytes[j] = x >>> 24;
  }
  return bytes;
}

/** A small seeded PRNG (mulberry32) so failing cases can be replayed from their seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Runs `script` in the current runtime with `args`, hands every stdout line to `onLine`, and
 * kills it with SIGKILL `runMs` after it prints `ready…`. Resolves once it is dead; rejects if it
 * exits on its own first (with its stderr).
 */
export async function runUntilKilled(
  script: string,
  args: string[],
  runMs: number,
  onLine: (line: string) => void,
): Promise<void> {
  const { spawn } = await import("node:child_process");
  const [command, prefix] = runtimeCommand(script);
  const child = spawn(command, [...prefix, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let buffered = "";
  let stderr = "";
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      buffered += chunk;
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        if (line.startsWith("ready")) setTimeout(() => child.kill("SIGKILL"), runMs);
        onLine(line);
      }
    });
    child.on("exit", (code, signal) => {
      if (signal === "SIGKILL") resolve();
      else reject(new Error(`${script} exited ${code ?? signal} before the kill: ${stderr}`));
    });
  });
}

/** XORs the byte at `offset` of `path` with 0x5a (damage a test can aim). */
export function flipByte(path: string, offset: number): void {
  const fd = fs.openSync(path, "r+");
  const byte = new Uint8Array(1);
  fs.readSync(fd, byte, 0, 1, offset);
  byte[0] ^= 0x5a;
  fs.writeSync(fd, byte, 0, 1, offset);
  fs.closeSync(fd);
}

/**
 * Commits `groups` groups of `perGroup` entries (`entryBytes(0…)`) to an AppendLog in `source`
 * opened with `options`, then copies the directory while the log is still open: the copy is what
 * a crash at that moment would leave (the page cache is what a kill -9 leaves). Returns the
 * addresses, by group.
 */
export async function crashImage(
  source: string,
  image: string,
  groups: number,
  options: Omit<AppendLogOptions, "dir">,
  perGroup = 20,
): Promise<number[][]> {
  const log = await AppendLog.open({ ...options, dir: source });
  const groupsOfAddresses: number[][] = [];
  let i = 0;
  for (let g = 0; g < groups; g++) {
    const addresses = [];
    for (let k = 0; k < perGroup; k++) addresses.push(log.enqueue(entryBytes(i++)));
    await log.commit();
    groupsOfAddresses.push(addresses);
  }
  fs.cpSync(source, image, { recursive: true });
  await log.close();
  return groupsOfAddresses;
}

/**
 * Asserts that `AppendLog.open` and `ConsensusLog.open` refuse the boolean option `option` given
 * as the string "yes" with `ERR_INVALID_ARGUMENT`, and create no directory.
 */
export async function assertBooleanOptionRefused(option: string): Promise<void> {
  using dir = tempDir();
  const path = join(dir.path, "log");
  for (const open of [AppendLog.open, ConsensusLog.open]) {
    await assert.rejects(
      (open as (o: object) => Promise<unknown>)({ dir: path, [option]: "yes" }),
      (error: unknown) => {
        assert.ok(error instanceof InvalidArgumentError);
        assert.equal(error.code, "ERR_INVALID_ARGUMENT");
        assert.match(error.message, new RegExp(`${option} must be a boolean`));
        return true;
      },
    );
  }
  assert.equal(fs.existsSync(path), false);
}

/** The whole content of the file at `path` on `device`. */
export function fileBytes(device: Device, path: string): Uint8Array {
  const file = device.open(path, { readOnly: true });
  try {
    const bytes = new Uint8Array(file.sizeBytes());
    file.read(bytes, 0);
    return bytes;
  } finally {
    file.close();
  }
}
