/**
 * The one runtime switch: `native` is the {@linkcode Native} of the runtime this process runs in.
 * Each backend is loaded by a guarded dynamic import, so a runtime never evaluates the other's
 * file (Deno cannot load `bun:ffi`; Bun has no `Deno` global).
 *
 * How each backend is referenced, and why:
 * - `./bun.ts` by a string literal: it type-checks everywhere (its `bun:ffi` import is type-only,
 *   loaded at run time inside `openBunNative`), and Deno only parses it.
 * - `./deno.ts` by a computed URL that neither tsc nor deno_graph follows: it uses the `Deno`
 *   namespace, which tsc (bun types) lacks, and so does Deno's own checker for any file under
 *   tsconfig.json's `include` (this one, via its importers). Deno checks it as its own root
 *   (`deno check ffi/`, outside tsconfig.json's scope). The cost: `deno publish` warns about an
 *   unanalyzable import, and loading it needs read access to the file (`--allow-read`; from
 *   JSR, `--allow-import`, which allows jsr.io by default).
 *
 * @example
 * ```ts
 * import { native, runtimeName } from "./mod.ts";
 * console.log(runtimeName, native.pageSizeBytes);
 * ```
 *
 * @module
 */

import type { Native } from "./types.ts";

/** Not a string literal on purpose: see the module comment. */
const DENO_BACKEND_URL = new URL("./deno.ts", import.meta.url).href;

/** Which runtime this process runs in, and so which backend {@linkcode native} is. */
export const runtimeName: "bun" | "deno" = detectRuntime();

/** The runtime-native services for the storage core. */
export const native: Native = runtimeName === "bun"
  ? await (await import("./bun.ts")).openBunNative()
  : (await import(DENO_BACKEND_URL) as { openDenoNative(): Native }).openDenoNative();

function detectRuntime(): "bun" | "deno" {
  if ("Bun" in globalThis) return "bun";
  if ("Deno" in globalThis) return "deno";
  throw new Error("Cannot load hybridlog: it needs Bun or Deno (no Bun or Deno global found)");
}
