// Shared test helpers: temporary directories, a fingerprint of a directory's bytes, and the
// command that runs a TypeScript file in the current runtime (for crash tests with real processes).
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash } from "node:crypto";

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

/** `[executable, ...args]` that run `script` in the runtime executing the tests. */
export function runtimeCommand(script: string): [string, string[]] {
  const isBun = typeof (globalThis as { Bun?: unknown }).Bun !== "undefined";
  if (isBun) return [process.execPath, [script]];
  return [process.execPath, [
    "run",
    "--allow-ffi",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
    script,
  ]];
}

/** Name of the runtime executing the tests. */
export const runtimeName: "bun" | "deno" =
  typeof (globalThis as { Bun?: unknown }).Bun !== "undefined" ? "bun" : "deno";

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
