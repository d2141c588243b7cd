// An example server as a real child process in the runtime executing the tests: waits for its
// `listening on http://…` line, stops it with SIGTERM, and kills it if a test fails.
import { type ChildProcess, spawn } from "node:child_process";
import { runtimeCommand } from "./_helpers.ts";

/** A server script running as a child process. */
export class ServerProcess {
  readonly child: ChildProcess;
  /** Everything it printed, stdout and stderr, for failure messages. */
  output = "";
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  /** The URL from its `listening on` line. */
  readonly url: Promise<string>;

  /**
   * @param script The server file.
   * @param env Extra environment (PORT is 0 unless given).
   * @param args Arguments after the script.
   * @param denoFlags Extra Deno permissions and flags the server needs.
   */
  constructor(
    script: string,
    env: Record<string, string>,
    args: string[] = [],
    denoFlags: string[] = [],
  ) {
    const [command, prefix] = runtimeCommand(script, denoFlags);
    this.child = spawn(command, [...prefix, ...args], {
      env: { ...process.env, PORT: "0", NO_COLOR: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.exited = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => resolve({ code, signal }));
    });
    this.url = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no listening line:\n${this.output}`)),
        60_000,
      );
      this.child.stdout!.on("data", (chunk) => {
        this.output += chunk;
        const match = this.output.match(/^listening on (http:\/\/\S+)$/m);
        if (match) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      this.child.stderr!.on("data", (chunk) => (this.output += chunk));
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`server exited ${code ?? signal} before listening:\n${this.output}`));
      });
    });
    this.url.catch(() => {}); // awaited by the test; a server that never listens is reported there
  }

  /** SIGTERM, then how it exited. */
  async stop(): Promise<{ code: number | null; signal: string | null }> {
    // Not child.kill(): Deno's node:child_process then reports the exit as by that signal even
    // when the child handled it and exited 0.
    process.kill(this.child.pid!, "SIGTERM");
    return await this.exited;
  }

  /** SIGKILL if still running (a failed test must not leave a server behind). */
  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGKILL");
    await this.exited;
  }
}
