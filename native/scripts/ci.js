// The one rule every test suite and the native test runner follow for optional test
// dependencies (python + torch/transformers/peft, the native addon, the GEMM libraries):
// under CI they must be there, so a missing one fails; elsewhere the tests that need it skip
// and print why. "Under CI" means CI is set to anything but '', 'false' or '0' (any case):
// CI=true, CI=1 and CI=yes all count.

/** Whether `ci` (process.env.CI by default) means "under CI: everything must run". */
export function mustRun(ci = process.env.CI) {
  const v = (ci ?? '').trim().toLowerCase()
  return v !== '' && v !== 'false' && v !== '0'
}

/** For a dependency that is missing: under CI throws (the caller fails), elsewhere prints
 *  "<what> SKIPPED: <reason>" to stderr and returns false (the caller skips). */
export function requireOrSkip(what, reason, ci = process.env.CI) {
  if (mustRun(ci)) throw new Error(`${what}: required under CI (CI=${JSON.stringify(ci)}), but ${reason}`)
  console.warn(`${what} SKIPPED: ${reason} (under CI, i.e. CI set to anything but ''/false/0, this fails)`)
  return false
}
