// The `hybridlog` command-line tool, run as a child process in the runtime executing the tests
// (Deno with only --allow-read --allow-env: the tool needs no FFI), against real logs built with
// the library. Also checks in-process that the verify walk classifies damage as recovery does.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { AppendLog, ConsensusLog, CorruptionError, LogManager, SnapshotStore } from "../mod.ts";
import { inspectLog, statusOf } from "../src/inspect.ts";
import { VERSION } from "../bin/hybridlog.ts";
import {
  crashImage,
  entryBytes,
  fingerprint,
  flipByte,
  runtimeName,
  seededRandom,
  tempDir,
} from "./_helpers.ts";

const CLI = join(import.meta.dirname!, "..", "bin", "hybridlog.ts");
const SMALL = { segmentSizeBytes: 64 * 1024, bufferSizeBytes: 8 * 1024 };
const SEGMENT_0 = "segment-000000000000.hlog";
const text = (s: string) => new TextEncoder().encode(s);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the tool in this runtime with its stdout and stderr piped (never a terminal). */
function cli(...args: string[]): Run {
  const runtime = runtimeName === "bun" ? [CLI] : ["run", "--allow-read", "--allow-env", CLI];
  const result = spawnSync(process.execPath, [...runtime, ...args], { encoding: "utf8" });
  if (result.error) throw result.error;
  return { code: result.status ?? -1, stdout: result.stdout, stderr: result.stderr };
}

/** An AppendLog of `count` entries in commit groups of 50 (two segments for 600). */
async function appendLog(dir: string, count: number, cookie?: Uint8Array) {
  const addresses: number[] = [];
  await using log = await AppendLog.open({ dir, ...SMALL });
  for (let i = 0; i < count; i++) {
    addresses.push(log.enqueue(entryBytes(i)));
    if (i % 50 === 49) await log.commit();
  }
  await log.commit({ cookie });
  return {
    addresses,
    commitNumber: log.commitNumber,
    beginAddress: log.beginAddress,
    committedUntilAddress: log.committedUntilAddress,
  };
}

describe("hybridlog CLI", () => {
  test("inspect reports the commit number, addresses, segments and cookie, and writes nothing", async () => {
    using dir = tempDir();
    const log = await appendLog(dir.path, 600, text("\xca\xfe-cookie"));
    const before = fingerprint(dir.path);
    const run = cli("inspect", dir.path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /kind\s+AppendLog\n/);
    assert.match(run.stdout, new RegExp(`commit number\\s+${log.commitNumber}\\n`));
    assert.match(run.stdout, new RegExp(`begin address\\s+${log.beginAddress}\\n`));
    assert.match(run.stdout, new RegExp(`committed until\\s+${log.committedUntilAddress}\\n`));
    const cookieHex = Buffer.from(text("\xca\xfe-cookie")).toString("hex");
    assert.match(run.stdout, new RegExp(`cookie\\s+0x${cookieHex} \\(`));
    assert.match(run.stdout, /segment-000000000000\.hlog {2}index 0 .*header ok/);
    assert.match(run.stdout, /segment-000000000001\.hlog {2}index 1 .*header ok/);
    assert.match(run.stdout, /entries\s+600 committed/);
    assert.match(run.stdout, /status\s+clean\n/);
    assert.equal(fingerprint(dir.path), before, "inspect changed nothing on disk");
  });

  test("verify exits 0 on a clean log and, piped, prints one line without escape codes", async () => {
    using dir = tempDir();
    await appendLog(dir.path, 600);
    const run = cli("verify", dir.path);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /: clean: commit \d+, 600 entries/);
    assert.equal(run.stdout.trim().split("\n").length, 1);
    assert.equal(run.stderr, "");
    const output = run.stdout + run.stderr;
    assert.ok(
      !output.includes("\x1b") && !output.includes("\r"),
      "no escape codes or carriage returns",
    );
  });

  test("verify exits 1 for garbage past the committed tail, naming file and address", async () => {
    using dir = tempDir();
    const log = await appendLog(dir.path, 600);
    const last = join(dir.path, "segment-000000000001.hlog");
    const tailOffset = log.committedUntilAddress - SMALL.segmentSizeBytes;
    assert.ok(tailOffset > 0 && tailOffset < SMALL.segmentSizeBytes, "tail in the last segment");
    const fd = fs.openSync(last, "r+");
    fs.writeSync(
      fd,
      Uint8Array.from({ length: 100 }, (_, i) => (i * 37 + 11) & 0xff),
      0,
      100,
      tailOffset,
    );
    fs.closeSync(fd);
    const run = cli("verify", dir.path);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(
      run.stdout,
      new RegExp(`torn tail at address ${log.committedUntilAddress} in ${last}`),
    );
    // Recovery agrees: it cuts the tail off and keeps every commit.
    await using reopened = await AppendLog.open({ dir: dir.path, ...SMALL });
    assert.equal(reopened.recoveredTruncatedTail, true);
    assert.equal(reopened.committedUntilAddress, log.committedUntilAddress);
  });

  test("verify exits 2 for damage a later durable commit proves was acknowledged", async () => {
    using dir = tempDir();
    const image = join(dir.path, "image");
    const groups = await crashImage(join(dir.path, "log"), image, 4, SMALL);
    const damaged = groups[0][3];
    flipByte(join(image, SEGMENT_0), damaged + 20);
    const run = cli("verify", image);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(
      run.stdout,
      new RegExp(`corrupt at address ${damaged} in ${join(image, SEGMENT_0)}`),
    );
    assert.match(run.stdout, /durable commit \d+ was written after it/);
    await assert.rejects(AppendLog.open({ dir: image, ...SMALL }), CorruptionError);
  });

  test("verify exits 2 for damage before the checkpoint's commit point", async () => {
    using dir = tempDir();
    const log = await appendLog(dir.path, 100);
    flipByte(join(dir.path, SEGMENT_0), log.addresses[10] + 16 + 3);
    const run = cli("verify", dir.path);
    assert.equal(run.code, 2, run.stdout + run.stderr);
    assert.match(
      run.stdout,
      new RegExp(`corrupt at address ${log.addresses[10]} in .*${SEGMENT_0}`),
    );
    assert.match(run.stdout, /before the checkpoint's commit point/);
  });

  test("dump --format json yields exactly the entries written; --from, --to and hex select and encode", async () => {
    using dir = tempDir();
    const log = await appendLog(dir.path, 600);
    const run = cli("dump", dir.path);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(lines.length, 600);
    lines.forEach((entry, i) => {
      assert.equal(entry.address, log.addresses[i]);
      assert.equal(entry.length, entryBytes(i).length);
      assert.deepEqual(new Uint8Array(Buffer.from(entry.value, "base64")), entryBytes(i));
    });
    const part = cli(
      "dump",
      dir.path,
      "--from",
      String(log.addresses[100]),
      "--to",
      String(log.addresses[400]),
      "--format",
      "hex",
    );
    assert.equal(part.code, 0, part.stderr);
    const partLines = part.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(partLines.length, 300);
    partLines.forEach((entry, k) => {
      assert.equal(entry.address, log.addresses[100 + k]);
      assert.deepEqual(new Uint8Array(Buffer.from(entry.value, "hex")), entryBytes(100 + k));
    });
  });

  test("a ConsensusLog with durable accepts: slot range, journal, index checkpoint, hard state and dump", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({
        dir: dir.path,
        durableAccepts: true,
        ...SMALL,
        mutableSizeBytes: 1 << 20,
      });
      await log.promise({ round: 5, node: 2 });
      await log.setHardState({ term: 3, vote: 2 });
      for (let slot = 1; slot <= 10; slot++) {
        await log.accept(slot, { round: 5, node: 7 }, entryBytes(slot));
      }
      for (let slot = 1; slot <= 8; slot++) await log.commit(slot);
    }
    const run = cli("inspect", dir.path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /kind\s+ConsensusLog\n/);
    assert.match(run.stdout, /slots\s+1\.\.8 \(8 committed records\)/);
    assert.match(run.stdout, /accepted journal\s+10 records \(slots 1\.\.10\)/);
    assert.match(
      run.stdout,
      /index checkpoint\s+covers addresses below \d+: 8 committed, 2 accepted/,
    );
    assert.match(run.stdout, /hard state\s+promised \(5, 2\), term 3, vote 2/);
    assert.match(run.stdout, /status\s+clean/);
    const dump = cli("dump", dir.path);
    assert.equal(dump.code, 0, dump.stderr);
    const entries = dump.stdout.trim().split("\n").map((l) => JSON.parse(l));
    const committed = entries.filter((e) => e.type === "committed");
    assert.equal(entries.filter((e) => e.type === "accepted").length, 10);
    assert.deepEqual(committed.map((e) => e.slot), [1, 2, 3, 4, 5, 6, 7, 8]);
    for (const e of committed) {
      assert.deepEqual(e.ballot, { round: 5, node: 7 });
      assert.deepEqual(new Uint8Array(Buffer.from(e.value, "base64")), entryBytes(e.slot));
    }
  });

  test("a truncated ConsensusLog: live slot range, and dump leaves truncated slots out", async () => {
    using dir = tempDir();
    {
      await using log = await ConsensusLog.open({
        dir: dir.path,
        ...SMALL,
        mutableSizeBytes: 1 << 20,
      });
      for (let slot = 1; slot <= 300; slot++) {
        log.accept(slot, { round: 1, node: 1 }, entryBytes(slot));
      }
      await log.commitMany(Array.from({ length: 300 }, (_, i) => i + 1));
      await log.truncatePrefix(200);
    }
    const run = cli("inspect", dir.path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /slots\s+200\.\.300 \(101 committed records\)/);
    assert.match(run.stdout, /truncated below slot 200/);
    const slots = cli("dump", dir.path).stdout.trim().split("\n").map((l) => JSON.parse(l).slot);
    assert.deepEqual(slots, Array.from({ length: 101 }, (_, i) => 200 + i));
  });

  test("inspect and verify work on a log another process has open", async () => {
    using dir = tempDir();
    await using log = await ConsensusLog.open({
      dir: dir.path,
      ...SMALL,
      mutableSizeBytes: 1 << 20,
    });
    for (let slot = 3; slot <= 7; slot++) log.accept(slot, { round: 1, node: 1 }, entryBytes(slot));
    await log.commitMany([3, 4, 5, 6, 7]);
    const run = cli("inspect", dir.path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /slots\s+3\.\.7 \(5 committed records\)/);
    assert.equal(cli("verify", dir.path).code, 0);
    log.accept(8, { round: 1, node: 1 }, entryBytes(8));
    await log.commit(8);
    assert.match(cli("inspect", dir.path).stdout, /slots\s+3\.\.8/);
  });

  test("a LogManager directory: every log by name, verify of each, --log picks one", async () => {
    using dir = tempDir();
    const manager = new LogManager({
      dir: dir.path,
      segmentSizeBytes: 64 * 1024,
      mutableSizeBytes: 1 << 20,
    });
    for (const [k, name] of ["table:users", "table:orders"].entries()) {
      await using lease = await manager.acquire(name);
      lease.log.accept(k + 1, { round: 1, node: 1 }, text(name));
      await lease.log.commit(k + 1);
    }
    await manager.closeAll({ timeoutMs: 5000 });
    const run = cli("inspect", dir.path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /LogManager directory, 2 logs/);
    assert.match(run.stdout, /log-[0-9a-f]{32} "table:users"/);
    assert.match(run.stdout, /log-[0-9a-f]{32} "table:orders"/);
    const verify = cli("verify", dir.path);
    assert.equal(verify.code, 0, verify.stdout);
    assert.equal(verify.stdout.trim().split("\n").length, 2);
    const one = cli("dump", dir.path, "--log", "table:orders");
    assert.equal(one.code, 0, one.stderr);
    const [entry] = one.stdout.trim().split("\n").map((l) => JSON.parse(l));
    assert.equal(entry.slot, 2);
    assert.equal(Buffer.from(entry.value, "base64").toString(), "table:orders");
    const ambiguous = cli("dump", dir.path);
    assert.equal(ambiguous.code, 64);
    assert.match(ambiguous.stderr, /choose a log with --log NAME/);
  });

  test("a SnapshotStore directory: snapshots with validity; a damaged one fails verify", async () => {
    using dir = tempDir();
    const snapshots = await SnapshotStore.open({ dir: dir.path });
    await snapshots.create(100, text("state at 100"));
    const newest = await snapshots.create(200, text("state at 200"));
    await snapshots.close();
    const clean = cli("verify", dir.path);
    assert.equal(clean.code, 0, clean.stdout);
    flipByte(newest.path, 64 + 3);
    const run = cli("inspect", dir.path);
    assert.equal(run.code, 0);
    assert.match(
      run.stdout,
      /snapshot-0000000000000200\.snap {2}slot 200 {2}INVALID: data checksum mismatch/,
    );
    assert.match(run.stdout, /snapshot-0000000000000100\.snap {2}slot 100 {2}12 bytes .* valid/);
    const verify = cli("verify", dir.path);
    assert.equal(verify.code, 2);
    assert.match(verify.stdout, /snapshot-0000000000000200\.snap: data checksum mismatch/);
  });

  test("bad flags exit 64 and bad paths exit 66, with a clear message", () => {
    using dir = tempDir();
    const badFlag = cli("verify", dir.path, "--frobnicate");
    assert.equal(badFlag.code, 64);
    assert.match(badFlag.stderr, /^hybridlog: unknown option --frobnicate/);
    const misplaced = cli("inspect", dir.path, "--from", "64");
    assert.equal(misplaced.code, 64);
    assert.match(misplaced.stderr, /--from does not apply to inspect/);
    const format = cli("dump", dir.path, "--format", "xml");
    assert.equal(format.code, 64);
    assert.match(format.stderr, /--format must be json or hex, got "xml"/);
    assert.equal(cli("frobnicate", dir.path).code, 64);
    assert.equal(cli("inspect").code, 64);
    const missing = join(dir.path, "nope");
    const run = cli("inspect", missing);
    assert.equal(run.code, 66);
    assert.equal(run.stderr, `hybridlog: cannot inspect ${missing}: no such directory\n`);
    const empty = cli("verify", dir.path);
    assert.equal(empty.code, 66);
    assert.match(empty.stderr, /cannot verify .*: not a hybridlog directory/);
    fs.writeFileSync(join(dir.path, "file"), "x");
    assert.match(cli("stats", join(dir.path, "file")).stderr, /not a directory/);
  });

  test("--help and --version", () => {
    const help = cli("--help");
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: hybridlog <command> DIR/);
    const version = cli("--version");
    assert.equal(version.code, 0);
    assert.equal(version.stdout, `hybridlog ${VERSION}\n`);
    const pkg = JSON.parse(
      fs.readFileSync(join(import.meta.dirname!, "..", "package.json"), "utf8"),
    );
    assert.equal(VERSION, pkg.version, "bin/hybridlog.ts VERSION matches package.json");
  });

  test("stats counts entries, commits, bytes and segments", async () => {
    using dir = tempDir();
    const log = await appendLog(dir.path, 600);
    const run = cli("stats", dir.path);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /entries\s+600 committed, 0 uncommitted/);
    assert.match(run.stdout, new RegExp(`commit number ${log.commitNumber}\\)`));
    assert.match(run.stdout, /segments\s+2 × 64\.0 KiB/);
    const bytes = log.committedUntilAddress - log.beginAddress;
    assert.match(run.stdout, new RegExp(`committed bytes\\s+${bytes} `));
  });
});

describe("inspect (in process)", () => {
  test("the verify walk classifies random single-byte damage of a crash image as recovery does", async () => {
    for (let seed = 1; seed <= 25; seed++) {
      using dir = tempDir();
      const image = join(dir.path, "image");
      const groups = await crashImage(join(dir.path, "log"), image, 4, SMALL);
      const random = seededRandom(seed);
      const last = groups.at(-1)!.at(-1)!;
      const offset = 64 + Math.floor(random() * (last + 400 - 64));
      flipByte(join(image, SEGMENT_0), offset);
      const status = statusOf(inspectLog(image));
      let recovered: "clean" | "torn" | "corrupt";
      try {
        await using log = await AppendLog.open({ dir: image, ...SMALL });
        recovered = log.recoveredTruncatedTail ? "torn" : "clean";
      } catch (error) {
        assert.ok(error instanceof CorruptionError, `seed ${seed}: ${error}`);
        recovered = "corrupt";
      }
      assert.equal(status, recovered, `seed ${seed}: byte ${offset}`);
    }
  });
});
