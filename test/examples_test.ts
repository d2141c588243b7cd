// The examples run as real child processes in the runtime executing the tests: the Worker HTTP
// server (examples/worker_server.ts) serves a log from several Workers, shuts down cleanly on
// SIGTERM, and what it acknowledged as committed is in the log when the test reopens it.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ConsensusLog } from "../mod.ts";
import { entryBytes, tempDir } from "./_helpers.ts";
import { ServerProcess } from "./_server_process.ts";

const WORKER_SERVER = join(import.meta.dirname!, "..", "examples", "worker_server.ts");
// The server listens on 127.0.0.1; Deno 2.9 marks Deno.serve's reusePort unstable.
const DENO_SERVER_FLAGS = ["--allow-net=127.0.0.1", "--unstable-net"];

interface Reply {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

/** fetch with the body read (Deno flags unread bodies) and the serving Worker recorded. */
async function call(url: string, init: RequestInit = {}, workers?: Set<string>): Promise<Reply> {
  const response = await fetch(url, init);
  const body = new Uint8Array(await response.arrayBuffer());
  workers?.add(response.headers.get("x-worker") ?? "none");
  return { status: response.status, headers: response.headers, body };
}

const errorOf = (reply: Reply) => JSON.parse(new TextDecoder().decode(reply.body)).error;
const ballotHeaders = (round: number, node: number) => ({
  "x-ballot-round": String(round),
  "x-ballot-node": String(node),
});

describe("examples/worker_server.ts", () => {
  test(
    "Workers serve one log over HTTP; committed slots survive SIGTERM and a restart",
    { timeout: 180_000 },
    async () => {
      using dir = tempDir();
      const slots = Array.from(
        { length: 50 },
        (_, i) => ({ slot: i * 7 + 3, value: entryBytes(i) }),
      );
      const workersSeen = new Set<string>();
      const server = new ServerProcess(
        WORKER_SERVER,
        { WORKERS: "2", DATA_DIR: dir.path },
        [],
        DENO_SERVER_FLAGS,
      );
      try {
        const url = await server.url;
        assert.equal((await call(`${url}/healthz`)).status, 200);

        // 50 accept-and-commit requests at once: each answers 204 only once durable.
        const puts = await Promise.all(
          slots.map(({ slot, value }) =>
            call(`${url}/slots/${slot}?commit=1`, {
              method: "PUT",
              headers: ballotHeaders(2, 1),
              body: value as Uint8Array<ArrayBuffer>,
            }, workersSeen)
          ),
        );
        for (const reply of puts) {
          assert.equal(reply.status, 204);
          assert.equal(reply.headers.get("x-committed"), "true");
        }
        const gets = await Promise.all(
          slots.map(({ slot }) => call(`${url}/slots/${slot}`, {}, workersSeen)),
        );
        gets.forEach((reply, i) => {
          assert.equal(reply.status, 200, `slot ${slots[i].slot}`);
          assert.deepEqual(reply.body, slots[i].value, `slot ${slots[i].slot}`);
          assert.equal(reply.headers.get("x-committed"), "true");
          assert.equal(reply.headers.get("x-ballot-round"), "2");
          assert.equal(reply.headers.get("x-ballot-node"), "1");
        });

        // Accept only (202), a lower ballot is refused, then commit the accepted one.
        const extra = { slot: 1000, value: entryBytes(1000) };
        const accepted = await call(`${url}/slots/${extra.slot}`, {
          method: "PUT",
          headers: ballotHeaders(5, 2),
          body: extra.value as Uint8Array<ArrayBuffer>,
        });
        assert.equal(accepted.status, 202);
        assert.equal(accepted.headers.get("x-committed"), "false");
        const lower = await call(`${url}/slots/${extra.slot}`, {
          method: "PUT",
          headers: ballotHeaders(4, 9),
          body: "lower",
        });
        assert.deepEqual([lower.status, errorOf(lower)], [409, "ERR_BALLOT"]);
        const read = await call(`${url}/slots/${extra.slot}`);
        assert.deepEqual([read.body, read.headers.get("x-committed")], [extra.value, "false"]);
        const commit = await call(`${url}/slots/${extra.slot}/commit`, { method: "POST" });
        assert.equal(commit.status, 204);
        assert.equal((await call(`${url}/slots/${extra.slot}`)).headers.get("x-committed"), "true");
        slots.push(extra);

        // A decided slot never changes; absent slots and bad ballots get their status codes.
        const overwrite = await call(`${url}/slots/${slots[0].slot}`, {
          method: "PUT",
          headers: ballotHeaders(99, 1),
          body: "late",
        });
        assert.deepEqual([overwrite.status, errorOf(overwrite)], [409, "ERR_COMMITTED"]);
        const missing = await call(`${url}/slots/1`);
        assert.deepEqual([missing.status, errorOf(missing)], [404, "ERR_NOT_FOUND"]);
        const missingCommit = await call(`${url}/slots/1/commit`, { method: "POST" });
        assert.deepEqual([missingCommit.status, errorOf(missingCommit)], [404, "ERR_NOT_FOUND"]);
        const badBallot = await call(`${url}/slots/1`, { method: "PUT", body: "no ballot" });
        assert.deepEqual([badBallot.status, errorOf(badBallot)], [400, "ERR_INVALID_ARGUMENT"]);

        // The kernel spread the concurrent connections over the Workers.
        assert.ok(
          workersSeen.size > 1,
          `only Worker ${[...workersSeen]} served:\n${server.output}`,
        );
        assert.ok(!workersSeen.has("none"), "every response names its Worker");

        assert.deepEqual(await server.stop(), { code: 0, signal: null }, server.output);
        assert.match(server.output, /log closed/);
      } finally {
        await server.kill();
      }

      // The server closed the log: reopened here, every acknowledged commit is there.
      {
        await using log = await ConsensusLog.open({ dir: dir.path });
        for (const { slot, value } of slots) {
          const entry = log.readCommitted(slot);
          assert.ok(entry, `slot ${slot} lost`);
          assert.deepEqual(entry.value, value, `slot ${slot}`);
        }
        assert.equal(log.stats().committedCount, slots.length);
      }

      // A second server on the same directory serves what the first one committed.
      const again = new ServerProcess(
        WORKER_SERVER,
        { WORKERS: "2", DATA_DIR: dir.path },
        [],
        DENO_SERVER_FLAGS,
      );
      try {
        const url = await again.url;
        for (const { slot, value } of [slots[0], slots[slots.length - 1]]) {
          const reply = await call(`${url}/slots/${slot}`);
          assert.equal(reply.status, 200);
          assert.deepEqual(reply.body, value);
          assert.equal(reply.headers.get("x-committed"), "true");
        }
        assert.deepEqual(await again.stop(), { code: 0, signal: null }, again.output);
      } finally {
        await again.kill();
      }
    },
  );
});
