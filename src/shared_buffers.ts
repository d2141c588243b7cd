/**
 * The large `SharedArrayBuffer`s of closed consensus logs (slot index and region data), kept for
 * the next log this thread opens instead of left to the collector.
 *
 * Why: Bun collects often while 64 MiB buffers come and go. Opening and closing a ConsensusLog of
 * 1k entries in a loop took 15–18 ms per cycle there (1.0–1.7 ms in Deno); with the buffers
 * reused, 0.8 ms. Allocating one is cheap (0.04 ms); the cost is the collections that many
 * dropped ones bring on.
 *
 * Only buffers no other thread ever saw are kept: a log that called `share()` hands its buffers
 * to Workers, which may still hold them after it closes. A kept index buffer is zeroed where it
 * was used (a new index expects zeros there); region data need not be (an entry is always
 * written whole before a slot word names it, and chunks are reused with old bytes in them
 * anyway). At most {@linkcode KEPT_PER_SIZE} buffers of each kind and size are kept, so a thread
 * that closed its logs keeps at most that many buffers' touched pages resident.
 *
 * @module
 */

/** Buffers kept per kind and size. */
export const KEPT_PER_SIZE = 2;

/** What a kept buffer was. */
export type SharedBufferKind = "index" | "region";

const kept = new Map<string, SharedArrayBuffer[]>();

const keyOf = (kind: SharedBufferKind, sizeBytes: number) => `${kind}:${sizeBytes}`;

/** A kept buffer of `kind` and `sizeBytes` (an index one zeroed), or `undefined`. */
export function takeSharedBuffer(
  kind: SharedBufferKind,
  sizeBytes: number,
): SharedArrayBuffer | undefined {
  return kept.get(keyOf(kind, sizeBytes))?.pop();
}

/**
 * Keeps `buffer` for a later {@linkcode takeSharedBuffer}, zeroing its first `dirtyBytes`; the
 * caller must never use it again. Returns false (nothing kept) when enough of its size are kept.
 */
export function keepSharedBuffer(
  kind: SharedBufferKind,
  buffer: SharedArrayBuffer,
  dirtyBytes: number,
): boolean {
  const key = keyOf(kind, buffer.byteLength);
  const list = kept.get(key) ?? [];
  if (list.length >= KEPT_PER_SIZE) return false;
  if (dirtyBytes > 0) new Uint8Array(buffer, 0, Math.min(dirtyBytes, buffer.byteLength)).fill(0);
  list.push(buffer);
  kept.set(key, list);
  return true;
}

/** How many buffers of `kind` are kept now, of `sizeBytes` if given (tests). */
export function keptSharedBuffers(kind: SharedBufferKind, sizeBytes?: number): number {
  let count = 0;
  for (const [key, list] of kept) {
    if (sizeBytes === undefined ? key.startsWith(`${kind}:`) : key === keyOf(kind, sizeBytes)) {
      count += list.length;
    }
  }
  return count;
}
