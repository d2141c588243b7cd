/**
 * hybridlog: a persistent, recoverable hybrid log for consensus protocols and durable queues, for
 * Bun and Deno. New entries are staged in memory; committed ones move to an immutable tail of
 * segment files, made durable by group commit (`fdatasync` off the JS thread) and read back
 * zero-copy through `mmap`.
 *
 * - {@linkcode AppendLog}: a FasterLog-style log addressed by byte offset, for durable queues
 *   and event logs.
 * - {@linkcode ConsensusLog}: accept, commit and read by slot under ballots, with durable accepts,
 *   a durable promise and Raft's term and vote: the log of a Paxos acceptor or a Raft server.
 *   Workers attach to it ({@linkcode ConsensusLog.share}, {@linkcode AttachedConsensusLog}).
 * - {@linkcode LogManager}: many named consensus logs, leased and evicted least recently used.
 * - {@linkcode SnapshotStore} and {@linkcode recover}: crash-safe snapshots, and restoring state
 *   from the latest one plus the log after it.
 * - {@linkcode HybridLogError} and its subclasses: every operating error, with a stable `code`.
 *
 * @example
 * ```ts
 * import { AppendLog } from "@hybridlog/hybridlog";
 *
 * await using log = await AppendLog.open({ dir: "./data/queue" });
 * const address = log.enqueue(new TextEncoder().encode("hello"));
 * await log.commit(); // durable (fdatasync) when it resolves
 * console.log(new TextDecoder().decode(log.read(address)));
 * ```
 *
 * @module
 */
export {
  AppendLog,
  type AppendLogOptions,
  type AppendLogStats,
  type CommitPoint,
  type Durability,
  type LogEntry,
  type ScanOptions,
  type TailIterationOptions,
} from "./src/append_log.ts";
export {
  ClosedError,
  CorruptionError,
  type ErrorCode,
  HybridLogError,
  InvalidArgumentError,
  IoError,
  LockedError,
  PoisonedError,
} from "./src/errors.ts";
export type {
  Device,
  DeviceFile,
  DirectoryLock,
  FileView,
  OpenOptions,
  SyncMode,
} from "./src/device.ts";
export {
  type Ballot,
  type ConsensusEntry,
  ConsensusLog,
  type ConsensusLogOptions,
  type ConsensusLogStats,
  type ConsensusTailOptions,
  type RaftHardState,
  type SlotRange,
} from "./src/consensus_log.ts";
export { AttachedConsensusLog, type AttachedTailOptions } from "./src/consensus_attached.ts";
export type { ConsensusLogHandle } from "./src/consensus_shared.ts";
export {
  AlreadyCommittedError,
  BallotError,
  NotCommittedError,
  RegionFullError,
  SlotNotFoundError,
} from "./src/errors.ts";
export {
  type LogLease,
  LogManager,
  type LogManagerOptions,
  type LogManagerStats,
  type LogName,
} from "./src/log_manager.ts";
export {
  recover,
  type RecoverOptions,
  type RecoverResult,
  type SnapshotData,
  type SnapshotInfo,
  type SnapshotProblem,
  SnapshotStore,
} from "./src/snapshot_store.ts";
export { LeaseLeakError } from "./src/errors.ts";
export {
  defaultMetrics,
  type HistogramSnapshot,
  Metrics,
  type MetricsSnapshot,
} from "./src/metrics.ts";
