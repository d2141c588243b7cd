// The example programs, one per topic of the guide (README "Examples"), run as real child
// processes in the runtime executing the tests, each in its own temporary directory: each must
// exit 0 (they assert their own key facts, so a broken library fails them) and print its key
// lines. All start at once, on the first test, so the file takes about as long as the slowest.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { runtimeCommand, tempDir } from "./_helpers.ts";

const EXAMPLES = join(import.meta.dirname!, "..", "examples");

interface Program {
  file: string;
  /** Lines its stdout must contain. */
  expected: RegExp[];
  /** Runs with this directory as its working directory instead of `--dir` (examples/demo.ts). */
  inCwd?: boolean;
  /** Extra Deno permissions. */
  denoFlags?: string[];
}

const PROGRAMS: Program[] = [
  {
    file: "append_log.ts",
    expected: [
      /^enqueued 3 jobs at addresses 64, 96, 128: commit #1$/m,
      /^consumed 4 jobs: resize photo 1, resize photo 2, send newsletter, rebuild index$/m,
      /^reopened again: 0 jobs left, the log begins at address \d+$/m,
    ],
  },
  {
    file: "paxos_acceptor.ts",
    expected: [
      /^late accept of ballot 1\.1 refused: ERR_BALLOT$/m,
      /^after a restart: promised 2\.2, slot 1 committed @ 2\.2, slot 2 accepted @ 1\.1, slot 3 empty$/m,
    ],
  },
  {
    file: "raft_log.ts",
    expected: [
      /^term 2, voted for 3; applied x = 1; y = 2; z = 30$/m,
      /^after a restart: term 2, vote 3, snapshot 3 "x = 1; y = 2; z = 30"$/m,
    ],
  },
  {
    file: "log_manager.ts",
    expected: [
      /^names: table:invoices, table:orders, table:users; 2 open, 1 evicted$/m,
      /^table:users reopened, snapshot at slot 2, log truncated below slot 3$/m,
    ],
  },
  {
    file: "workers.ts",
    expected: [
      /^Worker 2 committed 100 slots, the last holds "2:2099"$/m,
      /^after a reopen: 200 committed slots$/m,
    ],
  },
  {
    file: "metrics.ts",
    expected: [
      /^hybridlog_appends_total\{log="[^"]+\/queue"\} 100$/m,
      /^hybridlog_open_logs 2$/m,
      /^after close: 0 open logs, their series gone$/m,
    ],
  },
  {
    // The crash demo (npm run demo) works on ./data/demo: run in a temporary directory. It starts
    // and kills a writer process, which Deno allows with --allow-run.
    file: "demo.ts",
    inCwd: true,
    denoFlags: ["--allow-run"],
    expected: [
      /^after the crash: (\d+) acknowledged entries, \1 found intact/m,
      /^nothing acknowledged was lost\.$/m,
    ],
  },
];

interface Run {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

const RUN_TIMEOUT_MS = 60_000;

/** Runs one program to completion (SIGKILL after a minute) in a fresh temporary directory. */
function run(program: Program): Promise<Run> {
  const dir = tempDir("hybridlog-example-");
  const [command, args] = runtimeCommand(join(EXAMPLES, program.file), program.denoFlags);
  const child = spawn(command, program.inCwd ? args : [...args, "--dir", dir.path], {
    cwd: program.inCwd ? dir.path : undefined,
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (chunk) => (stdout += chunk));
  child.stderr!.on("data", (chunk) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  return new Promise((resolve) => {
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      dir[Symbol.dispose]();
      resolve({ code, signal, stdout, stderr });
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      dir[Symbol.dispose]();
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}\n${error}` });
    });
  });
}

let runs: Map<string, Promise<Run>> | undefined;
/** Every program's run, all started together by the first test that asks. */
function runOf(file: string): Promise<Run> {
  runs ??= new Map(PROGRAMS.map((program) => [program.file, run(program)]));
  return runs.get(file)!;
}

describe("example programs", () => {
  for (const program of PROGRAMS) {
    test(`examples/${program.file} runs to completion and prints its key lines`, {
      timeout: RUN_TIMEOUT_MS + 30_000,
    }, async () => {
      const { code, signal, stdout, stderr } = await runOf(program.file);
      const output = `--- stdout:\n${stdout}--- stderr:\n${stderr}`;
      assert.deepEqual({ code, signal }, { code: 0, signal: null }, output);
      for (const line of program.expected) assert.match(stdout, line, `no line ${line}\n${output}`);
    });
  }
});
