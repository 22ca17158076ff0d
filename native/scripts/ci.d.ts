/** Whether `ci` (process.env.CI by default) means "under CI: everything must run":
 *  any value but '', 'false' or '0' (any case). */
export function mustRun(ci?: string): boolean
/** Under CI throws naming `what` and `reason`; elsewhere prints why `what` is skipped and returns false. */
export function requireOrSkip(what: string, reason: string, ci?: string): false
