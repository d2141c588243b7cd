import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { AppendLog, LockedError } from "../mod.ts";
import { runtimeCommand, tempDir } from "./_helpers.ts";

const HOLDER = join(import.meta.dirname!, "fixtures", "lock_holder.ts");

describe("one writer per directory across processes", () => {
  test("a log held by another process gives ERR_LOCKED until that process dies", async () => {
    using dir = tempDir();
    const [command, args] = runtimeCommand(HOLDER);
    const child = spawn(command, [...args, dir.path], { stdio: ["ignore", "pipe", "inherit"] });
    const exited = new Promise((resolve) => child.on("exit", resolve));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk) => String(chunk).includes("ready") && resolve());
      child.on("exit", (code) => reject(new Error(`holder exited ${code} before it was ready`)));
    });
    await assert.rejects(AppendLog.open({ dir: dir.path }), (error: unknown) => {
      assert.ok(error instanceof LockedError);
      assert.equal(error.code, "ERR_LOCKED");
      return true;
    });
    child.kill("SIGKILL");
    await exited;
    await using log = await AppendLog.open({ dir: dir.path }); // the kernel released the lock
    assert.deepEqual([...log.scan()].map((e) => new TextDecoder().decode(e.value)), ["held"]);
  });
});
