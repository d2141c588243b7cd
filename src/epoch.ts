/**
 * Epoch protection (FASTER's LightEpoch, reduced to what the log needs): every thread that reads
 * or writes the shared region and index publishes the global epoch it entered at, and clears it
 * when done. Memory that no index word points to any more (a freed region chunk, an unlinked
 * index leaf) is retired at a new epoch and reused only once no thread is still inside an older
 * one, so a thread never reads memory that was reused under it.
 *
 * Layout over an `Int32Array` of {@linkcode EPOCH_WORDS} words:
 *
 * | word               | meaning                                           |
 * |-------------------:|---------------------------------------------------|
 * |                  0 | the global epoch (starts at 1)                    |
 * |           16 + i   | thread slot i in use (0 free, 1 taken)            |
 * | 16 + T + 16 i      | epoch thread i entered at, 0 while outside        |
 *
 * Each thread's entered epoch has a 64-byte line of its own: every operation writes it twice,
 * and threads sharing a line would slow each other down.
 *
 * @module
 */
import { InvalidArgumentError } from "./errors.ts";

/** Threads (the owner and its Workers) that can be attached to one log at once. */
export const EPOCH_THREADS_MAX = 128;
const LINE_WORDS = 16;
const GLOBAL = 0;
const USED = LINE_WORDS;
const ENTERED = LINE_WORDS + EPOCH_THREADS_MAX;
/** Int32 words an epoch table occupies. */
export const EPOCH_WORDS = ENTERED + LINE_WORDS * EPOCH_THREADS_MAX;

/** One thread's handle on a shared epoch table. */
export class EpochTable {
  #words: Int32Array;
  #me = -1;
  #depth = 0;
  /**
   * No other thread can see the table (the owner before it shares the log): sections are only
   * counted, not published. Each publication is a sequentially consistent store (an `xchg` on
   * x86), two per accept and per read.
   */
  #solo = false;
  /** The epoch this thread's open section entered at, 0 outside (kept in solo mode). */
  #entered = 0;

  /** @param words The table; `create` initialises it (the owner, once). */
  constructor(words: Int32Array, create: boolean) {
    if (words.length < EPOCH_WORDS) throw new Error("assertion failed: epoch table too small");
    this.#words = words;
    if (create) Atomics.store(words, GLOBAL, 1);
  }

  /** Takes a thread slot; throws `InvalidArgumentError` when all are taken. */
  register(): void {
    if (this.#me >= 0) return;
    for (let i = 0; i < EPOCH_THREADS_MAX; i++) {
      if (Atomics.compareExchange(this.#words, USED + i, 0, 1) === 0) {
        this.#me = i;
        return;
      }
    }
    throw new InvalidArgumentError(
      `Cannot attach: ${EPOCH_THREADS_MAX} threads are attached to this log already`,
    );
  }

  /** Gives the thread slot back. Idempotent. */
  release(): void {
    if (this.#me < 0) return;
    Atomics.store(this.#words, ENTERED + LINE_WORDS * this.#me, 0);
    Atomics.store(this.#words, USED + this.#me, 0);
    this.#me = -1;
    this.#depth = 0;
    this.#entered = 0;
  }

  /**
   * Stops publishing sections while no other thread can see the table: until
   * {@linkcode EpochTable.share}, only this thread can retire or reuse memory, and it never
   * waits for itself (`excludeSelf`).
   */
  beginSolo(): void {
    if (this.#depth === 0) this.#solo = true;
  }

  /** Whether no other thread can see the table yet (see {@linkcode EpochTable.beginSolo}). */
  get solo(): boolean {
    return this.#solo;
  }

  /**
   * Publishes sections from now on: call before another thread can see the table (a section open
   * now is published with the epoch it entered at).
   */
  share(): void {
    if (!this.#solo) return;
    this.#solo = false;
    if (this.#depth > 0) Atomics.store(this.#words, ENTERED + LINE_WORDS * this.#me, this.#entered);
  }

  /** Enters a protected section (nestable). */
  enter(): void {
    if (this.#depth++ === 0) {
      // 0 means "outside"; the epoch after a wrap-around to 0 is recorded as 1 (still later).
      // Alone, a plain load (an atomic one costs 6–11 ns here, a plain one about 1).
      const epoch = this.#solo ? this.#words[GLOBAL] : Atomics.load(this.#words, GLOBAL);
      this.#entered = epoch === 0 ? 1 : epoch;
      if (!this.#solo) Atomics.store(this.#words, ENTERED + LINE_WORDS * this.#me, this.#entered);
    }
  }

  /** Leaves a protected section. */
  exit(): void {
    if (--this.#depth === 0) {
      this.#entered = 0;
      if (!this.#solo) Atomics.store(this.#words, ENTERED + LINE_WORDS * this.#me, 0);
    }
  }

  /** Starts a new epoch and returns it: memory unlinked before the call retires at it. */
  bump(): number {
    return Atomics.add(this.#words, GLOBAL, 1) + 1;
  }

  /**
   * Whether memory retired at `epoch` can be reused: no thread (but this one, if `excludeSelf`)
   * is still inside a section it entered before that epoch.
   */
  isSafe(epoch: number, excludeSelf: boolean): boolean {
    const words = this.#words;
    for (let i = 0; i < EPOCH_THREADS_MAX; i++) {
      if (excludeSelf && i === this.#me) continue;
      // This thread's own epoch from its field: in solo mode it is not published.
      const entered = i === this.#me
        ? this.#entered
        : Atomics.load(words, ENTERED + LINE_WORDS * i);
      // Compared modulo 2^32, so the counter may wrap around.
      if (entered !== 0 && ((entered - epoch) | 0) < 0) return false;
    }
    return true;
  }

  /** Resolves once every other thread has left the sections it was in when called. */
  async drain(): Promise<void> {
    const epoch = this.bump();
    while (!this.isSafe(epoch, true)) await new Promise((wake) => setTimeout(wake, 0));
  }
}
