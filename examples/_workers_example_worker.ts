/**
 * The Worker of examples/workers.ts: attaches to the ConsensusLog the main thread shares, accepts
 * and commits its own slots, reads one back, and reports them.
 */
import { ConsensusLog, type ConsensusLogHandle } from "../mod.ts";

/** What the main thread sends once this Worker said "ready". */
export interface Job {
  handle: ConsensusLogHandle;
  worker: number;
  slots: number[];
}

declare const self: Worker; // this module runs as a Worker

self.onmessage = async (event: MessageEvent<Job>) => {
  const { handle, worker, slots } = event.data;
  using log = ConsensusLog.attach(handle); // detached when this function returns
  const ballot = { round: 1, node: worker };
  for (const slot of slots) log.accept(slot, ballot, new TextEncoder().encode(`${worker}:${slot}`));
  await log.commitMany(slots); // carried out by the owner's group commit; durable when resolved
  const last = log.readCommitted(slots[slots.length - 1])!;
  self.postMessage({ committed: slots.length, last: new TextDecoder().decode(last.value) });
};
self.postMessage("ready"); // Bun drops messages that arrive before onmessage is set
