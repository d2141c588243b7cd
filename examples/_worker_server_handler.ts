// The Worker of examples/worker_server.ts: attaches to the ConsensusLog the main thread shared,
// serves HTTP on the port every Worker shares (SO_REUSEPORT), and answers from the shared log.
//
// Messages from the main thread: { type: "start", id, handle, hostname, port } and
// { type: "stop" }. To it: "ready" (listening for messages), "listening" (with the bound port) or
// "failed" (with a message), and "stopped" (server closed, log detached).
import {
  type AttachedConsensusLog,
  type Ballot,
  ConsensusLog,
  type ConsensusLogHandle,
} from "../mod.ts";

/** What the main thread sends. */
export type ToWorker =
  | { type: "start"; id: number; handle: ConsensusLogHandle; hostname: string; port: number }
  | { type: "stop" };

/** What a Worker sends back. */
export type FromWorker =
  | { type: "ready" }
  | { type: "listening"; port: number }
  | { type: "failed"; message: string }
  | { type: "stopped" };

interface WorkerScope {
  onmessage: ((event: MessageEvent<ToWorker>) => void) | null;
  postMessage(message: FromWorker): void;
}

type Handler = (request: Request) => Promise<Response>;

// The few runtime-native calls, typed here so both `deno check` and `tsc` accept the file.
interface BunServe {
  serve(options: {
    hostname: string;
    port: number;
    reusePort: boolean;
    fetch: Handler;
  }): { port: number; stop(): Promise<void> };
}
interface DenoServe {
  serve(options: {
    hostname: string;
    port: number;
    reusePort: boolean;
    onListen(): void;
    handler: Handler;
  }): { addr: { port: number }; shutdown(): Promise<void> };
}

const scope = globalThis as unknown as WorkerScope;
const runtime = globalThis as unknown as { Bun?: BunServe; Deno?: DenoServe };

/** HTTP status for each hybridlog error code (anything else is a 500). */
const STATUS_OF_CODE: Record<string, number> = {
  ERR_INVALID_ARGUMENT: 400,
  ERR_NOT_FOUND: 404,
  ERR_BALLOT: 409,
  ERR_COMMITTED: 409,
  ERR_NOT_COMMITTED: 409,
  ERR_REGION_FULL: 503,
  ERR_CLOSED: 503,
};

const SLOT_PATH = /^\/slots\/(\d+)(\/commit)?$/;
const DIGITS = /^\d+$/;

let workerId = 0;
let log: AttachedConsensusLog | undefined;
let stopServer: (() => Promise<void>) | undefined;

function respond(
  status: number,
  body: BodyInit | null = null,
  headers: Record<string, string> = {},
): Response {
  return new Response(body, { status, headers: { ...headers, "x-worker": String(workerId) } });
}

function failure(status: number, error: string, message: string): Response {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (error === "ERR_REGION_FULL") headers["retry-after"] = "1";
  return respond(status, JSON.stringify({ error, message }), headers);
}

function ballotHeaders(ballot: Ballot, committed: boolean): Record<string, string> {
  return {
    "x-ballot-round": String(ballot.round),
    "x-ballot-node": String(ballot.node),
    "x-committed": String(committed),
  };
}

/** The ballot in `x-ballot-round` / `x-ballot-node`, or undefined if either is not a number. */
function ballotOf(headers: Headers): Ballot | undefined {
  const round = headers.get("x-ballot-round") ?? "";
  const node = headers.get("x-ballot-node") ?? "";
  if (!DIGITS.test(round) || !DIGITS.test(node)) return undefined;
  return { round: Number(round), node: Number(node) };
}

/** Commits `slot` and answers once it is durable, with the ballot that was decided. */
async function commitAndAnswer(log: AttachedConsensusLog, slot: number): Promise<Response> {
  await log.commit(slot);
  // Another request may have accepted a higher ballot between this one's accept and commit: the
  // headers say which entry was decided.
  const entry = log.read(slot)!;
  return respond(204, null, ballotHeaders(entry.ballot, true));
}

async function route(request: Request, log: AttachedConsensusLog): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/healthz") {
    if (request.method !== "GET") return failure(405, "ERR_METHOD", "Use GET");
    const status = log.closed ? 503 : 200;
    return respond(status, JSON.stringify({ ok: !log.closed, worker: workerId }), {
      "content-type": "application/json",
    });
  }
  const match = SLOT_PATH.exec(url.pathname);
  if (!match) return failure(404, "ERR_NO_ROUTE", `No route for ${url.pathname}`);
  const slot = Number(match[1]); // too large for a safe integer: hybridlog answers ERR_INVALID_ARGUMENT
  if (match[2]) {
    if (request.method !== "POST") return failure(405, "ERR_METHOD", "Use POST");
    return await commitAndAnswer(log, slot);
  }
  if (request.method === "GET") {
    const entry = log.read(slot);
    if (!entry) return failure(404, "ERR_NOT_FOUND", `Slot ${slot} holds no entry`);
    return respond(200, entry.value as Uint8Array<ArrayBuffer>, {
      "content-type": "application/octet-stream",
      ...ballotHeaders(entry.ballot, entry.committed),
    });
  }
  if (request.method === "PUT") {
    const ballot = ballotOf(request.headers);
    if (!ballot) {
      return failure(
        400,
        "ERR_INVALID_ARGUMENT",
        "Headers x-ballot-round and x-ballot-node must be non-negative integers",
      );
    }
    const value = new Uint8Array(await request.arrayBuffer());
    // With durableAccepts the accept returns a promise (journaled by the owner); without, nothing.
    await log.accept(slot, ballot, value);
    if (url.searchParams.get("commit") === "1") return await commitAndAnswer(log, slot);
    // Accepted in shared memory, not durable yet: 202, and the client commits when decided.
    return respond(202, null, ballotHeaders(ballot, false));
  }
  return failure(405, "ERR_METHOD", "Use GET or PUT");
}

async function handle(request: Request): Promise<Response> {
  try {
    return await route(request, log!);
  } catch (error) {
    const code = (error as { code?: string }).code;
    const status = code ? STATUS_OF_CODE[code] : undefined;
    if (status) return failure(status, code!, (error as Error).message);
    console.error(`worker ${workerId}: ${request.method} ${request.url}:`, error);
    return failure(500, code ?? "ERR_INTERNAL", "Internal error");
  }
}

function serve(hostname: string, port: number): number {
  if (runtime.Bun) {
    const server = runtime.Bun.serve({ hostname, port, reusePort: true, fetch: handle });
    // Stops listening; requests in flight (and their commits) finish first.
    stopServer = () => server.stop();
    return server.port;
  }
  const server = runtime.Deno!.serve({
    hostname,
    port,
    reusePort: true, // needs --unstable-net in Deno 2.9
    onListen() {}, // the main thread prints one line for all Workers
    handler: handle,
  });
  stopServer = () => server.shutdown();
  return server.addr.port;
}

scope.onmessage = async (event) => {
  const message = event.data;
  if (message.type === "start") {
    try {
      workerId = message.id;
      log = ConsensusLog.attach(message.handle);
      scope.postMessage({ type: "listening", port: serve(message.hostname, message.port) });
    } catch (error) {
      scope.postMessage({ type: "failed", message: String(error) });
    }
  } else if (message.type === "stop") {
    await stopServer?.();
    log?.detach();
    scope.postMessage({ type: "stopped" });
  }
};
// Bun drops messages that reach a Worker before a module with top-level await (hybridlog's FFI
// loader has one) has set `onmessage`: say when this Worker listens.
scope.postMessage({ type: "ready" });
