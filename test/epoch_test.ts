// Epoch protection's solo mode: the owner of a log no other thread can see yet counts its
// sections without publishing them, and publishes from the moment it shares the table.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { EPOCH_WORDS, EpochTable } from "../src/epoch.ts";

/** The word holding the epoch the thread in slot `me` entered at (see epoch.ts's layout). */
function enteredWord(words: Int32Array, me: number): number {
  return words[16 + 128 + 16 * me];
}

function table(): { words: Int32Array; owner: EpochTable; other: EpochTable } {
  const words = new Int32Array(new SharedArrayBuffer(EPOCH_WORDS * 4));
  const owner = new EpochTable(words, true);
  owner.register();
  const other = new EpochTable(words, false);
  other.register();
  return { words, owner, other };
}

describe("EpochTable", () => {
  test("a solo table publishes no section, yet still keeps its own reuse waiting for it", () => {
    const { words, owner } = table();
    owner.beginSolo();
    assert.equal(owner.solo, true);
    owner.enter();
    assert.equal(enteredWord(words, 0), 0, "nothing published in solo mode");
    const retired = owner.bump();
    // Compaction asks with excludeSelf false: memory it empties must not be reused under it.
    assert.equal(owner.isSafe(retired, false), false, "its own open section counts");
    assert.equal(owner.isSafe(retired, true), true);
    owner.exit();
    assert.equal(owner.isSafe(retired, false), true, "once it left");
  });

  test("sharing publishes the open section with the epoch it entered at, and every later one", () => {
    const { words, owner, other } = table();
    owner.beginSolo();
    owner.enter();
    const entered = Atomics.load(words, 0);
    const retired = owner.bump();
    owner.share();
    assert.equal(owner.solo, false);
    assert.equal(enteredWord(words, 0), entered);
    assert.equal(other.isSafe(retired, true), false, "another thread waits for the owner");
    owner.exit();
    assert.equal(enteredWord(words, 0), 0);
    assert.equal(other.isSafe(retired, true), true);
    owner.enter();
    assert.equal(enteredWord(words, 0), Atomics.load(words, 0), "published after sharing");
    owner.exit();
  });

  test("a table is not solo unless asked, and cannot turn solo inside a section", () => {
    const { words, owner } = table();
    owner.enter();
    assert.equal(enteredWord(words, 0), Atomics.load(words, 0));
    owner.beginSolo();
    assert.equal(owner.solo, false);
    owner.exit();
    assert.equal(enteredWord(words, 0), 0);
  });
});
