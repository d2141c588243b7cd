/**
 * Argument checks shared by the public classes. Each throws `InvalidArgumentError` with a message
 * that says what was attempted and what was wrong, before anything is changed.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { InvalidArgumentError } from "./errors.ts";

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return `a ${(value as object).constructor?.name ?? "object"}`;
  return `${typeof value} ${String(value)}`;
}

/** Checks `value` is a `Uint8Array` of at most `lengthMax` bytes. */
export function checkBytes(
  what: string,
  name: string,
  value: unknown,
  lengthMax: number,
): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(
      `Cannot ${what}: ${name} must be a Uint8Array, got ${describe(value)}`,
    );
  }
  if (value.length > lengthMax) {
    throw new InvalidArgumentError(
      `Cannot ${what}: ${name} is ${value.length} bytes, the limit is ${lengthMax}`,
    );
  }
  return value;
}

/** Checks `value` is a non-negative safe integer. */
export function checkIndex(what: string, name: string, value: unknown): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(
      `Cannot ${what}: ${name} must be a non-negative safe integer, got ${describe(value)}`,
    );
  }
  return value;
}

/** Checks an optional integer option lies in `[min, max]` (and is a power of two if asked). */
export function checkSizeOption(
  what: string,
  name: string,
  value: unknown,
  fallback: number,
  min: number,
  max: number,
  powerOfTwo = false,
): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `Cannot ${what}: ${name} must be an integer from ${min} to ${max}, got ${describe(value)}`,
    );
  }
  if (powerOfTwo && (value & (value - 1)) !== 0) {
    throw new InvalidArgumentError(`Cannot ${what}: ${name} must be a power of two, got ${value}`);
  }
  return value;
}

/** Checks an optional boolean option; `fallback` when it is absent. */
export function checkFlag(what: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== "boolean") {
    throw new InvalidArgumentError(`Cannot ${what}: ${name} must be a boolean`);
  }
  return value;
}

/** Checks a value is one of `choices`. */
export function checkChoice<T extends string>(
  what: string,
  name: string,
  value: unknown,
  fallback: T,
  choices: readonly T[],
): T {
  if (value === undefined) return fallback;
  if (!choices.includes(value as T)) {
    throw new InvalidArgumentError(
      `Cannot ${what}: ${name} must be one of ${choices.map((c) => `"${c}"`).join(", ")}, got ${
        describe(value)
      }`,
    );
  }
  return value as T;
}

/** Resolves on a later macrotask: timers and I/O completions due meanwhile run first. */
export function nextTurn(): Promise<void> {
  return new Promise((done) => setImmediate(done));
}

/**
 * Runs `work` now, on the caller's turn (so its effect is ordered with the caller's other calls),
 * and returns its result as a promise; a synchronous throw becomes a rejection.
 */
export function runNow<T>(work: () => T | Promise<T>): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (error) {
    return Promise.reject(error);
  }
}
