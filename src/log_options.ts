/**
 * The options every log shares (directory, durability, segment and buffer sizes, checkpoint
 * interval, device), checked once for `AppendLog` and `ConsensusLog` alike.
 *
 * @module
 */
import { resolve } from "node:path";
import {
  BUFFER_SIZE_BYTES_DEFAULT,
  BUFFER_SIZE_BYTES_MIN,
  CHECKPOINT_INTERVAL_BYTES_DEFAULT,
  SEGMENT_SIZE_BYTES_DEFAULT,
  SEGMENT_SIZE_BYTES_MAX,
  SEGMENT_SIZE_BYTES_MIN,
} from "./constants.ts";
import type { Device } from "./device.ts";
import { InvalidArgumentError } from "./errors.ts";
import { fsDevice } from "./fs_device.ts";
import { checkMetrics, type Metrics } from "./metrics.ts";
import type { Durability, TailOptions } from "./tail.ts";
import { checkChoice, checkFlag, checkSizeOption } from "./validate.ts";

/** Options shared by every log. */
export interface CommonLogOptions {
  dir: string;
  durability?: Durability;
  segmentSizeBytes?: number;
  bufferSizeBytes?: number;
  checkpointIntervalBytes?: number;
  inlineSync?: boolean;
  zeroFillSegments?: boolean;
  device?: Device;
  metrics?: Metrics;
}

/** Checks the shared options (throwing `InvalidArgumentError`) and fills in defaults. */
export function checkLogOptions(
  what: string,
  options: CommonLogOptions,
): TailOptions {
  if (typeof options?.dir !== "string" || options.dir === "") {
    throw new InvalidArgumentError(`Cannot ${what}: dir must be a non-empty string`);
  }
  return {
    inlineSync: checkFlag(what, "inlineSync", options.inlineSync, false),
    zeroFillSegments: checkFlag(what, "zeroFillSegments", options.zeroFillSegments, false),
    dir: resolve(options.dir),
    device: options.device ?? fsDevice,
    metrics: checkMetrics(what, options.metrics),
    durability: checkChoice(what, "durability", options.durability, "data", [
      "none",
      "data",
      "full",
    ]),
    segmentSizeBytes: checkSizeOption(
      what,
      "segmentSizeBytes",
      options.segmentSizeBytes,
      SEGMENT_SIZE_BYTES_DEFAULT,
      SEGMENT_SIZE_BYTES_MIN,
      SEGMENT_SIZE_BYTES_MAX,
      true,
    ),
    bufferSizeBytes: checkSizeOption(
      what,
      "bufferSizeBytes",
      options.bufferSizeBytes,
      BUFFER_SIZE_BYTES_DEFAULT,
      BUFFER_SIZE_BYTES_MIN,
      SEGMENT_SIZE_BYTES_MAX,
    ) & ~7,
    checkpointIntervalBytes: checkSizeOption(
      what,
      "checkpointIntervalBytes",
      options.checkpointIntervalBytes,
      CHECKPOINT_INTERVAL_BYTES_DEFAULT,
      0,
      Number.MAX_SAFE_INTEGER,
    ),
  };
}
