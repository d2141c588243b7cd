/**
 * An HTTP server for a durable register / queue of slots whose request handlers run in several
 * Workers over ONE ConsensusLog, opened by the main thread and shared with `log.share()`.
 *
 * Run it (the log lives in ./data/worker_server unless --dir or DATA_DIR says otherwise):
 *
 *   bun examples/worker_server.ts [--workers 2] [--port 8000] [--host 127.0.0.1] [--dir DIR]
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys --allow-net \
 *     --unstable-net examples/worker_server.ts [same options]
 *
 * The environment variables WORKERS, PORT, HOST and DATA_DIR set the same (an option wins). Port 0
 * lets the kernel pick; the server prints `listening on http://HOST:PORT` once every Worker is up.
 * SIGINT or SIGTERM stops serving, lets requests in flight finish, and closes the log.
 *
 *   curl -i -X PUT --data-binary 'hello' -H 'x-ballot-round: 1' -H 'x-ballot-node: 1' \
 *     'http://127.0.0.1:8000/slots/7'                  # 202: accepted, not durable yet
 *   curl -i -X POST http://127.0.0.1:8000/slots/7/commit   # 204 once durable (fdatasync)
 *   curl -i -X PUT --data-binary 'world' -H 'x-ballot-round: 1' -H 'x-ballot-node: 1' \
 *     'http://127.0.0.1:8000/slots/8?commit=1'         # 204 once accepted and durable
 *   curl -i http://127.0.0.1:8000/slots/7              # the value; x-ballot-*, x-committed
 *   curl -i http://127.0.0.1:8000/healthz
 *
 * Errors are JSON `{ error, message }` with the hybridlog code: ERR_BALLOT (a lower ballot than
 * the one held) and ERR_COMMITTED (the slot is decided) are 409, ERR_NOT_FOUND 404,
 * ERR_INVALID_ARGUMENT 400, ERR_REGION_FULL 503 with Retry-After, ERR_CLOSED 503. Every response
 * has `x-worker: N`, the Worker that served it.
 *
 * How requests reach the Workers: in both runtimes each Worker runs its own HTTP server on the
 * same port with SO_REUSEPORT (`Bun.serve({ reusePort: true })`, `Deno.serve({ reusePort: true })`)
 * and Linux spreads the connections over them; the main thread serves no HTTP — it owns the log
 * and carries out the Workers' commits with its group commit. Deno 2.9 still marks `reusePort`
 * unstable, hence `--unstable-net`. On other systems SO_REUSEPORT may not balance (macOS hands
 * every connection to one socket): the server still works, with fewer Workers busy.
 */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConsensusLog } from "../mod.ts";
import type { FromWorker, ToWorker } from "./_worker_server_handler.ts";

const isBun = "Bun" in globalThis;
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    workers: { type: "string" },
    port: { type: "string" },
    host: { type: "string" },
    dir: { type: "string" },
  },
});

function integerOption(name: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    console.error(`--${name} must be an integer from ${min} to ${max}, got ${text}`);
    process.exit(2);
  }
  return n;
}

// One log takes up to 128 threads: the owner and 127 Workers.
const workerCount = integerOption("workers", values.workers ?? process.env.WORKERS ?? "2", 1, 127);
const port = integerOption("port", values.port ?? process.env.PORT ?? "8000", 0, 65535);
const hostname = values.host ?? process.env.HOST ?? "127.0.0.1";
const dir = resolve(values.dir ?? process.env.DATA_DIR ?? join("data", "worker_server"));

/** A Worker running the handler module, with its messages read one at a time. */
class HandlerWorker {
  readonly worker = new Worker(new URL("./_worker_server_handler.ts", import.meta.url).href, {
    type: "module",
  });
  #queue: FromWorker[] = [];
  #waiting: Array<(message: FromWorker) => void> = [];

  constructor(onCrash: (message: string) => void) {
    this.worker.onmessage = (event: MessageEvent<FromWorker>) => this.#deliver(event.data);
    this.worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      const message = event.message ?? String(event);
      if (this.#waiting.length) this.#deliver({ type: "failed", message });
      else onCrash(message);
    };
  }

  #deliver(message: FromWorker): void {
    const waiter = this.#waiting.shift();
    if (waiter) waiter(message);
    else this.#queue.push(message);
  }

  /** The next message from the Worker, or "failed" if none comes within `timeoutMs`. */
  next(timeoutMs: number): Promise<FromWorker> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.splice(this.#waiting.indexOf(waiter), 1);
        resolve({ type: "failed", message: `no answer within ${timeoutMs} ms` });
      }, timeoutMs);
      const waiter = (message: FromWorker) => {
        clearTimeout(timer);
        resolve(message);
      };
      this.#waiting.push(waiter);
    });
  }

  /** Sends `message` and waits for the answer, which must be of type `expected`. */
  async ask(message: ToWorker | undefined, expected: FromWorker["type"]): Promise<FromWorker> {
    if (message) this.worker.postMessage(message);
    const answer = await this.next(10_000);
    if (answer.type !== expected) {
      throw new Error(answer.type === "failed" ? answer.message : `unexpected ${answer.type}`);
    }
    return answer;
  }
}

console.log(
  `hybridlog worker_server on ${isBun ? "Bun" : "Deno"}: ${workerCount} Workers, log in ${dir}`,
);
const log = await ConsensusLog.open({ dir });
const handle = log.share();
let stopping = false;
const workers = Array.from({ length: workerCount }, () =>
  new HandlerWorker((message) => {
    console.error(`a Worker crashed: ${message}`);
    void shutdown("a Worker crash", 1);
  }));

async function shutdown(reason: string, exitCode: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`${reason}: stopping the Workers`);
  // Each Worker stops accepting connections and finishes its requests (their commits still run
  // on this thread's group commit); then the log is closed and is consistent on disk.
  const answers = await Promise.allSettled(
    workers.map((w) => w.ask({ type: "stop" }, "stopped")),
  );
  for (const answer of answers) {
    if (answer.status === "rejected") console.error(`a Worker did not stop: ${answer.reason}`);
  }
  await log.close();
  for (const w of workers) w.worker.terminate();
  console.log("log closed");
  process.exit(exitCode);
}

try {
  await Promise.all(workers.map((w) => w.ask(undefined, "ready")));
  const start = (w: HandlerWorker, i: number, port: number) =>
    w.ask({ type: "start", id: i + 1, handle, hostname, port }, "listening");
  // The first Worker binds the port (0: the kernel picks one); the others join that port.
  const first = await start(workers[0], 0, port) as { port: number };
  await Promise.all(workers.slice(1).map((w, i) => start(w, i + 1, first.port)));
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  console.log(`listening on http://${host}:${first.port}`);
} catch (error) {
  console.error(`cannot start: ${(error as Error).message}`);
  await shutdown("start failed", 1);
}

// A second signal exits at once; the next open recovers the log (what was committed is durable).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => stopping ? process.exit(1) : void shutdown(signal, 0));
}
