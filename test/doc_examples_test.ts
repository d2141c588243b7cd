// The documentation's examples run as programs, so they cannot rot. Collected: every ```ts block
// in the JSDoc of the modules the package exports (deno.json "exports": mod.ts and the "./cli"
// tool) and of every module they import, and every ```ts block of README.md. Each runnable block
// is written to a temporary directory and run as a child process by the runtime executing the
// tests, from that directory; it passes when it exits 0.
//
// Conventions for a ```ts block (in JSDoc and in README.md alike):
// - It is a complete program: it imports what it uses, from "@hybridlog/hybridlog" (or
//   "@hybridlog/hybridlog/cli"), or a module's own examples from "./its_file.ts". The package
//   specifiers become file URLs of the export's module here, relative imports are resolved from
//   the documented file, and "./data/…" paths land in the temporary directory.
// - A first line `// file: NAME.ts` makes it a companion module, e.g. a Worker's script: it is
//   written as NAME.ts next to each runnable block of the same JSDoc comment (or of README.md),
//   and is not run on its own.
// - ```ts ignore (Deno's marker for doc blocks not to run) leaves a block out. Every such block
//   must be listed in NOT_RUN below with the reason; the test fails for one that is not.
// Other fences (```sh, plain ```) are not TypeScript and are not collected.
// The Deno run also type-checks every block (deno check), so an example that runs but would not
// compile in a TypeScript project fails too.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { runtimeCommand, runtimeName } from "./_helpers.ts";

const ROOT = resolve(import.meta.dirname!, "..");
const DENO = join(ROOT, "node_modules", ".bin", "deno");
/** A block that has not exited after this long fails (and is killed). */
const BLOCK_TIMEOUT_MS = 60_000;
/** Blocks running at once: most of their time is process start-up and fdatasync. */
const CONCURRENCY = Math.max(2, Math.min(8, availableParallelism() * 2));

/**
 * Blocks marked ```ts ignore, keyed by `<file>: <first line of the block>`, with why each cannot
 * run as a program. Empty: every block of the documentation runs.
 */
const NOT_RUN: Record<string, string> = {};

interface Block {
  /** The documented file, relative to the repository. */
  readonly file: string;
  /** Line of the opening fence in that file (1-based). */
  readonly line: number;
  /** The JSDoc comment (or README.md) the block belongs to; companions are shared within it. */
  readonly group: string;
  readonly code: string;
  readonly ignored: boolean;
  /** The file name of a companion module (`// file: NAME.ts`), else undefined. */
  readonly companion: string | undefined;
}

/** `deno.json` export specifiers ("@hybridlog/hybridlog", "@hybridlog/hybridlog/cli") → files. */
function packageExports(): Map<string, string> {
  const config = JSON.parse(fs.readFileSync(join(ROOT, "deno.json"), "utf8")) as {
    name: string;
    exports: Record<string, string>;
  };
  const map = new Map<string, string>();
  for (const [key, path] of Object.entries(config.exports)) {
    map.set(key === "." ? config.name : `${config.name}/${key.replace(/^\.\//, "")}`, path);
  }
  return map;
}

const EXPORTS = packageExports();
const JSDOC = /\/\*\*[\s\S]*?\*\//g;
const RELATIVE_IMPORT = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.\.?\/[^"']+)\2/g;

/**
 * Modules reachable from the exports by string-literal imports, plus ffi/deno.ts, which ffi/mod.ts
 * loads through a computed URL on purpose (see there).
 */
function reachableModules(): string[] {
  const seen = new Set<string>();
  const pending = [...EXPORTS.values(), "ffi/deno.ts"].map((path) => resolve(ROOT, path));
  while (pending.length) {
    const path = pending.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    // Imports inside doc comments are examples, not dependencies.
    const code = fs.readFileSync(path, "utf8").replace(JSDOC, "");
    for (const match of code.matchAll(RELATIVE_IMPORT)) {
      const target = resolve(dirname(path), match[3]);
      if (target.endsWith(".ts") && fs.existsSync(target)) pending.push(target);
    }
  }
  return [...seen].map((path) => relative(ROOT, path)).sort();
}

/** The ```ts blocks of `lines` (text with any comment decoration removed). */
function* fencedBlocks(
  lines: readonly string[],
  file: string,
  group: string,
  firstLine: number,
): Generator<Block> {
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)(.*)$/.exec(lines[i].trim());
    if (!open) continue;
    const end = lines.findIndex((line, j) => j > i && line.trim() === "```");
    assert.ok(end > i, `${file}:${firstLine + i}: a fence is never closed`);
    const [, lang, attributes] = open;
    if (lang === "ts" || lang === "typescript") {
      const code = lines.slice(i + 1, end).join("\n") + "\n";
      yield {
        file,
        line: firstLine + i,
        group,
        code,
        ignored: attributes.split(/\s+/).includes("ignore"),
        companion: /^\/\/ file: (\S+\.ts)\s*$/m.exec(code.split("\n")[0])?.[1],
      };
    }
    i = end;
  }
}

function collectBlocks(): Block[] {
  const blocks: Block[] = [];
  for (const file of reachableModules()) {
    const text = fs.readFileSync(join(ROOT, file), "utf8");
    for (const comment of text.matchAll(JSDOC)) {
      const firstLine = text.slice(0, comment.index).split("\n").length;
      const lines = comment[0].split("\n").map((line) =>
        line.replace(/^\s*\/\*\*\s?/, "").replace(/\s*\*\/$/, "").replace(/^\s*\* ?/, "")
      );
      blocks.push(...fencedBlocks(lines, file, `${file}:${firstLine}`, firstLine));
    }
  }
  const readme = fs.readFileSync(join(ROOT, "README.md"), "utf8").split("\n");
  blocks.push(...fencedBlocks(readme, "README.md", "README.md", 1));
  return blocks;
}

const blocks = collectBlocks();
const keyOf = (block: Block) => `${block.file}: ${block.code.split("\n")[0].trim()}`;
const runnable = blocks.filter((block) => !block.ignored && block.companion === undefined);
const companionsOf = (block: Block) =>
  blocks.filter((other) => other.group === block.group && other.companion !== undefined);

/** The block as a program in `dir`: package and relative imports, and ./data paths, rewritten. */
function rewrite(block: Block, dir: string): string {
  const documented = join(ROOT, block.file);
  return block.code
    .replace(/(["'])(@hybridlog\/hybridlog(?:\/[\w-]+)?)\1/g, (_match, quote, specifier) => {
      const path = EXPORTS.get(specifier);
      assert.ok(path, `${block.file}:${block.line}: ${specifier} is not an export of deno.json`);
      return quote + pathToFileURL(join(ROOT, path)).href + quote;
    })
    .replace(RELATIVE_IMPORT, (match, before, quote, specifier) => {
      if (block.file.endsWith(".md")) return match;
      const target = resolve(dirname(documented), specifier);
      return before + quote + pathToFileURL(target).href + quote;
    })
    .replace(/(["'`])\.\/data\//g, (_match, quote) => `${quote}${dir}/data/`);
}

interface Outcome {
  code: number | null;
  signal: string | null;
  output: string;
  program: string;
}

/** Writes `block` as `dir`/example.ts, with its companions beside it; returns every path. */
function writeBlock(block: Block, dir: string): { program: string; paths: string[] } {
  const paths: string[] = [];
  for (const companion of companionsOf(block)) {
    const path = join(dir, companion.companion!);
    fs.writeFileSync(path, rewrite(companion, dir));
    paths.push(path);
  }
  const program = rewrite(block, dir);
  paths.unshift(join(dir, "example.ts"));
  fs.writeFileSync(paths[0], program);
  return { program, paths };
}

/** Runs `command` to its end (killed after BLOCK_TIMEOUT_MS), collecting stdout and stderr. */
function run(command: string, args: string[], cwd: string): Promise<Omit<Outcome, "program">> {
  const child = spawn(command, args, {
    cwd,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), BLOCK_TIMEOUT_MS);
  return new Promise((done) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, output });
    });
  });
}

/** Runs one block as a program in a fresh temporary directory, which is removed afterwards. */
async function runBlock(block: Block): Promise<Outcome> {
  const dir = fs.mkdtempSync(join(tmpdir(), "hybridlog-doc-"));
  try {
    const { program, paths } = writeBlock(block, dir);
    const [command, args] = runtimeCommand(paths[0]);
    return { ...await run(command, args, dir), program };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

let outcomes: Map<Block, Promise<Outcome>> | undefined;

/** Starts every runnable block, CONCURRENCY at a time, on first use; each test awaits its own. */
function outcomeOf(block: Block): Promise<Outcome> {
  if (!outcomes) {
    outcomes = new Map();
    const queue = [...runnable];
    let slots = CONCURRENCY;
    const waiting: Array<() => void> = [];
    const slot = async () => {
      if (slots > 0) slots--;
      else await new Promise<void>((wake) => waiting.push(wake));
    };
    const release = () => (waiting.length ? waiting.shift()!() : slots++);
    for (const next of queue) {
      outcomes.set(next, slot().then(() => runBlock(next)).finally(release));
    }
  }
  return outcomes.get(block)!;
}

describe("documentation examples", () => {
  test("README.md opens with a runnable example", () => {
    const first = blocks.find((block) => block.file === "README.md");
    assert.ok(first && runnable.includes(first), "the first README block must be runnable");
    const readme = fs.readFileSync(join(ROOT, "README.md"), "utf8").split("\n");
    const firstSection = readme.findIndex((line) => line.startsWith("## "));
    assert.ok(first.line < firstSection + 1, "the first example must come before any section");
  });

  test("every block left out is listed with its reason, and every listed one is left out", () => {
    const ignored = blocks.filter((block) => block.ignored).map(keyOf);
    for (const key of ignored) assert.ok(NOT_RUN[key], `${key}: ignored without a reason`);
    for (const key of Object.keys(NOT_RUN)) {
      assert.ok(ignored.includes(key), `${key}: listed in NOT_RUN but not an ignored block`);
    }
  });

  test("every companion module is used by a runnable block of its comment", () => {
    for (const companion of blocks.filter((block) => block.companion !== undefined)) {
      assert.ok(
        runnable.some((block) => block.group === companion.group),
        `${companion.file}:${companion.line}: ${companion.companion} has no block to run it`,
      );
    }
  });

  test("every class and function the package exports has an @example", async () => {
    const missing: string[] = [];
    for (const path of new Set(EXPORTS.values())) {
      const child = spawn(DENO, ["doc", "--json", join(ROOT, path)], {
        env: { ...process.env, NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      let json = "";
      let errors = "";
      child.stdout!.on("data", (chunk) => (json += chunk));
      child.stderr!.on("data", (chunk) => (errors += chunk));
      const code = await new Promise((done) => child.on("close", done));
      assert.equal(code, 0, `deno doc --json ${path} failed:\n${errors}`);
      const doc = JSON.parse(json) as {
        nodes: Record<string, {
          symbols?: Array<{
            name: string;
            declarations: Array<{ kind: string; jsDoc?: { tags?: Array<{ kind: string }> } }>;
          }>;
        }>;
      };
      for (const { symbols = [] } of Object.values(doc.nodes)) {
        for (const symbol of symbols) {
          for (const declaration of symbol.declarations) {
            if (declaration.kind !== "class" && declaration.kind !== "function") continue;
            if (!declaration.jsDoc?.tags?.some((tag) => tag.kind === "example")) {
              missing.push(`${path}: ${symbol.name}`);
            }
          }
        }
      }
    }
    assert.deepEqual(missing, [], "exports without an @example");
  });

  test("there are examples to run", () => {
    assert.ok(runnable.length >= 20, `only ${runnable.length} runnable blocks found`);
  });

  test(
    "every block type-checks",
    {
      skip: runtimeName === "bun" && "types do not depend on the runtime: the Deno run checks them",
    },
    async () => {
      const dir = fs.mkdtempSync(join(tmpdir(), "hybridlog-doc-check-"));
      try {
        const paths = runnable.flatMap((block, i) => {
          const blockDir = join(dir, String(i));
          fs.mkdirSync(blockDir);
          return writeBlock(block, blockDir).paths;
        });
        const config = join(ROOT, "deno.json");
        const { code, signal, output } = await run(
          DENO,
          ["check", "--config", config, ...paths],
          dir,
        );
        // Name the documented block instead of the temporary file.
        const named = output.replace(
          new RegExp(`file://${dir}/(\\d+)/([\\w.]+)`, "g"),
          (_m, i, name) => {
            const block = runnable[Number(i)];
            return `${block.file}:${block.line} (${name})`;
          },
        );
        assert.equal(code, 0, `deno check exited ${code ?? signal}:\n${named}`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  for (const block of runnable) {
    test(`${block.file}:${block.line} runs`, async () => {
      const { code, signal, output, program } = await outcomeOf(block);
      assert.equal(
        code,
        0,
        `${block.file}:${block.line} exited ${code ?? signal} in ${runtimeName}\n` +
          `--- program ---\n${program}--- output ---\n${output}`,
      );
    });
  }
});
