import { test } from "node:test";
import assert from "node:assert/strict";
// @ts-types="../scripts/_runners.d.mts"
import { denoCounts } from "../scripts/_runners.mjs";

// What `deno test` prints, colour removed: a describe() is a container whose steps are the tests.
const OUTPUT = `running 2 tests from ./test/a_test.ts
suite ...
  first ... ok (3ms)
  second ... FAILED (1ms)
  skipped one ... ignored (0ms)
suite ... FAILED (9ms)
lone leaf ... ok (1ms)
running 1 test from ./test/b_test.ts
io ...
  split leaf ...
------- post-test output -------
ls: cannot access '/proc/1/fd/35': No such file or directory
----- post-test output end -----
  split leaf ... ok (72ms)
  next leaf ... ok (2ms)
io ... ok (80ms)
split top-level leaf ...
------- post-test output -------
noise
----- post-test output end -----
split top-level leaf ... ok (5ms)

FAILED | 1 passed (5 steps) | 1 failed (1s)
`;

test("Deno's leaves are counted, a container's closing line is not, and output splitting a leaf's line loses nothing", () => {
  assert.deepEqual(denoCounts(OUTPUT), { passed: 5, failed: 1, skipped: 1 });
});
