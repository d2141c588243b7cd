/**
 * The main job (`npm start`): an HTTP server for named, durable logs — one file that runs unchanged
 * under `Bun.serve` and `Deno.serve` (a plain `fetch` handler, no framework) over a `LogManager`.
 *
 *   bun examples/server.ts [--port 8000] [--host 127.0.0.1] [--dir ./data]
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys --allow-net \
 *     examples/server.ts [same options]
 *   bun examples/server.ts --smoke     # self-check over real HTTP in a temporary directory, exits
 *
 * The environment variables PORT, HOST and DATA_DIR set the same (an option wins). Port 0 lets the
 * kernel pick; the server prints `listening on http://HOST:PORT` once it accepts connections.
 * SIGINT or SIGTERM stops accepting requests, ends every event stream, lets requests in flight
 * finish, closes every log and exits 0 (a second signal exits 1 at once; the next start recovers).
 *
 * Each log is a `ConsensusLog` of the manager used as a queue: the server numbers a log's entries
 * 0, 1, 2, … (the entry's *slot*), accepts each under one fixed ballot and commits it at once, in
 * slot order, so a log's commit order is its slot order. (`LogManager` manages `ConsensusLog`s; an
 * `AppendLog`'s byte addresses would do as well, but the manager has no `AppendLog` kind.)
 *
 *   POST /logs/NAME/entries          body = the entry's raw bytes (content-type is ignored; 1 byte
 *                                    to 1 MiB). Appends to the log NAME — creating it if new, that
 *                                    is how a log is made — and answers 201 only once the commit
 *                                    is durable (fdatasync): { log, slot } and `Location`.
 *   GET  /logs/NAME/entries/SLOT     the entry's bytes (application/octet-stream)
 *   GET  /logs                       { logs: [names…] } (sorted; logs named by bytes are skipped)
 *   GET  /logs/NAME/tail             Server-Sent Events: every committed entry as
 *                                    `id: SLOT` + `data: BASE64 OF THE BYTES`, then each new one
 *                                    as its commit becomes durable. Starts after the slot in the
 *                                    `Last-Event-ID` header (what a browser's EventSource sends
 *                                    when it reconnects, also after a server restart: exactly the
 *                                    entries after it, no duplicate, no gap), else at `?from=SLOT`
 *                                    (inclusive), else at 0. A `: keep-alive` comment every 5 s
 *                                    keeps idle streams open; streams end on shutdown.
 *   GET  /metrics                    Prometheus text (hybridlog's defaultMetrics)
 *   GET  /healthz                    { ok, openLogs, streams }
 *
 * NAME is one URL path segment, percent-decoded (`a%2Fb` is the log "a/b"): any string of 1 to
 * 1,024 UTF-8 bytes; the manager maps it to a safe directory name. Errors are JSON
 * `{ error: CODE, message }`: 400 ERR_INVALID_ARGUMENT (bad name, slot, Last-Event-ID or `from`;
 * empty body), 404 ERR_LOG_NOT_FOUND (reading a log that does not exist), ERR_NOT_FOUND (no such
 * entry) or ERR_NO_ROUTE, 405 ERR_METHOD (with `Allow`), 413 ERR_TOO_LARGE (over the log's
 * `entrySizeBytesMax`), 503 ERR_REGION_FULL (with `Retry-After`) or ERR_CLOSED (shutting down).
 * A refused request changes nothing on disk.
 *
 *   curl -i --data-binary 'hello' http://127.0.0.1:8000/logs/orders/entries   # 201 {"slot":0}
 *   curl -i http://127.0.0.1:8000/logs/orders/entries/0                       # hello
 *   curl -N http://127.0.0.1:8000/logs/orders/tail                            # id: 0 / data: aGVsbG8=
 *   curl -N -H 'Last-Event-ID: 0' http://127.0.0.1:8000/logs/orders/tail      # after slot 0
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Buffer } from "node:buffer";
import { type ConsensusLog, defaultMetrics, HybridLogError, LogManager } from "../mod.ts";

/** Largest entry: the logs' `entrySizeBytesMax` (the managed logs' region holds 4 MiB). */
const ENTRY_SIZE_BYTES_MAX = 1024 * 1024;
/** Longest log name in UTF-8 bytes (LogManager's limit). */
const NAME_BYTES_MAX = 1024;
/** Every entry is accepted under this ballot and committed at once: the log is a queue. */
const BALLOT = { round: 1, node: 1 };
/** A comment on every event stream this often, so no proxy or server closes it as idle. */
const KEEP_ALIVE_MS = 5_000;
/** Bun closes connections idle this long (its default of 10 s is close to the keep-alive). */
const IDLE_TIMEOUT_S = 30;

type Handler = (request: Request) => Promise<Response>;

// The few runtime-native calls, typed here so both `deno check` and `tsc` accept the file.
interface BunServe {
  serve(options: {
    hostname: string;
    port: number;
    idleTimeout: number;
    maxRequestBodySize: number;
    fetch: Handler;
  }): { port: number; stop(closeActiveConnections?: boolean): Promise<void> };
}
interface DenoServe {
  serve(options: {
    hostname: string;
    port: number;
    onListen(addr: { port: number }): void;
    handler: Handler;
  }): { addr: { port: number }; shutdown(): Promise<void> };
}
const runtime = globalThis as unknown as { Bun?: BunServe; Deno?: DenoServe };

const encoder = new TextEncoder();
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");
const DIGITS = /^\d+$/;

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { ...headers, "content-type": "application/json" },
  });
}

function failure(error: HttpError): Response {
  return json(error.status, { error: error.code, message: error.message }, error.headers);
}

/** hybridlog errors by code; anything else is a 500. */
function failureOf(error: unknown): Response {
  if (error instanceof HttpError) return failure(error);
  if (error instanceof HybridLogError) {
    const message = error.message;
    switch (error.code) {
      case "ERR_INVALID_ARGUMENT":
        return failure(new HttpError(400, error.code, message));
      case "ERR_REGION_FULL":
        return failure(new HttpError(503, error.code, message, { "retry-after": "1" }));
      case "ERR_CLOSED":
        return failure(new HttpError(503, error.code, message));
      default:
        return failure(new HttpError(500, error.code, message));
    }
  }
  console.error(error);
  return failure(new HttpError(500, "ERR_INTERNAL", String((error as Error)?.message ?? error)));
}

/** A slot in a URL or header: a non-negative safe integer written in decimal digits. */
function slotOf(text: string, what: string): number {
  const n = Number(text);
  if (!DIGITS.test(text) || !Number.isSafeInteger(n)) {
    throw new HttpError(400, "ERR_INVALID_ARGUMENT", `${what} must be a slot number, got ${text}`);
  }
  return n;
}

/** The log name in a path segment: percent-decoded, 1 to 1,024 UTF-8 bytes. */
function nameOf(segment: string): string {
  let name: string;
  try {
    name = decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, "ERR_INVALID_ARGUMENT", `Bad percent-encoding in ${segment}`);
  }
  const bytes = encoder.encode(name).length;
  if (bytes === 0 || bytes > NAME_BYTES_MAX) {
    throw new HttpError(
      400,
      "ERR_INVALID_ARGUMENT",
      `A log name is 1 to ${NAME_BYTES_MAX} bytes, got ${bytes}`,
    );
  }
  return name;
}

/** The request body, refused with 413 as soon as it is larger than `max` (never read whole). */
async function bodyOf(request: Request, max: number): Promise<Uint8Array> {
  const tooLarge = () =>
    new HttpError(413, "ERR_TOO_LARGE", `An entry is at most ${max} bytes`, {
      connection: "close",
    });
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > max) throw tooLarge();
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > max) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const body = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/** The first free slot of a log this server writes (dense from 0), found once per log. */
function firstFreeSlot(log: ConsensusLog): number {
  const { committedCount, acceptedCount } = log.stats();
  const count = committedCount + acceptedCount;
  // Dense from 0, as this server writes them: count is the next slot.
  if (log.read(count) === undefined && (count === 0 || log.read(count - 1) !== undefined)) {
    return count;
  }
  // Written by something else: after the highest slot held.
  let next = 0;
  for (const entry of log.committed()) next = Math.max(next, entry.slot + 1);
  for (const entry of log.uncommitted()) next = Math.max(next, entry.slot + 1);
  return next;
}

/** The options the server starts with. */
export interface ServerOptions {
  dir: string;
  hostname: string;
  port: number;
}

/** A started server. */
export interface RunningServer {
  /** `http://HOST:PORT`. */
  readonly url: string;
  /** Stops accepting, ends event streams, waits for requests in flight, closes every log. */
  stop(): Promise<void>;
}

/** Starts the server; resolves once it accepts connections. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const manager = new LogManager({ dir: options.dir, entrySizeBytesMax: ENTRY_SIZE_BYTES_MAX });
  /** Names of the logs that exist (string names only: a URL can name nothing else). */
  const known = new Set(manager.names().filter((n): n is string => typeof n === "string"));
  /** The next slot of each log written since the start. */
  const nextSlots = new Map<string, number>();
  /** Ends each open event stream (resolves once its lease is released). */
  const streams = new Set<() => Promise<void>>();
  let stopping = false;

  function mustExist(name: string): void {
    if (!known.has(name)) {
      throw new HttpError(404, "ERR_LOG_NOT_FOUND", `No log named ${JSON.stringify(name)}`);
    }
  }

  async function append(name: string, request: Request): Promise<Response> {
    const value = await bodyOf(request, ENTRY_SIZE_BYTES_MAX);
    if (value.length === 0) {
      throw new HttpError(400, "ERR_INVALID_ARGUMENT", "An entry is at least 1 byte");
    }
    const lease = await manager.acquire(name); // creates the log on first use
    try {
      known.add(name);
      const log = lease.log;
      // Slot, accept and the commit record's place in the tail are taken in one synchronous step,
      // so a log's commit order is its slot order (what event-stream resumption relies on).
      const slot = nextSlots.get(name) ?? firstFreeSlot(log);
      nextSlots.set(name, slot + 1);
      try {
        log.accept(slot, BALLOT, value);
      } catch (error) {
        nextSlots.set(name, slot); // nothing was accepted: the slot stays free
        throw error;
      }
      await log.commit(slot); // durable when it resolves (group commit with other requests)
      const location = `/logs/${encodeURIComponent(name)}/entries/${slot}`;
      return json(201, { log: name, slot }, { location });
    } finally {
      lease.release();
    }
  }

  async function read(name: string, slotText: string): Promise<Response> {
    const slot = slotOf(slotText, "The entry");
    mustExist(name);
    const lease = await manager.acquire(name);
    try {
      const entry = lease.log.read(slot);
      if (!entry?.committed) {
        throw new HttpError(
          404,
          "ERR_NOT_FOUND",
          `Log ${JSON.stringify(name)} has no slot ${slot}`,
        );
      }
      return new Response(entry.value as Uint8Array<ArrayBuffer>, {
        headers: { "content-type": "application/octet-stream" },
      });
    } finally {
      lease.release();
    }
  }

  async function tail(name: string, request: Request, url: URL): Promise<Response> {
    const lastEventId = request.headers.get("last-event-id");
    const fromText = url.searchParams.get("from");
    let from = 0;
    if (lastEventId !== null && lastEventId !== "") from = slotOf(lastEventId, "Last-Event-ID") + 1;
    else if (fromText !== null) from = slotOf(fromText, "from");
    mustExist(name);
    const lease = await manager.acquire(name);
    if (stopping) {
      // Shutdown began while the log opened: a stream started now would never be ended.
      lease.release();
      throw new HttpError(503, "ERR_CLOSED", "The server is shutting down");
    }
    const abort = new AbortController();
    const entries = lease.log.tail({ from, signal: abort.signal });
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let keepAlive: ReturnType<typeof setInterval> | undefined;
    let ended: Promise<void> | undefined;
    const end = (): Promise<void> =>
      ended ??= (async () => {
        abort.abort();
        clearInterval(keepAlive);
        streams.delete(end);
        try {
          controller.close();
        } catch { /* already closed or cancelled */ }
        await entries.return(undefined).catch(() => {});
        lease.release();
      })();
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        controller = c;
        // Reconnect after 1 s; the comment sends the headers at once. JSON escapes any line
        // break in the name, so no name can forge an event.
        c.enqueue(encoder.encode(`retry: 1000\n: ${JSON.stringify(name)} from slot ${from}\n\n`));
        keepAlive = setInterval(() => {
          try {
            c.enqueue(KEEP_ALIVE);
          } catch { /* closed */ }
        }, KEEP_ALIVE_MS);
      },
      async pull(c) {
        let next: IteratorResult<{ slot: number; value: Uint8Array }>;
        try {
          next = await entries.next();
        } catch (error) {
          console.error(`event stream of ${JSON.stringify(name)} failed:`, error);
          void end();
          return;
        }
        if (next.done) return void end();
        const data = Buffer.from(next.value.value).toString("base64");
        try {
          c.enqueue(encoder.encode(`id: ${next.value.slot}\ndata: ${data}\n\n`));
        } catch { /* closed meanwhile */ }
      },
      cancel: () => end(),
    });
    streams.add(end);
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-store",
        "x-accel-buffering": "no",
      },
    });
  }

  function allow(request: Request, methods: string): void {
    if (!methods.split(", ").includes(request.method)) {
      throw new HttpError(405, "ERR_METHOD", `Use ${methods}`, { allow: methods });
    }
  }

  async function route(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    if (path === "/healthz") {
      allow(request, "GET");
      const { openLogs } = manager.stats();
      return json(200, { ok: true, openLogs, streams: streams.size });
    }
    if (path === "/metrics") {
      allow(request, "GET");
      // Every log this process opens records into hybridlog's default registry.
      return new Response(defaultMetrics.prometheus(), {
        headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
      });
    }
    if (path === "/logs" || path === "/logs/") {
      allow(request, "GET");
      const logs = manager.names().filter((n): n is string => typeof n === "string").sort();
      return json(200, { logs });
    }
    const parts = path.split("/"); // "", "logs", NAME, …
    if (parts[1] === "logs" && parts.length >= 4) {
      if (parts.length === 4 && parts[3] === "entries") {
        allow(request, "POST");
        return await append(nameOf(parts[2]), request);
      }
      if (parts.length === 5 && parts[3] === "entries") {
        allow(request, "GET");
        return await read(nameOf(parts[2]), parts[4]);
      }
      if (parts.length === 4 && parts[3] === "tail") {
        allow(request, "GET");
        return await tail(nameOf(parts[2]), request, url);
      }
    }
    throw new HttpError(404, "ERR_NO_ROUTE", `No route for ${request.method} ${path}`);
  }

  const handler: Handler = async (request) => {
    if (stopping) {
      return failure(new HttpError(503, "ERR_CLOSED", "The server is shutting down"));
    }
    try {
      return await route(request);
    } catch (error) {
      return failureOf(error);
    }
  };

  let port: number;
  let stopServer: () => Promise<void>;
  if (runtime.Bun) {
    const server = runtime.Bun.serve({
      hostname: options.hostname,
      port: options.port,
      idleTimeout: IDLE_TIMEOUT_S,
      // Larger than any entry, so the handler (not Bun) answers 413 with the JSON error.
      maxRequestBodySize: 4 * ENTRY_SIZE_BYTES_MAX,
      fetch: handler,
    });
    port = server.port;
    stopServer = () => server.stop();
  } else if (runtime.Deno) {
    let listening!: () => void;
    const ready = new Promise<void>((resolve) => (listening = resolve));
    const server = runtime.Deno.serve({
      hostname: options.hostname,
      port: options.port,
      onListen: () => listening(),
      handler,
    });
    await ready;
    port = server.addr.port;
    stopServer = () => server.shutdown();
  } else {
    throw new Error("This server runs under Bun or Deno");
  }

  const host = options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname;
  return {
    url: `http://${host}:${port}`,
    async stop() {
      stopping = true;
      await Promise.all([...streams].map((end) => end()));
      await stopServer();
      await manager.closeAll({ timeoutMs: 5_000 });
    },
  };
}

// ---- the self-check (--smoke): what CI runs ------------------------------------------------------

function check(condition: unknown, what: string): asserts condition {
  if (!condition) throw new Error(`self-check failed: ${what}`);
}

/** Reads events (`{ id, data }`) off an event stream. */
async function readEvents(
  response: Response,
  count: number,
): Promise<Array<{ id: string; data: string }>> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: Array<{ id: string; data: string }> = [];
  let buffered = "";
  const timer = setTimeout(() => void reader.cancel(), 10_000);
  try {
    while (events.length < count) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf("\n\n")) >= 0) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const field = (name: string) =>
          block.split("\n").find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2);
        const id = field("id");
        if (id !== undefined) events.push({ id, data: field("data") ?? "" });
      }
    }
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
  return events;
}

/**
 * Starts the server on a free port in a temporary directory and checks over real HTTP: appends
 * (201), reads back, the list of logs, a bad request, an event stream, /metrics; then restarts
 * on the same directory and checks that a stream resumed with Last-Event-ID gets exactly the
 * entries after it, old and new.
 */
async function selfCheck(hostname: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "hybridlog-server-smoke-"));
  const name = "smoke/✓ test";
  const path = `/logs/${encodeURIComponent(name)}`;
  const values = ["first", "second", "third", "after the restart"].map((s) => encoder.encode(s));
  const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
  try {
    let server = await startServer({ dir, hostname, port: 0 });
    try {
      console.log(`self-check: server on ${server.url}, data in ${dir}`);
      for (const [i, value] of values.slice(0, 3).entries()) {
        const reply = await fetch(`${server.url}${path}/entries`, {
          method: "POST",
          body: value as Uint8Array<ArrayBuffer>,
        });
        check(reply.status === 201, `append ${i}: status ${reply.status}`);
        check((await reply.json()).slot === i, `append ${i}: slot`);
        check(reply.headers.get("location") === `${path}/entries/${i}`, `append ${i}: Location`);
        const read = await fetch(`${server.url}${path}/entries/${i}`);
        check(read.status === 200, `read ${i}: status ${read.status}`);
        check(
          base64(new Uint8Array(await read.arrayBuffer())) === base64(value),
          `read ${i}: bytes`,
        );
      }
      const list = await (await fetch(`${server.url}/logs`)).json();
      check(list.logs.includes(name), `GET /logs lists ${name}`);
      const bad = await fetch(`${server.url}${path}/entries/x`);
      check(bad.status === 400 && (await bad.json()).error === "ERR_INVALID_ARGUMENT", "400");
      const events = await readEvents(await fetch(`${server.url}${path}/tail`), 3);
      check(
        events.map((e) => e.id).join() === "0,1,2" &&
          events.every((e, i) => e.data === base64(values[i])),
        `event stream: ${JSON.stringify(events)}`,
      );
      const metrics = await fetch(`${server.url}/metrics`);
      const text = await metrics.text();
      check(metrics.status === 200 && text.includes("hybridlog_"), "/metrics has hybridlog_");
    } finally {
      await server.stop();
    }
    server = await startServer({ dir, hostname, port: 0 });
    try {
      const stream = await fetch(`${server.url}${path}/tail`, {
        headers: { "last-event-id": "1" },
      });
      const appended = fetch(`${server.url}${path}/entries`, {
        method: "POST",
        body: values[3] as Uint8Array<ArrayBuffer>,
      });
      const events = await readEvents(stream, 2);
      check((await appended).status === 201, "append after the restart");
      check(
        events.map((e) => e.id).join() === "2,3" && events[1].data === base64(values[3]),
        `resumed event stream: ${JSON.stringify(events)}`,
      );
    } finally {
      await server.stop();
    }
    console.log(
      "self-check passed: append (201 once durable), read, list, 400, event stream, /metrics, " +
        "restart and resume with Last-Event-ID",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- main --------------------------------------------------------------------------------------

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      port: { type: "string" },
      host: { type: "string" },
      dir: { type: "string" },
      smoke: { type: "boolean" },
    },
  });
  const portText = values.port ?? process.env.PORT ?? "8000";
  const port = Number(portText);
  if (!DIGITS.test(portText) || port > 65535) {
    console.error(`--port must be an integer from 0 to 65535, got ${portText}`);
    process.exit(2);
  }
  const hostname = values.host ?? process.env.HOST ?? "127.0.0.1";
  const dir = resolve(values.dir ?? process.env.DATA_DIR ?? "data");
  const runtimeName = runtime.Bun ? "Bun" : "Deno";

  if (values.smoke) {
    console.log(`hybridlog server self-check on ${runtimeName}`);
    try {
      await selfCheck(hostname);
      process.exit(0);
    } catch (error) {
      console.error((error as Error).stack ?? error);
      process.exit(1);
    }
  }

  console.log(`hybridlog server on ${runtimeName}, logs in ${dir}`);
  let server: RunningServer;
  try {
    server = await startServer({ dir, hostname, port });
  } catch (error) {
    console.error(`cannot start: ${(error as Error).message}`);
    process.exit(1);
  }
  console.log(`listening on ${server.url}`);
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, async () => {
      if (stopping) process.exit(1);
      stopping = true;
      console.log(`${signal}: stopping`);
      try {
        await server.stop();
        console.log("logs closed");
        process.exit(0);
      } catch (error) {
        console.error(`shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      }
    });
  }
}
