// A device that forwards every call to another one, for tests that change only a few calls of
// each file (hold syncs, skip truncations): subclasses override `wrapFile`.
import type { Device, DeviceFile, DirectoryLock, OpenOptions } from "../src/device.ts";

/** Every call of `file`, with `overrides` in place of some. */
export function forwardingFile(file: DeviceFile, overrides: Partial<DeviceFile> = {}): DeviceFile {
  return {
    path: file.path,
    sizeBytes: () => file.sizeBytes(),
    write: (bytes, position) => file.write(bytes, position),
    writeAsync: (bytes, position) => file.writeAsync(bytes, position),
    read: (into, position) => file.read(into, position),
    allocate: (offset, length) => file.allocate(offset, length),
    truncate: (length) => file.truncate(length),
    sync: (mode) => file.sync(mode),
    syncNow: (mode) => file.syncNow(mode),
    view: (length) => file.view(length),
    close: () => file.close(),
    ...overrides,
  };
}

/** Forwards everything to `inner`; files go through {@linkcode WrappingDevice.wrapFile}. */
export class WrappingDevice implements Device {
  readonly name: string;
  protected readonly inner: Device;

  constructor(name: string, inner: Device) {
    this.name = name;
    this.inner = inner;
  }

  makeDirectory(path: string): string[] {
    return this.inner.makeDirectory(path);
  }
  list(path: string): string[] {
    return this.inner.list(path);
  }
  exists(path: string): boolean {
    return this.inner.exists(path);
  }
  rename(from: string, to: string): void {
    this.inner.rename(from, to);
  }
  remove(path: string): void {
    this.inner.remove(path);
  }
  syncDirectory(path: string): Promise<void> {
    return this.inner.syncDirectory(path);
  }
  syncDirectoryNow(path: string): void {
    this.inner.syncDirectoryNow(path);
  }
  lock(path: string): DirectoryLock {
    return this.inner.lock(path);
  }
  open(path: string, options?: OpenOptions): DeviceFile {
    return this.wrapFile(this.inner.open(path, options), path);
  }

  /** The file handed to the log; the default forwards every call. */
  protected wrapFile(file: DeviceFile, _path: string): DeviceFile {
    return forwardingFile(file);
  }
}
