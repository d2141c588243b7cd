/**
 * The storage device seam. The storage core reads, writes and syncs only through these
 * interfaces, so tests can run it on the real file system, in memory, or on a device that injects
 * faults and simulates power loss (FASTER's `IDevice`, TigerBeetle's storage interface).
 *
 * @module
 */

/** How durable a sync makes a file. */
export type SyncMode = "data" | "full";

/** Bytes of a file made readable in place (a read-only mapping on the real device). */
export interface FileView {
  /** The file's bytes `[0, lengthBytes)`. Detached (length 0) after {@linkcode FileView.release}. */
  readonly bytes: Uint8Array;
  /** The same bytes as 32-bit words (little-endian), for header reads. */
  readonly words: Uint32Array;
  /**
   * CRC-32 of `bytes[offsetBytes, offsetBytes + lengthBytes)` continuing from `seed`, computed
   * natively (libdeflate) when the device has it; record checks fall back to `node:zlib` over a
   * view without it. Throws `InvalidArgumentError` outside the view (or once released).
   */
  readonly checksum?: (offsetBytes: number, lengthBytes: number, seed: number) => number;
  /** Ends the view: on the real device it detaches every view and unmaps. Idempotent. */
  release(): void;
}

/** One open file. Every method throws `IoError` on failure. */
export interface DeviceFile {
  /** The path the file was opened with. */
  readonly path: string;
  /** Current size in bytes. */
  sizeBytes(): number;
  /** Writes every byte of `bytes` at `positionBytes` (short writes are continued). */
  write(bytes: Uint8Array, positionBytes: number): void;
  /**
   * Like {@linkcode DeviceFile.write}, off the JS thread: resolves once every byte is written. The
   * caller must not change `bytes` until then.
   */
  writeAsync(bytes: Uint8Array, positionBytes: number): Promise<void>;
  /** Reads up to `into.length` bytes at `positionBytes`; returns how many were read. */
  read(into: Uint8Array, positionBytes: number): number;
  /** Reserves real blocks for `[offsetBytes, offsetBytes + lengthBytes)` (never sparse). */
  allocate(offsetBytes: number, lengthBytes: number): void;
  /** Sets the size to `lengthBytes`. */
  truncate(lengthBytes: number): void;
  /** Makes written bytes durable, off the JS thread. A failure must never be retried. */
  sync(mode: SyncMode): Promise<void>;
  /** Makes written bytes durable on the calling thread (open, recovery and close paths only). */
  syncNow(mode: SyncMode): void;
  /** Read-only view of `[0, lengthBytes)`; the file must be at least that long. */
  view(lengthBytes: number): FileView;
  /** Closes the file. Idempotent. */
  close(): void;
}

/** Options of {@linkcode Device.open}. */
export interface OpenOptions {
  /** Create the file if missing (mode 0600). */
  create?: boolean;
  /** Fail with `EEXIST` if it exists. */
  exclusive?: boolean;
  /** Open read-only. */
  readOnly?: boolean;
}

/** A held directory lock. */
export interface DirectoryLock {
  /** Releases the lock. Idempotent. */
  release(): void;
}

/** A file system as the storage core sees it. */
export interface Device {
  /** A short name for reports: `"fs"`, `"memory"`, `"faulty"`. */
  readonly name: string;
  /** Creates `path` and missing parents with mode 0700; returns the directories it created. */
  makeDirectory(path: string): string[];
  /** File names in `path`, sorted. */
  list(path: string): string[];
  /** Whether `path` exists. */
  exists(path: string): boolean;
  /** Opens a file. */
  open(path: string, options?: OpenOptions): DeviceFile;
  /** Atomically renames `from` to `to` (durable only after the directory is synced). */
  rename(from: string, to: string): void;
  /** Removes a file (durable only after the directory is synced). */
  remove(path: string): void;
  /** Syncs a directory so created, renamed and removed entries in it survive power loss. */
  syncDirectory(path: string): Promise<void>;
  /** Synchronous form of {@linkcode Device.syncDirectory} for open and close paths. */
  syncDirectoryNow(path: string): void;
  /**
   * Takes the exclusive lock of directory `path` (a `LOCK` file in it); throws `LockedError` if
   * another open log, in this or another process, holds it.
   */
  lock(path: string): DirectoryLock;
}
