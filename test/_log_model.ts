// What a writer of an AppendLog knows: every entry it enqueued (in log order, with its address)
// and how many of them a resolved commit acknowledged. After a crash or power loss, the one
// durability checker compares a reopened log against that knowledge.
import type { AppendLog } from "../mod.ts";
import { entryBytes, sameBytes } from "./_helpers.ts";

/** An entry the writer enqueued. */
export interface ModelEntry {
  readonly address: number;
  readonly bytes: Uint8Array;
}

/** The writer's view of a log. */
export class LogModel {
  /** Every entry enqueued, in log order (also those never committed). */
  entries: ModelEntry[] = [];
  /** `entries[0, acked)` were acknowledged by a resolved commit. */
  acked = 0;
  /** The highest address passed to `truncateUntil` (entries below it may be gone). */
  truncatedUntil = 0;
  /** Entry contents are `entryBytes(id)` with ids never reused, so stale bytes never match. */
  #nextId: number;
  #sizeOf: (id: number) => number;

  constructor(options: { firstId?: number; sizeOf?: (id: number) => number } = {}) {
    this.#nextId = options.firstId ?? 0;
    this.#sizeOf = options.sizeOf ?? ((id) => 10 + (id * 37) % 300);
  }

  /** Bytes of a new entry no earlier entry of this model had. */
  nextBytes(): Uint8Array {
    const id = this.#nextId++;
    return entryBytes(id, this.#sizeOf(id));
  }

  /** Records entries the log accepted (their addresses as returned by enqueue). */
  enqueued(addresses: readonly number[], values: readonly Uint8Array[]): void {
    addresses.forEach((address, i) => this.entries.push({ address, bytes: values[i] }));
  }

  /** A copy for a moment in time (e.g. when the power is cut). */
  copy(): LogModel {
    const copy = new LogModel({ firstId: this.#nextId, sizeOf: this.#sizeOf });
    copy.entries = this.entries.slice();
    copy.acked = this.acked;
    copy.truncatedUntil = this.truncatedUntil;
    return copy;
  }

  /** After recovery kept `count` entries: they are the log now, and all of it is committed. */
  recovered(count: number): void {
    this.entries.length = count;
    this.acked = count;
  }
}

/** Result of {@linkcode checkRecovered}. */
export interface Verdict {
  /** What is wrong, one sentence each; empty when the log kept its promise. */
  violations: string[];
  /** How many model entries (from the first) the reopened log holds, truncated ones included. */
  recoveredCount: number;
}

/**
 * The durability invariant, checked on a freshly reopened log: the log holds exactly a prefix of
 * what was enqueued (minus a truncated start), that prefix contains every acknowledged entry, and
 * every acknowledged entry reads back byte for byte at its address.
 */
export function checkRecovered(log: AppendLog, model: LogModel): Verdict {
  const violations: string[] = [];
  const begin = log.beginAddress;
  if (model.entries.length && begin > Math.max(model.truncatedUntil, model.entries[0].address)) {
    violations.push(`beginAddress ${begin} is past every truncation (${model.truncatedUntil})`);
  }
  let first = model.entries.findIndex((entry) => entry.address >= begin);
  if (first < 0) first = model.entries.length;
  let count = first;
  try {
    for (const entry of log.scan()) {
      const expected = model.entries[count];
      if (expected === undefined) {
        violations.push(
          `scan yields an entry at ${entry.address} past the ${model.entries.length} enqueued`,
        );
        break;
      }
      if (entry.address !== expected.address || !sameBytes(entry.value, expected.bytes)) {
        violations.push(
          `scan entry ${count} at ${entry.address} (${entry.value.length} bytes) is not the ` +
            `entry enqueued at ${expected.address} (${expected.bytes.length} bytes)`,
        );
        break;
      }
      count++;
    }
  } catch (error) {
    violations.push(`scan failed after ${count} entries: ${error}`);
  }
  if (count < model.acked) {
    violations.push(`acknowledged entries ${count}..${model.acked - 1} are missing`);
  }
  for (let i = first; i < model.acked; i++) {
    const { address, bytes } = model.entries[i];
    let value: Uint8Array | undefined;
    try {
      value = log.read(address);
    } catch (error) {
      violations.push(`read of acknowledged entry ${i} at ${address} failed: ${error}`);
      break;
    }
    if (value === undefined || !sameBytes(value, bytes)) {
      violations.push(`acknowledged entry ${i} at ${address} does not read back byte for byte`);
      break;
    }
  }
  return { violations, recoveredCount: count };
}
