// The checksum helpers against node:zlib's crc32, which defines the values on disk: the JS
// header words and the top-bit split of large seeds; and what happens when libdeflate is missing
// (the native range checksum itself: ffi_conformance_test.ts).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { crc32 } from "node:zlib";
import { checksum, checksumWord } from "../src/checksum.ts";
import { runtimeName, seededRandom } from "./_helpers.ts";

/** Seeds on both sides of 2^31, where `checksum` takes a different path. */
const SEEDS = [0, 1, 0x1234_5678, 0x7fff_ffff, 0x8000_0000, 0x8000_0001, 0xdead_beef, 0xffff_ffff];

function randomBytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  return Uint8Array.from({ length }, () => random() * 256);
}

describe("checksum", () => {
  test("checksum() equals node:zlib crc32 for seeds of 2^31 and more too", () => {
    // 5 and 261 share a slot of the per-length cache; 70000 has many bits set.
    const lengths = [0, 1, 2, 3, 4, 5, 8, 12, 100, 112, 255, 256, 257, 261, 4096, 70_000];
    for (const length of lengths) {
      const bytes = randomBytes(length, length);
      for (const seed of SEEDS) {
        assert.equal(checksum(bytes, seed), crc32(bytes, seed) >>> 0, `${length} B, ${seed}`);
      }
    }
  });

  test("checksum() of alternating lengths with large seeds stays right (cache slots reused)", () => {
    const random = seededRandom(3);
    for (let i = 0; i < 2000; i++) {
      const length = Math.floor(random() * 600);
      const bytes = randomBytes(length, i);
      const seed = 0x8000_0000 + Math.floor(random() * 0x8000_0000);
      assert.equal(checksum(bytes, seed), crc32(bytes, seed) >>> 0, `${length} B, ${seed}`);
    }
  });

  test("checksumWord() continues a CRC over the word's four little-endian bytes", () => {
    const random = seededRandom(9);
    for (let i = 0; i < 500; i++) {
      const words = Uint32Array.from({ length: 3 }, () => Math.floor(random() * 2 ** 32));
      const seed = SEEDS[i % SEEDS.length];
      const chained = checksumWord(words[2], checksumWord(words[1], checksumWord(words[0], seed)));
      assert.equal(chained, crc32(new Uint8Array(words.buffer), seed) >>> 0);
    }
  });

  test("without libdeflate there is no native range checksum, and a reason instead of an error", async () => {
    const missing = "libhybridlog-no-such-library.so.0";
    // The backend of the running runtime (deno.ts by a computed URL, as ffi/mod.ts loads it).
    const result = runtimeName === "bun"
      ? (await import("../ffi/bun.ts")).loadLibdeflate(
        createRequire(import.meta.url)("bun:ffi"),
        missing,
      )
      : (await import(new URL("../ffi/deno.ts", import.meta.url).href) as {
        loadLibdeflate(path: string): { libdeflate?: unknown; reason?: string };
      }).loadLibdeflate(missing);
    assert.equal(result.libdeflate, undefined);
    assert.match(result.reason!, /Cannot load libhybridlog-no-such-library\.so\.0/);
  });
});
