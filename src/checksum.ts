/**
 * CRC-32 (zlib polynomial) through `node:zlib`, hardware-accelerated in both runtimes.
 * A seed lets every checksum also cover the log's identity.
 *
 * @module
 */
import { crc32 } from "node:zlib";

/** CRC-32 of `bytes`, continuing from `seed` (a previous CRC or a log identity). */
export function checksum(bytes: Uint8Array, seed: number): number {
  return crc32(bytes, seed) >>> 0;
}
