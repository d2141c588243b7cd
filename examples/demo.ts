// A tour of AppendLog's crash safety: `npm run demo` (Bun) or `deno run -A examples/demo.ts`.
// On the embedded data directory ./data/demo it
//   1. reopens the log (recovering whatever a previous run left) and reports what it found,
//   2. appends and durably commits a few entries with a cookie,
//   3. starts a writer process, kills it with SIGKILL mid-stream, reopens, and checks that every
//      entry the writer saw acknowledged is there, byte for byte.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { AppendLog } from "../mod.ts";

const dir = join(process.cwd(), "data", "demo");
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const isBun = "Bun" in globalThis;

if (process.argv[2] === "--writer") {
  // Child mode: append and commit as fast as it can, printing each acknowledged address.
  const log = await AppendLog.open({ dir });
  process.stdout.write("ready\n");
  for (let n = 0;; n++) {
    const address = log.enqueue(encoder.encode(`writer entry ${n}`));
    await log.commit();
    process.stdout.write(`${address} ${n}\n`);
  }
}

function runWriterAndKill(afterMs: number): Promise<Map<number, number>> {
  const script = import.meta.filename!;
  const args = isBun ? [script, "--writer"] : ["run", "--allow-all", script, "--writer"];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  const acknowledged = new Map<number, number>();
  let pending = "";
  return new Promise((resolve) => {
    child.stdout!.on("data", (chunk: Uint8Array) => {
      pending += decoder.decode(chunk);
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (line === "ready") setTimeout(() => child.kill("SIGKILL"), afterMs);
        else {
          const [address, n] = line.split(" ").map(Number);
          acknowledged.set(address, n);
        }
      }
    });
    child.on("exit", () => resolve(acknowledged));
  });
}

console.log(`hybridlog demo on ${isBun ? "Bun" : "Deno"}, data directory ${dir}`);
{
  await using log = await AppendLog.open({ dir });
  const count = [...log.scan()].length;
  const cookie = log.cookie ? decoder.decode(log.cookie) : "none";
  console.log(
    `reopened: ${count} committed entries, commit #${log.commitNumber}, ` +
      `addresses ${log.beginAddress}..${log.committedUntilAddress}, cookie: ${cookie}` +
      (log.recoveredTruncatedTail ? ", a torn tail was cut off" : ""),
  );
  const started = performance.now();
  for (let i = 0; i < 1000; i++) log.enqueue(encoder.encode(`order ${i}: 1 × widget`));
  const point = await log.commit({
    cookie: encoder.encode(`demo run at ${new Date().toISOString()}`),
  });
  const ms = (performance.now() - started).toFixed(2);
  console.log(
    `appended 1000 entries and committed them durably (fdatasync) in ${ms} ms: commit #${point.commitNumber}`,
  );
}

console.log("starting a writer process and killing it with SIGKILL after 300 ms …");
const acknowledged = await runWriterAndKill(300);
{
  await using log = await AppendLog.open({ dir });
  let intact = 0;
  for (const [address, n] of acknowledged) {
    const value = log.read(address);
    if (value && decoder.decode(value) === `writer entry ${n}`) intact++;
  }
  console.log(
    `after the crash: ${acknowledged.size} acknowledged entries, ${intact} found intact` +
      (log.recoveredTruncatedTail ? "; recovery cut off an unacknowledged torn tail" : "") +
      `; log now ends at address ${log.committedUntilAddress}`,
  );
  if (intact !== acknowledged.size) {
    console.error("LOST ACKNOWLEDGED ENTRIES");
    process.exit(1);
  }
  // Keep the demo directory small across runs: drop everything but the latest entries.
  const entries = [...log.scan()];
  if (entries.length > 10_000) {
    log.truncateUntil(entries[entries.length - 10_000].address);
    await log.commit();
  }
}
console.log("nothing acknowledged was lost.");
