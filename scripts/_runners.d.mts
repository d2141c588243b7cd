/** Types of the export of _runners.mjs that test/runners_test.ts uses. */
export function denoCounts(output: string): { passed: number; failed: number; skipped: number };
