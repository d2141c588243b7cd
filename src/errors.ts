/**
 * Typed errors. Every error hybridlog throws for an operating condition (bad input, closed log,
 * I/O failure, corruption) is a {@linkcode HybridLogError} with a stable `code`; anything else is a
 * bug (an assertion) and is never caught inside the library.
 *
 * @module
 */

/** The stable codes carried by {@linkcode HybridLogError}. */
export type ErrorCode =
  | "ERR_INVALID_ARGUMENT"
  | "ERR_CLOSED"
  | "ERR_IO"
  | "ERR_CORRUPT"
  | "ERR_LOCKED"
  | "ERR_POISONED"
  | "ERR_NOT_COMMITTED"
  | "ERR_REGION_FULL"
  | "ERR_BALLOT"
  | "ERR_COMMITTED"
  | "ERR_NOT_FOUND"
  | "ERR_LEASED";

/**
 * Base class of every error hybridlog throws on purpose; `code` is stable across versions. Catch
 * it for operating conditions; anything else thrown is a bug.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AppendLog, HybridLogError } from "@hybridlog/hybridlog";
 *
 * const log = await AppendLog.open({ dir: "./data/queue" });
 * await log.close();
 * try {
 *   log.enqueue(new TextEncoder().encode("too late"));
 * } catch (error) {
 *   if (!(error instanceof HybridLogError)) throw error; // a bug: never swallow it
 *   assert.equal(error.code, "ERR_CLOSED");
 *   console.log(error.message); // Cannot enqueue: the log is closed
 * }
 * ```
 */
export class HybridLogError extends Error {
  /** A stable machine-readable code, e.g. `ERR_CLOSED`. */
  readonly code: ErrorCode;
  /**
   * Creates an error with a stable `code`; the subclasses fill it in.
   *
   * @param code The stable code.
   * @param message Sentence case, no trailing period: what was attempted, then detail after a colon.
   * @param options Standard error options (`cause`).
   */
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A caller passed a value the API does not accept (`ERR_INVALID_ARGUMENT`); nothing was changed,
 * in memory or on disk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AppendLog, InvalidArgumentError } from "@hybridlog/hybridlog";
 *
 * await using log = await AppendLog.open({ dir: "./data/queue", entrySizeBytesMax: 1024 });
 * const tail = log.tailAddress;
 * assert.throws(() => log.enqueue(new Uint8Array(2048)), InvalidArgumentError);
 * assert.equal(log.tailAddress, tail); // nothing was appended
 * ```
 */
export class InvalidArgumentError extends HybridLogError {
  /**
   * Creates the error.
   *
   * @param message What was attempted and what was wrong with the argument.
   */
  constructor(message: string) {
    super("ERR_INVALID_ARGUMENT", message);
  }
}

/**
 * The log (or store) was closed, or completed, before or during the call (`ERR_CLOSED`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClosedError, ConsensusLog } from "@hybridlog/hybridlog";
 *
 * const log = await ConsensusLog.open({ dir: "./data/acceptor" });
 * await log.close();
 * assert.throws(() => log.read(1), ClosedError);
 * ```
 */
export class ClosedError extends HybridLogError {
  /**
   * Creates the error.
   *
   * @param message What was attempted.
   */
  constructor(message: string) {
    super("ERR_CLOSED", message);
  }
}

/**
 * A system call failed (`ERR_IO`); `errno` is the symbolic name (`EIO`, `ENOSPC`, …). A failed
 * write or sync also poisons the log (see {@linkcode PoisonedError}).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { mkdirSync, writeFileSync } from "node:fs";
 * import { AppendLog, IoError } from "@hybridlog/hybridlog";
 *
 * mkdirSync("./data", { recursive: true });
 * writeFileSync("./data/a-file", "");
 * await assert.rejects(AppendLog.open({ dir: "./data/a-file/log" }), (error) => {
 *   assert.ok(error instanceof IoError);
 *   console.log(error.syscall, error.errno); // mkdir ENOTDIR
 *   return true;
 * });
 * ```
 */
export class IoError extends HybridLogError {
  /** The errno name, e.g. `ENOSPC`. */
  readonly errno: string;
  /** The system call or operation that failed, e.g. `fdatasync`. */
  readonly syscall: string;
  /** The file involved, when there is one. */
  readonly path: string | undefined;
  /**
   * Creates the error; the message names the call, the file and the errno.
   *
   * @param syscall The failing call.
   * @param errno The errno name.
   * @param path The file involved, if any.
   * @param options Standard error options (`cause`).
   */
  constructor(syscall: string, errno: string, path?: string, options?: ErrorOptions) {
    super("ERR_IO", `Cannot ${syscall}${path ? ` ${path}` : ""}: ${errno}`, options);
    this.errno = errno;
    this.syscall = syscall;
    this.path = path;
  }
}

/**
 * Stored bytes failed validation where valid data must be, before the commit point (`ERR_CORRUPT`).
 * hybridlog never returns wrong bytes: the open, read or scan that meets the damage throws this,
 * naming the file and the address.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openSync, closeSync, writeSync } from "node:fs";
 * import { AppendLog, CorruptionError } from "@hybridlog/hybridlog";
 *
 * const log = await AppendLog.open({ dir: "./data/orders" });
 * const address = log.enqueue(new TextEncoder().encode("order 1"));
 * await log.close();
 *
 * // Flip the entry's first byte on disk (after the 64-byte segment and 16-byte record headers).
 * const fd = openSync("./data/orders/segment-000000000000.hlog", "r+");
 * writeSync(fd, new Uint8Array([0xff]), 0, 1, 64 + 16);
 * closeSync(fd);
 *
 * await using reopened = await AppendLog.open({ dir: "./data/orders" });
 * assert.throws(() => reopened.read(address), CorruptionError);
 * ```
 */
export class CorruptionError extends HybridLogError {
  /** The file holding the damaged bytes. */
  readonly path: string;
  /** The logical address (or file offset for metadata files) of the damage. */
  readonly address: number;
  /**
   * Creates the error.
   *
   * @param path The damaged file.
   * @param address The logical address of the damaged record.
   * @param detail What failed to validate.
   */
  constructor(path: string, address: number, detail: string) {
    super("ERR_CORRUPT", `Corrupt data in ${path} at address ${address}: ${detail}`);
    this.path = path;
    this.address = address;
  }
}

/**
 * Another log, in this or another process, holds the directory open for writing (`ERR_LOCKED`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AppendLog, LockedError } from "@hybridlog/hybridlog";
 *
 * await using log = await AppendLog.open({ dir: "./data/queue" });
 * await assert.rejects(AppendLog.open({ dir: "./data/queue" }), LockedError);
 * ```
 */
export class LockedError extends HybridLogError {
  /** The locked directory. */
  readonly dir: string;
  /**
   * Creates the error.
   *
   * @param dir The directory that is already open.
   */
  constructor(dir: string) {
    super("ERR_LOCKED", `Cannot open ${dir}: it is locked by another open log`);
    this.dir = dir;
  }
}

/**
 * A write or sync failed earlier, so the log no longer knows what reached the disk
 * (`ERR_POISONED`). fsync is never retried (the kernel may have dropped the dirty pages); reopen
 * the log to recover from what is durable.
 *
 * @example
 * ```ts
 * import { AppendLog, IoError, PoisonedError } from "@hybridlog/hybridlog";
 *
 * const dir = "./data/queue";
 * let log = await AppendLog.open({ dir });
 * log.enqueue(new TextEncoder().encode("order 1"));
 * try {
 *   await log.commit();
 * } catch (error) {
 *   if (!(error instanceof IoError || error instanceof PoisonedError)) throw error;
 *   // Nothing enqueued since the last successful commit is known to be durable: reopen, which
 *   // recovers exactly what is, and redo the rest.
 *   await log.close().catch(() => {});
 *   log = await AppendLog.open({ dir });
 * }
 * await log.close();
 * ```
 */
export class PoisonedError extends HybridLogError {
  /**
   * Creates the error.
   *
   * @param message What was attempted.
   * @param options `cause`: the failure that poisoned the log.
   */
  constructor(message: string, options?: ErrorOptions) {
    super("ERR_POISONED", message, options);
  }
}

/**
 * A ballot (or Raft term) lower than the one held or promised (`ERR_BALLOT`), or a Raft vote that
 * would change within its term.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { BallotError, ConsensusLog } from "@hybridlog/hybridlog";
 *
 * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
 * await log.promise({ round: 5, node: 2 });
 * const value = new TextEncoder().encode("x = 1");
 * assert.throws(() => log.accept(1, { round: 4, node: 9 }, value), BallotError);
 * ```
 */
export class BallotError extends HybridLogError {
  /**
   * Creates the error.
   *
   * @param message What was attempted and which ballot won.
   */
  constructor(message: string) {
    super("ERR_BALLOT", message);
  }
}

/**
 * The slot is committed and can never change (`ERR_COMMITTED`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { AlreadyCommittedError, ConsensusLog } from "@hybridlog/hybridlog";
 *
 * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
 * log.accept(1, { round: 1, node: 1 }, new TextEncoder().encode("x = 1"));
 * await log.commit(1);
 * const later = new TextEncoder().encode("x = 2");
 * assert.throws(() => log.accept(1, { round: 9, node: 1 }, later), AlreadyCommittedError);
 * ```
 */
export class AlreadyCommittedError extends HybridLogError {
  /** The committed slot. */
  readonly slot: number;
  /**
   * Creates the error.
   *
   * @param slot The slot.
   * @param what What was attempted.
   */
  constructor(slot: number, what: string) {
    super("ERR_COMMITTED", `Cannot ${what} slot ${slot}: it is committed`);
    this.slot = slot;
  }
}

/**
 * The slot holds no accepted or committed entry (`ERR_NOT_FOUND`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConsensusLog, SlotNotFoundError } from "@hybridlog/hybridlog";
 *
 * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
 * await assert.rejects(log.commit(9), SlotNotFoundError); // nothing was accepted for slot 9
 * ```
 */
export class SlotNotFoundError extends HybridLogError {
  /** The slot. */
  readonly slot: number;
  /**
   * Creates the error.
   *
   * @param slot The slot.
   * @param what What was attempted.
   */
  constructor(slot: number, what: string) {
    super("ERR_NOT_FOUND", `Cannot ${what} slot ${slot}: it holds no accepted entry`);
    this.slot = slot;
  }
}

/**
 * The slot is accepted but not (durably) committed (`ERR_NOT_COMMITTED`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConsensusLog, NotCommittedError } from "@hybridlog/hybridlog";
 *
 * await using log = await ConsensusLog.open({ dir: "./data/acceptor" });
 * log.accept(1, { round: 1, node: 1 }, new TextEncoder().encode("x = 1"));
 * assert.equal(log.read(1)?.committed, false);
 * assert.throws(() => log.readCommitted(1), NotCommittedError);
 * ```
 */
export class NotCommittedError extends HybridLogError {
  /** The slot. */
  readonly slot: number;
  /**
   * Creates the error.
   *
   * @param slot The slot.
   */
  constructor(slot: number) {
    super("ERR_NOT_COMMITTED", `Cannot read slot ${slot} as committed: it is only accepted`);
    this.slot = slot;
  }
}

/**
 * The mutable region has no room (`ERR_REGION_FULL`): backpressure, never silent loss. Commit or
 * wait, then retry; `tryAccept` returns `false` instead of throwing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ConsensusLog, RegionFullError } from "@hybridlog/hybridlog";
 *
 * const options = { dir: "./data/acceptor", mutableSizeBytes: 64 * 1024 };
 * await using log = await ConsensusLog.open(options);
 * const ballot = { round: 1, node: 1 };
 * const value = new Uint8Array(40 * 1024);
 * log.accept(1, ballot, value);
 * assert.throws(() => log.accept(2, ballot, value), RegionFullError);
 * assert.equal(log.tryAccept(2, ballot, value), false);
 * ```
 */
export class RegionFullError extends HybridLogError {
  /**
   * Creates the error.
   *
   * @param message What did not fit.
   */
  constructor(message: string) {
    super("ERR_REGION_FULL", message);
  }
}

/**
 * `LogManager.closeAll` timed out with leases still held (`ERR_LEASED`): names the logs that leak,
 * instead of hanging. The idle logs are closed; the leased ones stay open.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { LeaseLeakError, LogManager } from "@hybridlog/hybridlog";
 *
 * const manager = new LogManager({ dir: "./data/tables" });
 * const lease = await manager.acquire("table:users"); // never released: a leak
 * await assert.rejects(manager.closeAll({ timeoutMs: 10 }), (error) => {
 *   assert.ok(error instanceof LeaseLeakError);
 *   assert.deepEqual(error.names, ["table:users"]);
 *   return true;
 * });
 * lease.release();
 * await manager.closeAll(); // closes the log the lease held
 * ```
 */
export class LeaseLeakError extends HybridLogError {
  /** The names still leased, as given to `acquire`. */
  readonly names: ReadonlyArray<string | Uint8Array>;
  /**
   * Creates the error.
   *
   * @param names The leased names.
   * @param timeoutMs How long it waited.
   */
  constructor(names: ReadonlyArray<string | Uint8Array>, timeoutMs: number) {
    const shown = names.slice(0, 20).map((n) =>
      typeof n === "string" ? JSON.stringify(n) : `bytes(${n.length})`
    );
    super(
      "ERR_LEASED",
      `Cannot close all logs: ${names.length} still leased after ${timeoutMs} ms: ${
        shown.join(", ")
      }${names.length > 20 ? ", …" : ""}`,
    );
    this.names = names;
  }
}
