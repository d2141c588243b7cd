/**
 * `AppendLog` against the stores people would use instead of it, measured side by side in the
 * same run (the machine is shared and noisy, so a figure only means something next to its peers;
 * BASELINES.md). The workloads are those of `append_log_bench.ts`, with 100 B values for the main
 * table (the one bench:check reads), then again with 10 B, 1 KiB and 16 KiB values for the
 * by-size table, all but the reopen (see `VALUE_SIZES`); at those sizes the read and scan
 * fixtures hold at most 16 MiB of values (100k, 16,384 and 1,024 entries):
 *
 * | workload                               | hybridlog                          | peers                                   |
 * |----------------------------------------|------------------------------------|-----------------------------------------|
 * | append, no sync (per entry)            | `enqueue`                          | one insert / put / write per entry      |
 * | durable commit per entry (p50, p99)    | `enqueue` + `await commit()`       | one durable insert / put / write + sync |
 * | 100 appends + 1 durable commit         | 100 × `enqueue` + `await commit()` | 100 in one transaction / batch + sync   |
 * | random read (copy) of one of 100k      | `read`                             | get by key / id / offset, as a copy     |
 * | scan of 100k entries (per entry)       | `scan()`                           | the store's own iteration               |
 * | reopen of 1M entries + first read      | open + `read` + close              | open + get + close                      |
 *
 * Two variants of hybridlog run the workloads that concern them: the AppendLog tuned for one
 * committing writer (`zeroFillSegments`, `inlineSync`), and the ConsensusLog (accept + commit,
 * 100 accepts + `commitMany`, reopen of 1M committed slots + `readCommitted`).
 *
 * Peers, each run only in the runtime that has it (a peer that cannot run says why):
 * - SQLite: `bun:sqlite` in Bun, `node:sqlite` (`DatabaseSync`) in Deno, where it is Deno's
 *   SQLite; one implementation, the same in both: WAL, `(id INTEGER PRIMARY KEY, v BLOB)`,
 *   prepared statements, `synchronous=OFF` for the append without sync (one autocommit insert per
 *   entry), `synchronous=FULL` for the durable rows, one transaction for the 100-batch.
 * - Deno KV (Deno, `--unstable-kv`): `Deno.openKv(path)`, keys `[i]`; every write is durable, so
 *   its "append, no sync" is its durable `set` (marked "synced"); one `atomic()` for the 100-batch;
 *   `list()` for the scan.
 * - lmdb-js (npm `lmdb`, both runtimes): binary values, uint32 keys. No sync: `noSync: true`,
 *   100 `put`s then awaiting the last (their transaction commits, unsynced). Durable: default
 *   options (a sync per commit), `await put` and `await db.flushed` per entry; the 100-batch is 100
 *   `put`s of one event turn (one transaction) and one wait for the flush.
 * - A plain `node:fs` file: records `u32 length + value` appended with `writeSync`, an in-memory
 *   index of offsets (`Float64Array`), `fdatasync` through the callback form (off the JS thread)
 *   for durable commits; reads are `readSync` into a new `Buffer`; the scan reads the file in
 *   1 MiB chunks and yields a view per entry; reopen rebuilds the index by reading the file.
 *
 * Benches of fast operations run 100 of them per measured call (see `OPS_PER_CALL`). After
 * mitata's output it prints two markdown tables, the main one and the by-size one (mean times
 * unless the row says p50/p99; ratio = hybridlog ÷ best peer: a time ratio, below 1 means
 * hybridlog is faster, or for entries/s a throughput ratio, above 1 means hybridlog is faster),
 * and writes them (`table`, `bySize`) with the raw statistics to
 * `bench/results/<runtime>-peers.json`.
 *
 *   bun bench/peers_bench.ts
 *   deno run --allow-ffi --allow-read --allow-write --allow-env --allow-sys --unstable-kv bench/peers_bench.ts
 *
 * @module
 */
import { Buffer } from "node:buffer";
import * as fs from "node:fs";
import { join } from "node:path";
import { bench, do_not_optimize, group, summary } from "mitata";
import { AppendLog } from "../src/append_log.ts";
import { ConsensusLog } from "../src/consensus_log.ts";
import {
  formatTime,
  makeTempDir,
  meanOf,
  PICKS_COUNT,
  randomPicks,
  removeTempDir,
  reopenAppendLog,
  runAndReport,
  runtime,
  runtimeVersion,
  shared,
  sharedAppendLog,
  type Stats,
  writeResults,
} from "./_shared.ts";

/** Bytes of every value (BASELINES.md measures 100 B values). */
const VALUE_BYTES = 100;
/** Entries per group commit. */
const GROUP_ENTRIES = 100;
/** Entries of the stores that reads and scans run over. */
const READ_ENTRIES = 100_000;
/** Entries of the stores that are reopened. */
const REOPEN_ENTRIES = 1_000_000;
/** Entries per commit / transaction while building the fixtures. */
const BUILD_BATCH_ENTRIES = 50_000;
/** Entries per atomic operation while building Deno KV fixtures (its limit is 1,000). */
const KV_BUILD_BATCH_ENTRIES = 1_000;
/** Operations per measured call of the fast benches (as in append_log_bench.ts). */
const OPS_PER_CALL = 100;
/** Chunk size of the plain file's scan and index rebuild. */
const FILE_CHUNK_BYTES = 1 << 20;

/**
 * The value sizes the issue names. 100 B runs every workload and makes the main table; the others
 * run the per-entry workloads (append, durable commit, group commit, random read, scan) into the
 * by-size table. Not at every size: the reopen of 1M entries (1M of 16 KiB would be 16 GiB of
 * disk per store) and the 256 concurrent committers of workers_bench.ts, both at 100 B only.
 */
const VALUE_SIZES = [10, VALUE_BYTES, 1024, 16 * 1024] as const;
/** Bytes the read and scan fixtures hold at most: 100k entries of up to 167 B, fewer beyond. */
const READ_FIXTURE_BYTES_MAX = 16 * 1024 * 1024;
/** Deno KV's limit on the bytes of one atomic operation (denokv_proto's limits.rs). */
const KV_ATOMIC_BYTES_MAX = 819_200;

/** One value size's values and fixture sizes, the same for every store. */
interface Sizing {
  /** Bytes of every value. */
  bytes: number;
  /** The value every write writes. */
  value: Uint8Array;
  /** Entries of the read and scan fixtures. */
  readEntries: number;
  /** Whether this size runs the reopen of `REOPEN_ENTRIES` (100 B only). */
  reopen: boolean;
}

function sizing(bytes: number): Sizing {
  return {
    bytes,
    value: new Uint8Array(bytes).map((_, i) => i),
    readEntries: Math.min(READ_ENTRIES, Math.floor(READ_FIXTURE_BYTES_MAX / bytes)),
    reopen: bytes === VALUE_BYTES,
  };
}

/** `bytes` as the tables print it: 10 B, 100 B, 1 KiB, 16 KiB. */
function sizeLabel(bytes: number): string {
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

/** The 100 B values of lmdb-js's load probe. */
const value = sizing(VALUE_BYTES).value;

/** What `bench` accepts: a generator that sets up, yields the measured function, cleans up. */
type Body = () =>
  | Generator<() => unknown, void, undefined>
  | AsyncGenerator<() => unknown, void, undefined>;

/**
 * One store's implementation of the workloads (a variant of hybridlog with other options may
 * implement only some: its other cells read "—").
 */
interface Peer {
  /** Its column in the table. */
  name: string;
  /** `OPS_PER_CALL` appends, not synced; `"same as durable"` when the store always syncs. */
  append?: Body | "same as durable";
  /** One append + a durable commit. */
  commitOne?: Body;
  /** `GROUP_ENTRIES` appends + one durable commit. */
  commitGroup?: Body;
  /** `OPS_PER_CALL` random reads (copies) out of the size's `readEntries`. */
  read?: Body;
  /** A scan of the size's `readEntries`. */
  scan?: Body;
  /** Open a store of `REOPEN_ENTRIES`, read the first entry, close. */
  reopen?: Body;
  /** Why a workload this store runs at other sizes is missing at this one. */
  notes?: string[];
}

/** `count` keys from `first` on, as random picks. */
function keyPicks(count: number, first: number): Float64Array {
  return randomPicks(Float64Array.from({ length: count }, (_, i) => first + i));
}

/** Makes `path`'s directory entry durable (fixtures only; never measured). */
function syncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------
// hybridlog

/** A new empty log, durability `"data"`, removed when the bench ends. */
function withNewLog(
  measured: (log: AppendLog) => () => unknown,
  options: { zeroFillSegments?: boolean; inlineSync?: boolean } = {},
): Body {
  return async function* () {
    const log = await AppendLog.open({ dir: makeTempDir(), durability: "data", ...options });
    yield measured(log);
    const dir = log.dir;
    await log.close();
    removeTempDir(dir);
  };
}

/** The ballot of every accept. */
const BALLOT = { round: 1, node: 1 };

/**
 * A new empty consensus log, durability `"data"`, removed when the bench ends; `nextSlot(n)`
 * reserves the next `n` slots and returns the first.
 */
function withNewConsensusLog(
  measured: (log: ConsensusLog, nextSlot: (count: number) => number) => () => unknown,
): Body {
  return async function* () {
    const log = await ConsensusLog.open({ dir: makeTempDir(), durability: "data" });
    let next = 0;
    yield measured(log, (count) => (next += count) - count);
    const dir = log.dir;
    await log.close();
    removeTempDir(dir);
  };
}

/**
 * The three hybridlog columns at one value size:
 * - the AppendLog with its defaults;
 * - the AppendLog tuned for one committing writer: segments zero-filled before use, and syncs on
 *   the JS thread as SQLite's are (commit workloads only);
 * - the ConsensusLog, for what a replica's log does: an accept and its commit, 100 accepts and
 *   one commit of them, and a reopen of 1M committed slots (its slot index comes from the index
 *   checkpoint) to the first read.
 */
function hybridlogStores({ value, readEntries, reopen }: Sizing): Peer[] {
  const readLog = sharedAppendLog(value, readEntries);

  const TUNED = { zeroFillSegments: true, inlineSync: true };
  const zeroFill: Peer = {
    name: "hybridlog (zeroFillSegments, inlineSync)",
    commitOne: withNewLog((log) => async () => {
      log.enqueue(value);
      await log.commit();
    }, TUNED),
    commitGroup: withNewLog((log) => async () => {
      for (let n = 0; n < GROUP_ENTRIES; n++) log.enqueue(value);
      await log.commit();
    }, TUNED),
  };

  const consensus: Peer = {
    name: "hybridlog ConsensusLog",
    commitOne: withNewConsensusLog((log, nextSlot) => async () => {
      const slot = nextSlot(1);
      log.accept(slot, BALLOT, value);
      await log.commit(slot);
    }),
    commitGroup: withNewConsensusLog((log, nextSlot) => async () => {
      const first = nextSlot(GROUP_ENTRIES);
      const slots: number[] = [];
      for (let slot = first; slot < first + GROUP_ENTRIES; slot++) {
        log.accept(slot, BALLOT, value);
        slots.push(slot);
      }
      await log.commitMany(slots);
    }),
    reopen: !reopen ? undefined : async function* () {
      const dir = makeTempDir();
      const log = await ConsensusLog.open({ dir, durability: "data" });
      for (let first = 0; first < REOPEN_ENTRIES; first += BUILD_BATCH_ENTRIES) {
        const slots: number[] = [];
        for (let slot = first; slot < first + BUILD_BATCH_ENTRIES; slot++) {
          log.accept(slot, BALLOT, value);
          slots.push(slot);
        }
        await log.commitMany(slots);
      }
      await log.close(); // writes the index checkpoint
      yield async () => {
        const reopened = await ConsensusLog.open({ dir, durability: "data" });
        do_not_optimize(reopened.readCommitted(0));
        await reopened.close();
      };
      removeTempDir(dir);
    },
  };

  const log: Peer = {
    name: "hybridlog",
    append: withNewLog((log) => () => {
      for (let n = 0; n < OPS_PER_CALL; n++) log.enqueue(value);
    }),
    commitOne: withNewLog((log) => async () => {
      log.enqueue(value);
      await log.commit();
    }),
    commitGroup: withNewLog((log) => async () => {
      for (let n = 0; n < GROUP_ENTRIES; n++) log.enqueue(value);
      await log.commit();
    }),
    read: async function* () {
      const { log, addresses } = await readLog();
      const picks = randomPicks(addresses);
      for (const address of addresses) do_not_optimize(log.read(address)); // warm
      let i = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          do_not_optimize(log.read(picks[i]));
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    },
    scan: async function* () {
      const { log } = await readLog();
      yield () => {
        let bytes = 0;
        for (const entry of log.scan()) bytes += entry.value.length;
        do_not_optimize(bytes);
      };
    },
    reopen: !reopen ? undefined : async function* () {
      yield* reopenAppendLog(value, REOPEN_ENTRIES);
    },
  };
  return [log, zeroFill, consensus];
}

// ---------------------------------------------------------------------------------------------
// SQLite: bun:sqlite (Bun) and node:sqlite (Deno)

/**
 * The little in which SQLite's drivers differ; everything else the peer uses (`exec`, `prepare`,
 * a statement's `run`, `get` and `iterate`, `close`) both have alike.
 */
interface SqliteDriver {
  /** The peer's column. */
  name: string;
  /** Opens the database at `path`, creating it if missing. */
  open(path: string): any;
  /** `body` as one transaction: BEGIN, then COMMIT, or ROLLBACK when it throws. */
  transaction<A extends unknown[]>(db: any, body: (...args: A) => void): (...args: A) => void;
}

/** bun:sqlite, loaded only in Bun (a static import would fail in Deno). */
async function loadBunSqlite(): Promise<SqliteDriver> {
  if (runtime !== "bun") throw new Error("bun:sqlite exists only in Bun");
  const { Database }: any = await import("bun:" + "sqlite");
  return {
    name: "bun:sqlite",
    open: (path) => new Database(path, { create: true }),
    transaction: (db, body) => db.transaction(body),
  };
}

/**
 * node:sqlite's `DatabaseSync`, loaded only in Deno, where it is the SQLite a user would pick (Bun
 * has it too, but Bun's own is bun:sqlite). It has no `transaction()` helper; this one does what
 * bun:sqlite's does: BEGIN, COMMIT and ROLLBACK prepared once, ROLLBACK when the body throws.
 */
async function loadNodeSqlite(): Promise<SqliteDriver> {
  if (runtime !== "deno") throw new Error("node:sqlite is measured only in Deno (Bun: bun:sqlite)");
  const { DatabaseSync }: any = await import("node:sqlite");
  return {
    name: "node:sqlite",
    open: (path) => new DatabaseSync(path),
    transaction: (db, body) => {
      const begin = db.prepare("BEGIN");
      const commit = db.prepare("COMMIT");
      const rollback = db.prepare("ROLLBACK");
      return (...args) => {
        begin.run();
        try {
          body(...args);
        } catch (error) {
          rollback.run();
          throw error;
        }
        commit.run();
      };
    },
  };
}

/** The same database, statements and workloads in every runtime; only `driver` differs. */
function sqlitePeer(driver: SqliteDriver, { value, readEntries, reopen }: Sizing): Peer {
  const openDb = (path: string, synchronous: "OFF" | "FULL"): any => {
    const db = driver.open(path);
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(`PRAGMA synchronous = ${synchronous}`);
    db.exec("CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, v BLOB)");
    return db;
  };
  const INSERT = "INSERT INTO log (v) VALUES (?)";
  const SELECT = "SELECT v FROM log WHERE id = ?";

  /** A new database in a new directory, closed and removed when the bench ends. */
  function withNewDb(
    synchronous: "OFF" | "FULL",
    measured: (db: any) => () => unknown,
  ): Body {
    return function* () {
      const dir = makeTempDir();
      const db = openDb(join(dir, "log.db"), synchronous);
      syncDir(dir);
      yield measured(db);
      db.close();
      removeTempDir(dir);
    };
  }

  /** A closed database of `count` rows with ids 1..count. */
  function build(count: number): string {
    const dir = makeTempDir();
    const path = join(dir, "log.db");
    const db = openDb(path, "FULL");
    const insert = db.prepare(INSERT);
    const insertBatch = driver.transaction(db, (n: number) => {
      for (let i = 0; i < n; i++) insert.run(value);
    });
    for (let done = 0; done < count; done += BUILD_BATCH_ENTRIES) {
      insertBatch(Math.min(BUILD_BATCH_ENTRIES, count - done));
    }
    db.close();
    return path;
  }

  const readDb = shared(() => {
    const db = openDb(build(readEntries), "FULL");
    return Promise.resolve(db);
  }, (db: any) => db.close());

  return {
    name: driver.name,
    append: withNewDb("OFF", (db) => {
      const insert = db.prepare(INSERT);
      return () => {
        for (let n = 0; n < OPS_PER_CALL; n++) insert.run(value);
      };
    }),
    commitOne: withNewDb("FULL", (db) => {
      const insert = db.prepare(INSERT);
      return () => insert.run(value);
    }),
    commitGroup: withNewDb("FULL", (db) => {
      const insert = db.prepare(INSERT);
      const insertGroup = driver.transaction(db, () => {
        for (let n = 0; n < GROUP_ENTRIES; n++) insert.run(value);
      });
      return () => insertGroup();
    }),
    read: async function* () {
      const db = await readDb();
      const select = db.prepare(SELECT);
      for (let id = 1; id <= readEntries; id++) do_not_optimize(select.get(id)); // warm
      const picks = keyPicks(readEntries, 1);
      let i = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          do_not_optimize(select.get(picks[i]).v);
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    },
    scan: async function* () {
      const db = await readDb();
      const scan = db.prepare("SELECT v FROM log ORDER BY id");
      yield () => {
        let bytes = 0;
        for (const row of scan.iterate()) bytes += row.v.length;
        do_not_optimize(bytes);
      };
    },
    reopen: !reopen ? undefined : function* () {
      const path = build(REOPEN_ENTRIES);
      yield () => {
        const db = driver.open(path);
        do_not_optimize(db.prepare(SELECT).get(1).v);
        db.close();
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Deno KV

/** `Deno.openKv`, reached through `globalThis` so that the code type-checks with Bun's types. */
function loadOpenKv(): (path: string) => Promise<any> {
  const deno = (globalThis as any).Deno;
  if (runtime !== "deno" || deno === undefined) throw new Error("Deno KV exists only in Deno");
  if (typeof deno.openKv !== "function") {
    throw new Error("Deno.openKv is unavailable: run Deno with --unstable-kv");
  }
  return (path) => deno.openKv(path);
}

function kvPeer(
  openKv: (path: string) => Promise<any>,
  { bytes, value, readEntries, reopen }: Sizing,
): Peer {
  /** Entries per atomic operation that stay inside its limits (1,000 mutations, 800 KiB). */
  const perAtomic = Math.min(
    KV_BUILD_BATCH_ENTRIES,
    Math.floor(KV_ATOMIC_BYTES_MAX / (bytes + 64)),
  );
  /** A new store in a new directory, closed and removed when the bench ends. */
  function withNewKv(
    measured: (kv: any) => () => unknown,
  ): Body {
    return async function* () {
      const dir = makeTempDir();
      const kv = await openKv(join(dir, "log.kv"));
      yield measured(kv);
      kv.close();
      removeTempDir(dir);
    };
  }

  async function fill(kv: any, count: number): Promise<void> {
    for (let done = 0; done < count; done += perAtomic) {
      const atomic = kv.atomic();
      const end = Math.min(done + perAtomic, count);
      for (let i = done; i < end; i++) atomic.set([i], value);
      if (!(await atomic.commit()).ok) throw new Error("Deno KV: a build commit failed");
    }
  }

  const readKv = shared(async () => {
    const kv = await openKv(join(makeTempDir(), "log.kv"));
    await fill(kv, readEntries);
    return kv;
  }, (kv: any) => kv.close());

  return {
    name: "Deno KV",
    notes: GROUP_ENTRIES > perAtomic
      ? [
        `Deno KV has no ${GROUP_ENTRIES} appends + 1 durable commit of ${sizeLabel(bytes)}: ` +
        `one atomic operation holds at most ${KV_ATOMIC_BYTES_MAX} bytes`,
      ]
      : undefined,
    append: "same as durable",
    commitOne: withNewKv((kv) => {
      let key = 0;
      return async () => {
        await kv.set([key++], value);
      };
    }),
    // One atomic operation cannot hold 100 values of 16 KiB (800 KiB at most): no group there.
    commitGroup: GROUP_ENTRIES > perAtomic ? undefined : withNewKv((kv) => {
      let key = 0;
      return async () => {
        const atomic = kv.atomic();
        for (let n = 0; n < GROUP_ENTRIES; n++) atomic.set([key++], value);
        if (!(await atomic.commit()).ok) throw new Error("Deno KV: a commit failed");
      };
    }),
    read: async function* () {
      const kv = await readKv();
      const picks = keyPicks(readEntries, 0);
      let i = 0;
      yield async () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          do_not_optimize((await kv.get([picks[i]])).value);
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    },
    scan: async function* () {
      const kv = await readKv();
      yield async () => {
        let bytes = 0;
        for await (const entry of kv.list({ prefix: [] }, { batchSize: 1000 })) {
          bytes += entry.value.length;
        }
        do_not_optimize(bytes);
      };
    },
    reopen: !reopen ? undefined : async function* () {
      const dir = makeTempDir();
      const path = join(dir, "log.kv");
      const kv = await openKv(path);
      await fill(kv, REOPEN_ENTRIES);
      kv.close();
      yield async () => {
        const reopened = await openKv(path);
        do_not_optimize((await reopened.get([0])).value);
        reopened.close();
      };
      removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// lmdb-js

type Lmdb = typeof import("lmdb");

/** Loads lmdb-js and checks that its native addon works here (open, put, get, close). */
async function loadLmdb(): Promise<Lmdb> {
  const lmdb: Lmdb = await import("lmdb");
  const dir = makeTempDir();
  try {
    const db = lmdb.open({ path: join(dir, "probe.mdb"), encoding: "binary" });
    await db.put(1, value);
    if (db.get(1)?.length !== VALUE_BYTES) throw new Error("lmdb-js: a put did not read back");
    await db.close();
  } finally {
    removeTempDir(dir);
  }
  return lmdb;
}

function lmdbPeer(lmdb: Lmdb, { value, readEntries, reopen }: Sizing): Peer {
  type Db = ReturnType<typeof openDb>;
  const openDb = (dir: string, noSync: boolean) =>
    lmdb.open<Uint8Array, number>({
      path: join(dir, "log.mdb"),
      encoding: "binary",
      keyEncoding: "uint32",
      noSync,
    });

  /** A new store in a new directory, closed and removed when the bench ends. */
  function withNewDb(
    noSync: boolean,
    measured: (db: Db) => () => unknown,
  ): Body {
    return async function* () {
      const dir = makeTempDir();
      const db = openDb(dir, noSync);
      await db.put(0xffffffff, value); // creates the files
      syncDir(dir);
      yield measured(db);
      await db.close();
      removeTempDir(dir);
    };
  }

  /** A closed store of `count` entries with keys 0..count-1, in its own directory. */
  async function build(count: number): Promise<string> {
    const dir = makeTempDir();
    const db = openDb(dir, false);
    for (let done = 0; done < count; done += BUILD_BATCH_ENTRIES) {
      const end = Math.min(done + BUILD_BATCH_ENTRIES, count);
      db.transactionSync(() => {
        for (let i = done; i < end; i++) db.putSync(i, value);
      });
    }
    await db.close();
    return dir;
  }

  const readDb = shared(
    async () => openDb(await build(readEntries), false),
    (db: Db) => db.close(),
  );

  return {
    name: "lmdb-js",
    append: withNewDb(true, (db) => {
      let key = 0;
      return async () => {
        let last: Promise<boolean> | undefined;
        for (let n = 0; n < OPS_PER_CALL; n++) last = db.put(key++, value);
        await last;
      };
    }),
    commitOne: withNewDb(false, (db) => {
      let key = 0;
      return async () => {
        await db.put(key++, value);
        await db.flushed;
      };
    }),
    commitGroup: withNewDb(false, (db) => {
      let key = 0;
      return async () => {
        let last: Promise<boolean> | undefined;
        for (let n = 0; n < GROUP_ENTRIES; n++) last = db.put(key++, value);
        await last;
        await db.flushed;
      };
    }),
    read: async function* () {
      const db = await readDb();
      for (let key = 0; key < readEntries; key++) do_not_optimize(db.get(key)); // warm
      const picks = keyPicks(readEntries, 0);
      let i = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          do_not_optimize(db.get(picks[i]));
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    },
    scan: async function* () {
      const db = await readDb();
      yield () => {
        let bytes = 0;
        for (const entry of db.getRange()) bytes += entry.value.length;
        do_not_optimize(bytes);
      };
    },
    reopen: !reopen ? undefined : async function* () {
      const dir = await build(REOPEN_ENTRIES);
      yield async () => {
        const db = openDb(dir, false);
        do_not_optimize(db.get(0));
        await db.close();
      };
      removeTempDir(dir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// A plain node:fs file

/** Records `u32 length (LE) + value`, appended at the end; an in-memory index of offsets. */
class PlainFileLog {
  readonly fd: number;
  /** Bytes of complete records. */
  sizeBytes = 0;
  /** Entries. */
  count = 0;
  /** Offset of every record's header. */
  offsets = new Float64Array(1024);
  readonly #record = new Uint8Array(4 + (1 << 16));
  readonly #chunk = new Uint8Array(FILE_CHUNK_BYTES);

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** A new empty file; its directory entry synced. */
  static create(path: string): PlainFileLog {
    const log = new PlainFileLog(fs.openSync(path, "w+", 0o600));
    fs.fsyncSync(log.fd);
    syncDir(join(path, ".."));
    return log;
  }

  /** Opens `path` and rebuilds the index by reading the file; a torn last record is ignored. */
  static open(path: string): PlainFileLog {
    const log = new PlainFileLog(fs.openSync(path, "r+"));
    log.#walk(fs.fstatSync(log.fd).size, (offset) => log.#index(offset));
    return log;
  }

  #index(offset: number): void {
    if (this.count === this.offsets.length) {
      const grown = new Float64Array(this.offsets.length * 2);
      grown.set(this.offsets);
      this.offsets = grown;
    }
    this.offsets[this.count++] = offset;
  }

  /** Visits every complete record below `endBytes`; leaves `sizeBytes` at the last one's end. */
  #walk(endBytes: number, visit: (offset: number, view: Uint8Array) => void): void {
    const chunk = this.#chunk;
    let chunkStart = 0; // file offset of chunk[0]
    let filled = 0;
    let p = 0;
    for (;;) {
      if (p > 0) {
        chunk.copyWithin(0, p, filled);
        chunkStart += p;
        filled -= p;
        p = 0;
      }
      const want = Math.min(chunk.length - filled, endBytes - (chunkStart + filled));
      const read = want > 0 ? fs.readSync(this.fd, chunk, filled, want, chunkStart + filled) : 0;
      if (read === 0) break;
      filled += read;
      while (p + 4 <= filled) {
        const length = (chunk[p] | chunk[p + 1] << 8 | chunk[p + 2] << 16 | chunk[p + 3] << 24) >>>
          0;
        if (p + 4 + length > filled) break;
        visit(chunkStart + p, chunk.subarray(p + 4, p + 4 + length));
        p += 4 + length;
      }
    }
    this.sizeBytes = chunkStart + p;
  }

  /** Appends one record with one `writeSync`; not synced. */
  append(bytes: Uint8Array): void {
    const record = this.#record;
    const length = bytes.length;
    record[0] = length;
    record[1] = length >>> 8;
    record[2] = length >>> 16;
    record[3] = length >>> 24;
    record.set(bytes, 4);
    fs.writeSync(this.fd, record, 0, 4 + length, this.sizeBytes);
    this.#index(this.sizeBytes);
    this.sizeBytes += 4 + length;
  }

  /** `fdatasync` off the JS thread. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) =>
      fs.fdatasync(this.fd, (error) => error ? reject(error) : resolve())
    );
  }

  /** A copy of entry `i`. */
  read(i: number): Uint8Array {
    const start = this.offsets[i] + 4;
    const end = i + 1 < this.count ? this.offsets[i + 1] : this.sizeBytes;
    const bytes = Buffer.allocUnsafe(end - start);
    fs.readSync(this.fd, bytes, 0, bytes.length, start);
    return bytes;
  }

  /** Every entry in order, as a view valid until the next step. */
  *entries(): Generator<Uint8Array> {
    const chunk = this.#chunk;
    const end = this.sizeBytes;
    let chunkStart = 0;
    let filled = 0;
    let p = 0;
    for (;;) {
      if (p > 0) {
        chunk.copyWithin(0, p, filled);
        chunkStart += p;
        filled -= p;
        p = 0;
      }
      const want = Math.min(chunk.length - filled, end - (chunkStart + filled));
      const read = want > 0 ? fs.readSync(this.fd, chunk, filled, want, chunkStart + filled) : 0;
      if (read === 0) return;
      filled += read;
      while (p + 4 <= filled) {
        const length = (chunk[p] | chunk[p + 1] << 8 | chunk[p + 2] << 16 | chunk[p + 3] << 24) >>>
          0;
        if (p + 4 + length > filled) break;
        yield chunk.subarray(p + 4, p + 4 + length);
        p += 4 + length;
      }
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

function filePeer({ value, readEntries, reopen }: Sizing): Peer {
  /** A new file in a new directory, closed and removed when the bench ends. */
  function withNewFile(
    measured: (file: PlainFileLog) => () => unknown,
  ): Body {
    return function* () {
      const dir = makeTempDir();
      const file = PlainFileLog.create(join(dir, "log"));
      yield measured(file);
      file.close();
      removeTempDir(dir);
    };
  }

  /** A synced file of `count` entries, open. */
  async function build(count: number): Promise<{ file: PlainFileLog; path: string }> {
    const path = join(makeTempDir(), "log");
    const file = PlainFileLog.create(path);
    for (let i = 0; i < count; i++) {
      file.append(value);
      if ((i + 1) % BUILD_BATCH_ENTRIES === 0) await file.sync();
    }
    await file.sync();
    return { file, path };
  }

  const readFile = shared(() => build(readEntries), ({ file }) => file.close());

  return {
    name: "node:fs file",
    append: withNewFile((file) => () => {
      for (let n = 0; n < OPS_PER_CALL; n++) file.append(value);
    }),
    commitOne: withNewFile((file) => async () => {
      file.append(value);
      await file.sync();
    }),
    commitGroup: withNewFile((file) => async () => {
      for (let n = 0; n < GROUP_ENTRIES; n++) file.append(value);
      await file.sync();
    }),
    read: async function* () {
      const { file } = await readFile();
      for (let i = 0; i < readEntries; i++) do_not_optimize(file.read(i)); // warm
      const picks = keyPicks(readEntries, 0);
      let i = 0;
      yield () => {
        for (let n = 0; n < OPS_PER_CALL; n++) {
          do_not_optimize(file.read(picks[i]));
          i = (i + 1) & (PICKS_COUNT - 1);
        }
      };
    },
    scan: async function* () {
      const { file } = await readFile();
      yield () => {
        let bytes = 0;
        for (const entry of file.entries()) bytes += entry.length;
        do_not_optimize(bytes);
      };
    },
    reopen: !reopen ? undefined : async function* () {
      const { file, path } = await build(REOPEN_ENTRIES);
      file.close();
      yield () => {
        const reopened = PlainFileLog.open(path);
        do_not_optimize(reopened.read(0));
        reopened.close();
      };
      removeTempDir(join(path, ".."));
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Which peers run here

/** Each peer that runs here, made for one value size. */
const peerMakers: Array<(size: Sizing) => Peer> = [];
/** Peer name → why it does not run in this runtime. */
const skipped: Record<string, string> = {};

async function tryPeer(
  name: string,
  load: () => ((size: Sizing) => Peer) | Promise<(size: Sizing) => Peer>,
): Promise<void> {
  try {
    peerMakers.push(await load());
  } catch (error) {
    skipped[name] = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  }
}

if (runtime === "bun") {
  await tryPeer("bun:sqlite", async () => {
    const driver = await loadBunSqlite();
    return (size) => sqlitePeer(driver, size);
  });
}
if (runtime === "deno") {
  await tryPeer("node:sqlite", async () => {
    const driver = await loadNodeSqlite();
    return (size) => sqlitePeer(driver, size);
  });
  await tryPeer("Deno KV", () => {
    const openKv = loadOpenKv();
    return (size) => kvPeer(openKv, size);
  });
}
await tryPeer("lmdb-js", async () => {
  const lmdb = await loadLmdb();
  return (size) => lmdbPeer(lmdb, size);
});
await tryPeer("node:fs file", () => filePeer);
for (const [name, reason] of Object.entries(skipped)) {
  console.log(`peer ${name} does not run in ${runtime}: ${reason}`);
}

/** Every column at one value size: hybridlog's three, then the peers. */
interface SizeRun {
  size: Sizing;
  stores: Peer[];
  peers: Peer[];
}
const runs: SizeRun[] = VALUE_SIZES.map((bytes) => {
  const size = sizing(bytes);
  const peers = peerMakers.map((make) => make(size));
  return { size, stores: [...hybridlogStores(size), ...peers], peers };
});
/** The 100 B run: the main table, which bench:check reads. */
const mainRun = runs.find((run) => run.size.bytes === VALUE_BYTES)!;
// The store names head the table's columns: every size must have the same ones.
const storeNames = mainRun.stores.map((store) => store.name);

const WORKLOADS = {
  append: "append, no sync",
  commitOne: "append + durable commit",
  commitGroup: `${GROUP_ENTRIES} × append + one durable commit`,
  read: "random read (copy)",
  scan: "scan",
  reopen: "open 1M entries + first read + close",
} as const;
type Workload = keyof typeof WORKLOADS;

/**
 * The bench's name. The 100 B names are those of the runs before the other sizes came, which
 * the raw statistics in bench/results keep.
 */
function benchName(store: Peer, workload: Workload, size: Sizing): string {
  if (size.bytes === VALUE_BYTES) {
    const main = {
      ...WORKLOADS,
      append: `${OPS_PER_CALL} × append 100 B, no sync`,
      read: `${OPS_PER_CALL} × random read (copy) of 100k`,
      scan: "scan of 100k entries",
    };
    return `${store.name}: ${main[workload]}`;
  }
  const label = workload === "append" || workload === "read"
    ? `${OPS_PER_CALL} × ${WORKLOADS[workload]}`
    : workload === "scan"
    ? `scan of ${size.readEntries} entries`
    : WORKLOADS[workload];
  return `${store.name}: ${label} [${sizeLabel(size.bytes)}]`;
}

for (const { size, stores } of runs) {
  for (const workload of Object.keys(WORKLOADS) as Workload[]) {
    if (workload === "reopen" && !size.reopen) continue;
    group(`${WORKLOADS[workload]}, ${sizeLabel(size.bytes)}`, () => {
      summary(() => {
        for (const store of stores) {
          const body = store[workload];
          if (typeof body !== "function") continue;
          // mitata runs setup and teardown only for generator functions; anything else it times
          // whole.
          if (!body.constructor.name.endsWith("GeneratorFunction")) {
            throw new Error(
              `assertion failed: ${benchName(store, workload, size)} is no generator function`,
            );
          }
          bench(benchName(store, workload, size), body);
        }
      });
    });
  }
}

await runAndReport(report);

/** One row of a table: a workload's figure for every column, the best peer and the ratio. */
interface Row {
  workload: string;
  unit: "ns" | "entries/s";
  values: Record<string, number>;
  cells: string[];
  bestPeer: string | undefined;
  ratio: number | undefined;
}

/** The rows of `run`'s table. */
function tableOf(results: Map<string, Stats>, { size, stores, peers }: SizeRun): Row[] {
  /** The statistics of `store`'s `workload` (the durable bench when it always syncs). */
  const stats = (store: Peer, workload: Workload): Stats => {
    const measured = store[workload] === "same as durable" ? "commitOne" : workload;
    const found = results.get(benchName(store, measured, size));
    if (found === undefined) {
      // A variant that does not implement the workload: its cell reads "—".
      if (store[measured] === undefined) return { avg: NaN, p50: NaN, p99: NaN } as Stats;
      throw new Error(`Cannot report ${benchName(store, measured, size)}`);
    }
    return found;
  };
  const mean = (workload: Workload) => (store: Peer) =>
    store[workload] === undefined ? NaN : meanOf(results, benchName(store, workload, size));
  const label = sizeLabel(size.bytes);
  const main = size.bytes === VALUE_BYTES;
  const rows: Array<{
    workload: string;
    /** ns per entry (or per call for reopen), or entries/s when `throughput`. */
    value: (store: Peer) => number;
    throughput?: boolean;
    note?: (store: Peer) => string | undefined;
  }> = [
    {
      workload: `append ${label}, no sync (mean per entry)`,
      value: (store) =>
        store.append === "same as durable"
          ? stats(store, "commitOne").avg
          : stats(store, "append").avg / OPS_PER_CALL,
      note: (store) => store.append === "same as durable" ? "synced" : undefined,
    },
    {
      workload: `durable commit per entry, p50${main ? "" : `, ${label}`}`,
      value: (store) => stats(store, "commitOne").p50,
    },
    {
      workload: `durable commit per entry, p99${main ? "" : `, ${label}`}`,
      value: (store) => stats(store, "commitOne").p99,
    },
    {
      workload: `${GROUP_ENTRIES} appends + 1 durable commit${main ? "" : `, ${label}`}`,
      value: (store) => GROUP_ENTRIES / mean("commitGroup")(store) * 1e9,
      throughput: true,
    },
    {
      workload: main
        ? "random read (copy) of 1 of 100k"
        : `random read (copy) of 1 of ${size.readEntries}, ${label}`,
      value: (store) => mean("read")(store) / OPS_PER_CALL,
    },
    {
      workload: `scan, per entry${main ? "" : `, ${label} (${size.readEntries} entries)`}`,
      value: (store) => mean("scan")(store) / size.readEntries,
    },
  ];
  if (size.reopen) {
    rows.push({ workload: "reopen 1M entries + first read", value: mean("reopen") });
  }
  const show = (value: number, throughput: boolean | undefined) =>
    Number.isNaN(value)
      ? "—"
      : throughput
      ? `${(value / 1e3).toFixed(0)}k entries/s`
      : formatTime(value);

  return rows.map(({ workload, value, throughput, note }) => {
    const values = Object.fromEntries(stores.map((store) => [store.name, value(store)]));
    let best: Peer | undefined;
    for (const peer of peers) {
      if (Number.isNaN(values[peer.name])) continue;
      const better = best === undefined ||
        (throughput
          ? values[peer.name] > values[best.name]
          : values[peer.name] < values[best.name]);
      if (better) best = peer;
    }
    const cells = stores.map((store) => {
      const extra = note?.(store);
      return show(values[store.name], throughput) + (extra ? ` (${extra})` : "");
    });
    return {
      workload,
      unit: throughput ? "entries/s" : "ns",
      values,
      cells,
      bestPeer: best?.name,
      ratio: best === undefined ? undefined : values.hybridlog / values[best.name],
    };
  });
}

function printTable(rows: Row[]): void {
  console.log(`| workload | ${storeNames.join(" | ")} | best peer | ratio |`);
  console.log(`|---|${storeNames.map(() => "---:|").join("")}---|---:|`);
  for (const row of rows) {
    const ratio = row.ratio === undefined ? "—" : `${row.ratio.toFixed(2)}×`;
    console.log(
      `| ${row.workload} | ${row.cells.join(" | ")} | ${row.bestPeer ?? "—"} | ${ratio} |`,
    );
  }
}

function report(results: Map<string, Stats>, context: unknown): void {
  for (const { stores } of runs) {
    const names = stores.map((store) => store.name);
    if (names.join("\n") !== storeNames.join("\n")) {
      throw new Error(`assertion failed: the columns differ by size: ${names.join(", ")}`);
    }
  }
  const table = tableOf(results, mainRun);
  const bySize = runs.flatMap((run) => run === mainRun ? [] : tableOf(results, run));
  const notes = runs.flatMap((run) => run.stores.flatMap((store) => store.notes ?? []));

  const version = runtimeVersion;
  const legend = "(mean unless p50/p99; ratio = hybridlog ÷ best peer: time ratio, < 1 = " +
    "hybridlog faster; for entries/s a throughput ratio, > 1 = hybridlog faster)";
  console.log(`\n### hybridlog vs peers — ${runtime} ${version} ${legend}\n`);
  printTable(table);
  console.log(
    `\n### hybridlog vs peers by value size — ${runtime} ${version} (the same workloads at ` +
      `${VALUE_SIZES.filter((bytes) => bytes !== VALUE_BYTES).map(sizeLabel).join(", ")}; read ` +
      `and scan fixtures of at most ${READ_FIXTURE_BYTES_MAX / 1024 / 1024} MiB; ${legend})\n`,
  );
  printTable(bySize);
  for (const note of notes) console.log(`\n${note}`);
  for (const [name, reason] of Object.entries(skipped)) {
    console.log(`\n${name} did not run in ${runtime}: ${reason}`);
  }
  writeResults(`${runtime}-peers.json`, {
    runtime,
    version,
    date: new Date().toISOString(),
    context,
    peers: mainRun.peers.map((peer) => peer.name),
    skipped,
    table,
    bySize,
    notes,
    raw: Object.fromEntries(results),
  });
}
