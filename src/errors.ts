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

/** Base class of every error hybridlog throws on purpose; `code` is stable across versions. */
export class HybridLogError extends Error {
  /** A stable machine-readable code, e.g. `ERR_CLOSED`. */
  readonly code: ErrorCode;
  /**
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

/** A caller passed a value the API does not accept; nothing was changed. */
export class InvalidArgumentError extends HybridLogError {
  /** @param message What was attempted and what was wrong with the argument. */
  constructor(message: string) {
    super("ERR_INVALID_ARGUMENT", message);
  }
}

/** The log (or store) was closed, or completed, before or during the call. */
export class ClosedError extends HybridLogError {
  /** @param message What was attempted. */
  constructor(message: string) {
    super("ERR_CLOSED", message);
  }
}

/** A system call failed; `errno` is the symbolic name (`EIO`, `ENOSPC`, …). */
export class IoError extends HybridLogError {
  /** The errno name, e.g. `ENOSPC`. */
  readonly errno: string;
  /** The system call or operation that failed, e.g. `fdatasync`. */
  readonly syscall: string;
  /** The file involved, when there is one. */
  readonly path: string | undefined;
  /**
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

/** Stored bytes failed validation where valid data must be (before the commit point). */
export class CorruptionError extends HybridLogError {
  /** The file holding the damaged bytes. */
  readonly path: string;
  /** The logical address (or file offset for metadata files) of the damage. */
  readonly address: number;
  /**
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

/** Another log (in this or another process) holds the directory open for writing. */
export class LockedError extends HybridLogError {
  /** The locked directory. */
  readonly dir: string;
  /** @param dir The directory that is already open. */
  constructor(dir: string) {
    super("ERR_LOCKED", `Cannot open ${dir}: it is locked by another open log`);
    this.dir = dir;
  }
}

/**
 * A sync failed earlier, so the log no longer knows what reached the disk. fsync is never retried
 * (the kernel may have dropped the dirty pages); reopen the log to recover from what is durable.
 */
export class PoisonedError extends HybridLogError {
  /** @param message What was attempted; `cause` is the failure that poisoned the log. */
  constructor(message: string, options?: ErrorOptions) {
    super("ERR_POISONED", message, options);
  }
}

/** A ballot (or Raft term) lower than the one held or promised. */
export class BallotError extends HybridLogError {
  /** @param message What was attempted and which ballot won. */
  constructor(message: string) {
    super("ERR_BALLOT", message);
  }
}

/** The slot is committed and can never change. */
export class AlreadyCommittedError extends HybridLogError {
  /** The committed slot. */
  readonly slot: number;
  /** @param slot The slot. @param what What was attempted. */
  constructor(slot: number, what: string) {
    super("ERR_COMMITTED", `Cannot ${what} slot ${slot}: it is committed`);
    this.slot = slot;
  }
}

/** The slot holds no accepted or committed entry. */
export class SlotNotFoundError extends HybridLogError {
  /** The slot. */
  readonly slot: number;
  /** @param slot The slot. @param what What was attempted. */
  constructor(slot: number, what: string) {
    super("ERR_NOT_FOUND", `Cannot ${what} slot ${slot}: it holds no accepted entry`);
    this.slot = slot;
  }
}

/** The slot is accepted but not (durably) committed. */
export class NotCommittedError extends HybridLogError {
  /** The slot. */
  readonly slot: number;
  /** @param slot The slot. */
  constructor(slot: number) {
    super("ERR_NOT_COMMITTED", `Cannot read slot ${slot} as committed: it is only accepted`);
    this.slot = slot;
  }
}

/** The mutable region has no room: backpressure. Commit or wait, then retry. */
export class RegionFullError extends HybridLogError {
  /** @param message What did not fit. */
  constructor(message: string) {
    super("ERR_REGION_FULL", message);
  }
}

/** `closeAll` timed out with leases still held: names the logs that leak. */
export class LeaseLeakError extends HybridLogError {
  /** The names still leased, as given to `acquire`. */
  readonly names: ReadonlyArray<string | Uint8Array>;
  /** @param names The leased names. @param timeoutMs How long it waited. */
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
