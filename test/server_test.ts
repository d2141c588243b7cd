// The main job (examples/server.ts) as a real child process in the runtime executing the tests:
// named logs over HTTP, 201 only once durable, byte-exact reads, refused requests that change
// nothing on disk, Server-Sent Events that resume with Last-Event-ID across a SIGTERM and a
// restart (no duplicate, no gap), /metrics, and nothing acknowledged lost. Also its --smoke
// self-check, which is what CI runs as `npm start -- --smoke`.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Buffer } from "node:buffer";
import { entryBytes, fingerprint, tempDir } from "./_helpers.ts";
import { ServerProcess } from "./_server_process.ts";

const SERVER = join(import.meta.dirname!, "..", "examples", "server.ts");
const DENO_SERVER_FLAGS = ["--allow-net=127.0.0.1"];
const ENTRY_SIZE_BYTES_MAX = 1024 * 1024;

interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** fetch with the body read (Deno flags unread bodies). */
async function call(url: string, init: RequestInit = {}): Promise<Reply> {
  const response = await fetch(url, init);
  const body = new Uint8Array(await response.arrayBuffer());
  return { status: response.status, headers: response.headers, body };
}

const jsonOf = (reply: Reply) => JSON.parse(new TextDecoder().decode(reply.body));
const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");
const post = (url: string, body: Uint8Array | string) =>
  call(url, { method: "POST", body: body as Uint8Array<ArrayBuffer> });

/** One message of an event stream: an event (id and data) or only comments. */
interface StreamMessage {
  id?: string;
  data?: string;
  comments: string[];
}

/** Reads an event stream message by message. */
class EventReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffered = "";
  readonly response: Response;

  constructor(response: Response) {
    this.response = response;
    this.#reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  }

  /** The next message, or undefined when the stream ended; rejects after `timeoutMs`. */
  async next(timeoutMs = 15_000): Promise<StreamMessage | undefined> {
    for (;;) {
      const end = this.#buffered.indexOf("\n\n");
      if (end >= 0) {
        const block = this.#buffered.slice(0, end);
        this.#buffered = this.#buffered.slice(end + 2);
        const message: StreamMessage = { comments: [] };
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) message.comments.push(line.slice(1).trim());
          else if (line.startsWith("id: ")) message.id = line.slice(4);
          else if (line.startsWith("data: ")) message.data = line.slice(6);
        }
        return message;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const read = await Promise.race([
        this.#reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no event stream data within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]).finally(() => clearTimeout(timer));
      if (read.done) return undefined;
      this.#buffered += read.value;
    }
  }

  /** The next `count` events (comments skipped) as `[id, data]`; fewer if the stream ends. */
  async events(count: number): Promise<Array<[string, string]>> {
    const events: Array<[string, string]> = [];
    while (events.length < count) {
      const message = await this.next();
      if (!message) break;
      if (message.id !== undefined) events.push([message.id, message.data ?? ""]);
    }
    return events;
  }

  /** Reads to the end of the stream: every event left, as `[id, data]`. */
  async rest(): Promise<Array<[string, string]>> {
    return await this.events(Infinity);
  }

  async close(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}

async function openStream(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "text/event-stream");
  return new EventReader(response);
}

/** What the test appended: per log, slot → bytes. */
type Written = Map<string, Map<number, Uint8Array>>;

const LOGS = ["orders", "a/b c", "ünïcödé ✓"];
const path = (name: string) => `/logs/${encodeURIComponent(name)}`;

/** `[id, data]` of slots `from` to `to` (exclusive) of a log. */
function expectedEvents(values: Map<number, Uint8Array>, from: number, to: number) {
  const events: Array<[string, string]> = [];
  for (let slot = from; slot < to; slot++) events.push([String(slot), base64(values.get(slot)!)]);
  return events;
}

describe("examples/server.ts", () => {
  test(
    "logs over HTTP: durable appends, reads, refusals, event streams across a restart",
    { timeout: 240_000 },
    async () => {
      using dir = tempDir();
      const written: Written = new Map(LOGS.map((name) => [name, new Map()]));
      const server = new ServerProcess(SERVER, { DATA_DIR: dir.path }, [], DENO_SERVER_FLAGS);
      let ordersLastId: number;
      try {
        const url = await server.url;
        assert.equal((await call(`${url}/healthz`)).status, 200);
        assert.deepEqual(jsonOf(await call(`${url}/logs`)), { logs: [] });

        // 100 entries to each of 3 logs, all at once: each 201 comes once the commit is durable.
        const posts = LOGS.flatMap((name, l) =>
          Array.from({ length: 100 }, async (_, i) => {
            const value = entryBytes(l * 1000 + i);
            const reply = await post(`${url}${path(name)}/entries`, value);
            assert.equal(reply.status, 201, new TextDecoder().decode(reply.body));
            const { log, slot } = jsonOf(reply);
            assert.equal(log, name);
            assert.equal(reply.headers.get("location"), `${path(name)}/entries/${slot}`);
            assert.ok(!written.get(name)!.has(slot), `slot ${slot} of ${name} given twice`);
            written.get(name)!.set(slot, value);
          })
        );
        await Promise.all(posts);
        for (const name of LOGS) {
          const slots = [...written.get(name)!.keys()].sort((a, b) => a - b);
          assert.deepEqual(slots, Array.from({ length: 100 }, (_, i) => i), name);
        }

        // Read back byte for byte (through the Location each 201 named).
        for (const name of LOGS) {
          const gets = await Promise.all(
            [...written.get(name)!].map(([slot]) => call(`${url}${path(name)}/entries/${slot}`)),
          );
          [...written.get(name)!.values()].forEach((value, i) => {
            assert.equal(gets[i].status, 200);
            assert.equal(gets[i].headers.get("content-type"), "application/octet-stream");
            assert.deepEqual(gets[i].body, value, `${name} entry ${i}`);
          });
        }

        // An entry of exactly entrySizeBytesMax is taken; the log "big" is made by its first POST.
        const big = entryBytes(7, ENTRY_SIZE_BYTES_MAX);
        const bigReply = await post(`${url}/logs/big/entries`, big);
        assert.equal(bigReply.status, 201);
        assert.deepEqual((await call(`${url}/logs/big/entries/0`)).body, big);
        written.set("big", new Map([[0, big]]));

        // A name with line breaks (any string is a name) cannot forge events in its stream.
        const evil = "e\n\nid: 999\ndata: forged\n";
        const evilValue = new TextEncoder().encode("real");
        assert.equal((await post(`${url}${path(evil)}/entries`, evilValue)).status, 201);
        written.set(evil, new Map([[0, evilValue]]));
        const evilStream = await openStream(`${url}${path(evil)}/tail`);
        assert.deepEqual(await evilStream.events(1), [["0", base64(evilValue)]]);
        await evilStream.close();

        assert.deepEqual(jsonOf(await call(`${url}/logs`)), { logs: [...written.keys()].sort() });

        // Refused requests: the status, the JSON code, and not one byte changed on disk.
        const before = fingerprint(dir.path);
        const o = `${url}${path("orders")}`;
        const tooBig = new Uint8Array(ENTRY_SIZE_BYTES_MAX + 1);
        const refusals: Array<[string, Promise<Reply>, number, string]> = [
          ["unknown log entry", call(`${url}/logs/nope/entries/0`), 404, "ERR_LOG_NOT_FOUND"],
          ["unknown log tail", call(`${url}/logs/nope/tail`), 404, "ERR_LOG_NOT_FOUND"],
          ["absent slot", call(`${o}/entries/100000`), 404, "ERR_NOT_FOUND"],
          ["slot abc", call(`${o}/entries/abc`), 400, "ERR_INVALID_ARGUMENT"],
          ["slot -1", call(`${o}/entries/-1`), 400, "ERR_INVALID_ARGUMENT"],
          ["slot 1.5", call(`${o}/entries/1.5`), 400, "ERR_INVALID_ARGUMENT"],
          ["slot 2^70", call(`${o}/entries/${2n ** 70n}`), 400, "ERR_INVALID_ARGUMENT"],
          [
            "bad Last-Event-ID",
            call(`${o}/tail`, { headers: { "last-event-id": "x" } }),
            400,
            "ERR_INVALID_ARGUMENT",
          ],
          ["bad from", call(`${o}/tail?from=-3`), 400, "ERR_INVALID_ARGUMENT"],
          ["empty entry", post(`${o}/entries`, ""), 400, "ERR_INVALID_ARGUMENT"],
          [
            "empty entry, new log",
            post(`${url}/logs/new/entries`, ""),
            400,
            "ERR_INVALID_ARGUMENT",
          ],
          ["oversized entry", post(`${o}/entries`, tooBig), 413, "ERR_TOO_LARGE"],
          ["oversized, new log", post(`${url}/logs/new2/entries`, tooBig), 413, "ERR_TOO_LARGE"],
          ["empty name", post(`${url}/logs//entries`, "x"), 400, "ERR_INVALID_ARGUMENT"],
          ["bad encoding", post(`${url}/logs/%ZZ/entries`, "x"), 400, "ERR_INVALID_ARGUMENT"],
          [
            "name over 1,024 bytes",
            post(`${url}/logs/${"é".repeat(513)}/entries`, "x"),
            400,
            "ERR_INVALID_ARGUMENT",
          ],
          ["PUT entries", call(`${o}/entries`, { method: "PUT", body: "x" }), 405, "ERR_METHOD"],
          ["POST an entry", post(`${o}/entries/0`, "x"), 405, "ERR_METHOD"],
          ["DELETE an entry", call(`${o}/entries/0`, { method: "DELETE" }), 405, "ERR_METHOD"],
          ["POST /logs", post(`${url}/logs`, "x"), 405, "ERR_METHOD"],
          ["POST tail", post(`${o}/tail`, "x"), 405, "ERR_METHOD"],
          ["POST /metrics", post(`${url}/metrics`, "x"), 405, "ERR_METHOD"],
          ["no route", call(`${url}/nope`), 404, "ERR_NO_ROUTE"],
          ["no route under a log", call(`${o}/whatever`), 404, "ERR_NO_ROUTE"],
        ];
        for (const [what, reply, status, code] of refusals) {
          const r = await reply;
          assert.equal(r.status, status, `${what}: ${new TextDecoder().decode(r.body)}`);
          assert.equal(r.headers.get("content-type"), "application/json", what);
          const body = jsonOf(r);
          assert.equal(body.error, code, what);
          assert.equal(typeof body.message, "string", what);
          if (status === 405) assert.ok(r.headers.get("allow"), `${what}: Allow`);
        }
        assert.equal(fingerprint(dir.path), before, "a refused request changed the data directory");
        assert.deepEqual(jsonOf(await call(`${url}/logs`)), { logs: [...written.keys()].sort() });

        // An event stream from the start: slots in order, data = base64 of the bytes. The client
        // goes away after 40 events; it will come back with Last-Event-ID.
        const orders = written.get("orders")!;
        const first = await openStream(`${o}/tail`);
        const firstEvents = await first.events(40);
        await first.close();
        assert.deepEqual(firstEvents, expectedEvents(orders, 0, 40));
        ordersLastId = Number(firstEvents[firstEvents.length - 1][0]);

        // A stream still open at shutdown is ended cleanly, after what it had to send.
        const open = await openStream(`${url}${path("a/b c")}/tail`);
        assert.deepEqual(await open.events(100), expectedEvents(written.get("a/b c")!, 0, 100));

        assert.deepEqual(await server.stop(), { code: 0, signal: null }, server.output);
        assert.deepEqual(await open.rest(), [], "the stream ends (no error) at shutdown");
        assert.match(server.output, /logs closed/);
      } finally {
        await server.kill();
      }

      // Restarted on the same directory.
      const again = new ServerProcess(SERVER, { DATA_DIR: dir.path }, [], DENO_SERVER_FLAGS);
      try {
        const url = await again.url;
        const o = `${url}${path("orders")}`;
        const orders = written.get("orders")!;

        // Resumed after the last id seen: exactly the rest, then new entries live.
        const resumed = await openStream(`${o}/tail?from=0`, {
          "last-event-id": String(ordersLastId),
        });
        assert.deepEqual(await resumed.events(60), expectedEvents(orders, 40, 100));
        for (let i = 0; i < 5; i++) {
          const value = entryBytes(5000 + i);
          const reply = await post(`${o}/entries`, value);
          assert.equal(reply.status, 201);
          assert.equal(jsonOf(reply).slot, 100 + i, "slots continue after the restart");
          orders.set(100 + i, value);
        }
        assert.deepEqual(await resumed.events(5), expectedEvents(orders, 100, 105));

        // Idle past Bun's default idle timeout (10 s): keep-alive comments hold the stream open,
        // and the next entry still arrives.
        const started = Date.now();
        let keepAlives = 0;
        while (keepAlives < 2) {
          const message = await resumed.next(8_000);
          assert.ok(message, "the idle stream was closed");
          assert.equal(message.id, undefined, "no event while idle");
          if (message.comments.includes("keep-alive")) keepAlives++;
        }
        assert.ok(Date.now() - started >= 9_000, "two keep-alives come 5 s apart");
        const late = entryBytes(6000);
        assert.equal((await post(`${o}/entries`, late)).status, 201);
        orders.set(105, late);
        assert.deepEqual(await resumed.events(1), expectedEvents(orders, 105, 106));
        await resumed.close();

        // ?from= is inclusive; Last-Event-ID (above) wins over it.
        const fromStream = await openStream(`${o}/tail?from=103`);
        assert.deepEqual(await fromStream.events(3), expectedEvents(orders, 103, 106));
        await fromStream.close();

        // Prometheus text with hybridlog's series.
        const metrics = await call(`${url}/metrics`);
        assert.equal(metrics.status, 200, new TextDecoder().decode(metrics.body));
        assert.match(metrics.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
        const text = new TextDecoder().decode(metrics.body);
        assert.match(text, /^# TYPE hybridlog_accepts_total counter$/m);
        // The 6 entries appended since the restart, each accepted and committed on its own.
        assert.match(text, /^hybridlog_accepts_total\{log="orders"\} 6$/m);
        assert.match(text, /^hybridlog_commits_requested_total\{log="orders"\} 6$/m);

        // Nothing acknowledged was lost: every entry of every log, byte for byte.
        assert.deepEqual(jsonOf(await call(`${url}/logs`)), { logs: [...written.keys()].sort() });
        for (const [name, values] of written) {
          for (const [slot, value] of values) {
            const reply = await call(`${url}${path(name)}/entries/${slot}`);
            assert.equal(reply.status, 200, `${name} slot ${slot} lost`);
            assert.deepEqual(reply.body, value, `${name} slot ${slot}`);
          }
        }
        assert.deepEqual(await again.stop(), { code: 0, signal: null }, again.output);
      } finally {
        await again.kill();
      }
    },
  );

  test("--smoke: the self-check CI runs starts, round-trips over HTTP and exits 0", {
    timeout: 120_000,
  }, async () => {
    using dir = tempDir();
    const smoke = new ServerProcess(SERVER, { DATA_DIR: dir.path }, ["--smoke"], DENO_SERVER_FLAGS);
    try {
      assert.deepEqual(await smoke.exited, { code: 0, signal: null }, smoke.output);
      assert.match(smoke.output, /self-check passed/);
    } finally {
      await smoke.kill();
    }
  });
});
