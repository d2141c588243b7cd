/**
 * The state model behind `MemoryDevice`: files (current bytes, durable bytes, unsynced pages),
 * directories (current and durable entries), and the two ways a machine loses state: a process
 * crash (everything in memory survives) and a power loss (only what reached the disk survives).
 *
 * @module
 */
import { IoError } from "./errors.ts";

/** Unit of write-back: a page of the page cache (4 KiB on x86-64 and most arm64 kernels). */
export const MEMORY_PAGE_BYTES = 4096;
/** Unit a disk writes atomically: a 512-byte sector, what a torn page keeps whole. */
export const MEMORY_SECTOR_BYTES = 512;

/**
 * What a power loss keeps of the unsynced state:
 * - `"drop"`: nothing; every unsynced page, size change and directory change is lost.
 * - `"random-pages"`: a seeded random subset of unsynced pages persists; each file's unsynced size
 *   and each directory's unsynced entries persist or not as a whole (renames stay atomic).
 * - `"torn-sector"`: like `"drop"`, but the last page written before the loss keeps its first
 *   one to seven 512-byte sectors (a write torn inside a page).
 */
export type PowerLossMode = "drop" | "random-pages" | "torn-sector";

interface DirtyPage {
  /** Device-wide order of the change, to find the last page written. */
  readonly sequence: number;
  /** True for a `write`, false for bytes zeroed by a truncate. */
  readonly written: boolean;
}

/** One file: what readers see, what is durable, and which pages differ. */
export class Inode {
  readonly buffer: ArrayBuffer;
  /** Length-tracking view of `buffer`: the current bytes, zero past `sizeBytes`. */
  readonly bytes: Uint8Array;
  sizeBytes = 0;
  durable: Uint8Array = new Uint8Array(0);
  durableSizeBytes = 0;
  dirty = new Map<number, DirtyPage>();
  readonly sizeBytesMax: number;

  constructor(sizeBytesMax: number) {
    this.sizeBytesMax = sizeBytesMax;
    this.buffer = new ArrayBuffer(0, { maxByteLength: sizeBytesMax });
    this.bytes = new Uint8Array(this.buffer);
  }

  /** Grows the buffer in place (views stay valid) to hold `lengthBytes`, or throws `EFBIG`. */
  reserve(lengthBytes: number, syscall: string, path: string): void {
    if (lengthBytes <= this.buffer.byteLength) return;
    if (lengthBytes > this.sizeBytesMax) throw new IoError(syscall, "EFBIG", path);
    const doubled = Math.max(this.buffer.byteLength * 2, MEMORY_PAGE_BYTES);
    this.buffer.resize(Math.min(Math.max(roundUpToPage(lengthBytes), doubled), this.sizeBytesMax));
  }

  markDirty(fromBytes: number, toBytes: number, sequence: number, written: boolean): void {
    const last = Math.ceil(toBytes / MEMORY_PAGE_BYTES);
    for (let page = Math.floor(fromBytes / MEMORY_PAGE_BYTES); page < last; page++) {
      this.dirty.set(page, { sequence, written });
    }
  }

  /** What a sync called now makes durable: the size and a copy of every dirty page. */
  snapshot(): FileSnapshot {
    const pages: FileSnapshot["pages"] = [];
    for (const [index, page] of this.dirty) {
      const start = index * MEMORY_PAGE_BYTES;
      const end = Math.min(start + MEMORY_PAGE_BYTES, this.sizeBytes);
      pages.push({ index, sequence: page.sequence, bytes: this.bytes.slice(start, end) });
    }
    return { sizeBytes: this.sizeBytes, pages };
  }

  /** Makes a snapshot durable; pages changed again since it was taken stay dirty. */
  apply(snapshot: FileSnapshot): void {
    const sizeBytes = snapshot.sizeBytes;
    if (this.durable.length < sizeBytes) {
      const grown = new Uint8Array(roundUpToPage(sizeBytes));
      grown.set(this.durable.subarray(0, this.durableSizeBytes));
      this.durable = grown;
    }
    for (const page of snapshot.pages) {
      // A page wholly past the synced size holds no bytes: it is clean by being cut off.
      if (page.bytes.length > 0) this.durable.set(page.bytes, page.index * MEMORY_PAGE_BYTES);
      if (this.dirty.get(page.index)?.sequence === page.sequence) this.dirty.delete(page.index);
    }
    // Bytes past the durable size are not part of the file; keep them zero for a later growth.
    this.durable.fill(0, sizeBytes);
    this.durableSizeBytes = sizeBytes;
  }

  copy(): Inode {
    const inode = new Inode(this.sizeBytesMax);
    inode.reserve(this.sizeBytes, "copy", "");
    inode.bytes.set(this.bytes.subarray(0, this.sizeBytes));
    inode.sizeBytes = this.sizeBytes;
    inode.durable = this.durable.slice();
    inode.durableSizeBytes = this.durableSizeBytes;
    inode.dirty = new Map(this.dirty);
    return inode;
  }
}

/** What a sync makes durable, captured when it is called. */
export interface FileSnapshot {
  sizeBytes: number;
  pages: Array<{ index: number; sequence: number; bytes: Uint8Array }>;
}

/** One directory: its entries now, and as they were at its last sync. */
export class Directory {
  entries = new Map<string, Node>();
  durableEntries = new Map<string, Node>();

  get synced(): boolean {
    if (this.entries.size !== this.durableEntries.size) return false;
    for (const [name, node] of this.entries) {
      if (this.durableEntries.get(name) !== node) return false;
    }
    return true;
  }
}

/** A file or a directory. */
export type Node = Inode | Directory;

/** `lengthBytes` rounded up to whole pages. */
export function roundUpToPage(lengthBytes: number): number {
  return Math.ceil(lengthBytes / MEMORY_PAGE_BYTES) * MEMORY_PAGE_BYTES;
}

/** mulberry32: small, seedable, good enough to pick pages. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A deep copy of the tree under `root`, current and durable state alike (a process crash). */
export function copyTree(root: Directory): Directory {
  const copies = new Map<Node, Node>();
  const copy = (node: Node): Node => {
    let copied = copies.get(node);
    if (copied !== undefined) return copied;
    if (node instanceof Inode) {
      copied = node.copy();
      copies.set(node, copied);
      return copied;
    }
    const directory = new Directory();
    copies.set(node, directory);
    for (const [name, child] of node.entries) directory.entries.set(name, copy(child));
    for (const [name, child] of node.durableEntries) {
      directory.durableEntries.set(name, copy(child));
    }
    return directory;
  };
  return copy(root) as Directory;
}

/**
 * The tree a power loss leaves of `root`: durable state, plus what `mode` lets persist of the
 * unsynced state, chosen with `random`. Everything in the result is durable.
 */
export function survivingTree(
  root: Directory,
  mode: PowerLossMode,
  random: () => number,
  persistPage?: (path: string, pageIndex: number) => boolean,
): Directory {
  const torn = mode === "torn-sector" ? lastWrittenPage(root, random) : undefined;
  const survivors = new Map<Node, Node>();

  const surviveFile = (inode: Inode, path: string): Inode => {
    let sizeBytes = inode.durableSizeBytes;
    if (mode === "random-pages" && inode.sizeBytes !== sizeBytes && random() < 0.5) {
      sizeBytes = inode.sizeBytes;
    }
    const next = new Inode(inode.sizeBytesMax);
    next.reserve(sizeBytes, "copy", "");
    next.sizeBytes = sizeBytes;
    next.bytes.set(inode.durable.subarray(0, Math.min(sizeBytes, inode.durableSizeBytes)));
    const persist = (start: number, end: number) => {
      next.bytes.set(inode.bytes.subarray(start, Math.min(end, sizeBytes)), start);
    };
    if (mode === "random-pages") {
      for (const index of [...inode.dirty.keys()].sort((a, b) => a - b)) {
        const start = index * MEMORY_PAGE_BYTES;
        const persists = persistPage ? persistPage(path, index) : random() < 0.5;
        if (persists && start < sizeBytes) persist(start, start + MEMORY_PAGE_BYTES);
      }
    }
    if (torn?.inode === inode) {
      const start = torn.index * MEMORY_PAGE_BYTES;
      if (start < sizeBytes) persist(start, start + torn.sectors * MEMORY_SECTOR_BYTES);
    }
    next.durable = next.bytes.slice(0, sizeBytes);
    next.durableSizeBytes = sizeBytes;
    return next;
  };

  const survive = (node: Node, path: string): Node => {
    const known = survivors.get(node);
    if (known !== undefined) return known;
    if (node instanceof Inode) {
      const next = surviveFile(node, path);
      survivors.set(node, next);
      return next;
    }
    const directory = new Directory();
    survivors.set(node, directory);
    const entries = mode === "random-pages" && !node.synced && random() < 0.5
      ? node.entries
      : node.durableEntries;
    for (const name of [...entries.keys()].sort()) {
      directory.entries.set(name, survive(entries.get(name)!, `${path}/${name}`));
    }
    directory.durableEntries = new Map(directory.entries);
    return directory;
  };
  return survive(root, "") as Directory;
}

/** The page most recently changed by a write that reached no sync, in a durable file. */
function lastWrittenPage(
  root: Directory,
  random: () => number,
): { inode: Inode; index: number; sectors: number } | undefined {
  let found: { inode: Inode; index: number; sequence: number } | undefined;
  const seen = new Set<Node>();
  const visit = (directory: Directory) => {
    for (const node of directory.durableEntries.values()) {
      if (seen.has(node)) continue;
      seen.add(node);
      if (node instanceof Directory) {
        visit(node);
        continue;
      }
      for (const [index, page] of node.dirty) {
        if (page.written && page.sequence > (found?.sequence ?? 0)) {
          found = { inode: node, index, sequence: page.sequence };
        }
      }
    }
  };
  visit(root);
  if (found === undefined) return undefined;
  const sectorsPerPage = MEMORY_PAGE_BYTES / MEMORY_SECTOR_BYTES;
  const sectors = 1 + Math.floor(random() * (sectorsPerPage - 1));
  return { inode: found.inode, index: found.index, sectors };
}
