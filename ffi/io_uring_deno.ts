// Placeholder until the io_uring backend lands: reports io_uring as unavailable.
import type { Uring } from "./types.ts";

/** Opens an io_uring through liburing.so.2 under Deno, or says why it cannot. */
export function openUring(_entries: number): { uring?: Uring; reason?: string } {
  return { reason: "io_uring backend not built yet" };
}
