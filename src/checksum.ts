/**
 * CRC-32 (zlib polynomial) through `node:zlib`, hardware-accelerated in both runtimes. A seed lets
 * every checksum also cover the log's identity, and chains: `checksum(b, checksum(a, s))` equals
 * `checksum(a ‖ b, s)`. For the per-record checksum of the append path, where a call's fixed cost
 * dominates 100 B, the header's words can be summed in JS. The native checksum of ranges that
 * beats `node:zlib` where the runtime has one (`Native.rangeChecksum`) is not reached from here:
 * this file is part of the `hybridlog` CLI, which reads logs under Deno without `--allow-ffi`.
 *
 * @module
 */
import { crc32 } from "node:zlib";

/** The top bit of a 32-bit CRC; in the reflected representation, the polynomial 1. */
const TOP_BIT = 0x8000_0000;

/** CRC-32 of `bytes`, continuing from `seed` (a previous CRC or a log identity). */
export function checksum(bytes: Uint8Array, seed: number): number {
  if (seed < TOP_BIT) return crc32(bytes, seed) >>> 0;
  // Bun's crc32 takes a seed of 2^31 or more at twice the cost of a smaller one (it is no longer
  // a small integer there): 80 ns against 35 for 100 B. The CRC register is linear, so sum from
  // the seed without its top bit and add what that bit becomes after `bytes.length` bytes.
  return (crc32(bytes, seed - TOP_BIT) ^ topBitAfter(bytes.length)) >>> 0;
}

/** The reflected zlib polynomial. */
const POLYNOMIAL = 0xedb88320;

/** `a · b` modulo the polynomial, both reflected (zlib's `multmodp`). */
function multiplyModulo(a: number, b: number): number {
  let product = 0;
  for (let m = TOP_BIT; m !== 0; m >>>= 1) {
    if ((a & m) !== 0) product ^= b;
    b = b & 1 ? (b >>> 1) ^ POLYNOMIAL : b >>> 1;
  }
  return product >>> 0;
}

/** `x^(2^k)` modulo the polynomial, for k = 0 .. 31 (reflected). */
const X_POWERS = new Uint32Array(32);
X_POWERS[0] = TOP_BIT >>> 1; // x
for (let k = 1; k < 32; k++) X_POWERS[k] = multiplyModulo(X_POWERS[k - 1], X_POWERS[k - 1]);

/** Slots of the cache of {@linkcode topBitAfter}, indexed by length (a power of two). */
const TOP_BIT_CACHE_SLOTS = 256;
const topBitLengths = new Float64Array(TOP_BIT_CACHE_SLOTS).fill(-1);
const topBitValues = new Uint32Array(TOP_BIT_CACHE_SLOTS);

/**
 * The register's top bit after `lengthBytes` bytes of zeros, i.e. `x^(8 · lengthBytes)` modulo
 * the polynomial (zlib's `crc32_combine_gen`): what it adds to a CRC run from a seed without it.
 * Cached per length, so a run of same-sized entries computes it once.
 */
function topBitAfter(lengthBytes: number): number {
  const slot = lengthBytes & (TOP_BIT_CACHE_SLOTS - 1);
  if (topBitLengths[slot] === lengthBytes) return topBitValues[slot];
  let power = TOP_BIT; // x^0
  let k = 3; // a byte is x^8 = x^(2^3)
  for (let n = lengthBytes; n > 0; n = Math.floor(n / 2), k++) {
    if (n % 2 === 1) power = multiplyModulo(X_POWERS[k & 31], power);
  }
  topBitLengths[slot] = lengthBytes;
  topBitValues[slot] = power;
  return power;
}

/**
 * Slicing-by-4 tables, one after the other: entry `256 * k + n` is the CRC state of byte `n`
 * followed by `k` zero bytes.
 */
const TABLES = new Int32Array(4 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let bit = 0; bit < 8; bit++) c = c & 1 ? POLYNOMIAL ^ (c >>> 1) : c >>> 1;
  TABLES[n] = c;
}
for (let k = 1; k < 4; k++) {
  for (let n = 0; n < 256; n++) {
    const previous = TABLES[256 * (k - 1) + n];
    TABLES[256 * k + n] = (previous >>> 8) ^ TABLES[previous & 0xff];
  }
}

/**
 * CRC-32 of the four little-endian bytes of `word`, continuing from `seed`: the same value as
 * {@linkcode checksum} of those bytes, computed in JS. A record header's three words cost a few
 * nanoseconds this way, against tens for a call into `node:zlib` plus the view it needs.
 */
export function checksumWord(word: number, seed: number): number {
  const c = ~seed ^ word;
  return ~(TABLES[768 + (c & 0xff)] ^ TABLES[512 + ((c >>> 8) & 0xff)] ^
    TABLES[256 + ((c >>> 16) & 0xff)] ^ TABLES[c >>> 24]) >>> 0;
}
