/**
 * Every limit and default of the storage core, with where its number comes from. Relations between
 * them are checked when this module loads, so a bad edit fails at once rather than on a disk.
 *
 * @module
 */

/** On-disk format version, written in every segment header and checkpoint slot. */
export const FORMAT_VERSION = 1;

/** Bytes at the start of every segment file: magic, version, log id, segment index. */
export const SEGMENT_HEADER_BYTES = 64;
/** Bytes of every record header: checksum, length, address, kind, flags. */
export const RECORD_HEADER_BYTES = 16;
/**
 * Records start at multiples of 8 bytes so headers can be read with `Uint32Array` (a `DataView`
 * over mapped memory reads at 1.2 GB/s in Bun against 7 GB/s for typed arrays, BASELINES.md).
 */
export const RECORD_ALIGNMENT_BYTES = 8;

/** Default segment size: 64 MiB keeps a 1M × 100 B log in two files and a roll-over rare. */
export const SEGMENT_SIZE_BYTES_DEFAULT = 64 * 1024 * 1024;
/** Smallest segment: must hold a header and a few records; tests use small segments. */
export const SEGMENT_SIZE_BYTES_MIN = 64 * 1024;
/** Largest segment: 1 GiB, so one mapping stays well inside what both runtimes accept. */
export const SEGMENT_SIZE_BYTES_MAX = 1024 * 1024 * 1024;

/**
 * Default staging buffer: enqueued bytes collect here until a commit (or a full buffer) writes them
 * out. 1 MiB stays in a core's L2 (2 MiB here) until it is written out: from a 4 MiB buffer the
 * kernel's copy into the page cache read bytes long since evicted, and in Bun took 30% of an
 * enqueue loop (84 ns of system time per 100 B enqueue against 27). Interleaved runs of 2M
 * enqueues of 100 B, medians of 6–8: Bun 201 ns (4 MiB), 181 (2 MiB), 130–139 (1 MiB and
 * 512 KiB); Deno 103 / 106 / 83–101. It is also 3 MiB less per log that has written (a
 * `LogManager` may hold hundreds). 100 appends of 16 KiB values between commits take two
 * `pwrite`s instead of one.
 */
export const BUFFER_SIZE_BYTES_DEFAULT = 1024 * 1024;
/** Smallest staging buffer: one 4 KiB page. */
export const BUFFER_SIZE_BYTES_MIN = 4096;

/** Default largest entry: 1 MiB; larger values belong in a snapshot or a blob store. */
export const ENTRY_SIZE_BYTES_MAX_DEFAULT = 1024 * 1024;
/** Hard upper bound of an entry (length field is 32 bits, and a record must fit a segment). */
export const ENTRY_SIZE_BYTES_LIMIT = 256 * 1024 * 1024;

/** Largest commit cookie; it is stored in the commit record and in the checkpoint slot. */
export const COOKIE_SIZE_BYTES_MAX = 2048;

/**
 * A checkpoint (the double-buffered commit record) is rewritten once this many bytes were committed
 * since the last one, bounding how much a reopen after a crash must scan and verify.
 */
export const CHECKPOINT_INTERVAL_BYTES_DEFAULT = 8 * 1024 * 1024;

/** One checkpoint slot: a 4 KiB page, so a torn write damages at most the slot being written. */
export const CHECKPOINT_SLOT_BYTES = 4096;
/** Fixed part of a checkpoint slot before the cookie. */
export const CHECKPOINT_FIXED_BYTES = 64;

/** Addresses are JS numbers; the record header stores 48 bits of them. */
export const ADDRESS_LIMIT = 2 ** 48;

/** File and directory permissions: private to the owner whatever the umask. */
export const FILE_MODE = 0o600;
/** Directory permissions. */
export const DIRECTORY_MODE = 0o700;

function check(condition: boolean, what: string): void {
  if (!condition) throw new Error(`hybridlog constants are inconsistent: ${what}`);
}
check(SEGMENT_HEADER_BYTES % RECORD_ALIGNMENT_BYTES === 0, "segment header is not aligned");
check(RECORD_HEADER_BYTES % RECORD_ALIGNMENT_BYTES === 0, "record header is not aligned");
check(CHECKPOINT_FIXED_BYTES + COOKIE_SIZE_BYTES_MAX <= CHECKPOINT_SLOT_BYTES, "cookie overflows");
check(ENTRY_SIZE_BYTES_LIMIT + RECORD_HEADER_BYTES < 2 ** 32, "length does not fit 32 bits");
check(SEGMENT_SIZE_BYTES_MAX <= ADDRESS_LIMIT, "segment larger than the address space");
check(new Uint8Array(new Uint32Array([1]).buffer)[0] === 1, "hybridlog needs a little-endian CPU");
