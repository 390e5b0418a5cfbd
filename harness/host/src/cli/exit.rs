//! Exit codes: every verdict passed (or skipped) / some test failed / the run could not happen.

use crate::judge::verdict::Verdict;
use anyhow::Result;

pub const EXIT_PASS: i32 = 0;
pub const EXIT_FAIL: i32 = 1;
pub const EXIT_UNABLE: i32 = 2;

/// [`EXIT_FAIL`] when any verdict is a failure, else [`EXIT_PASS`].
pub fn exit_code(verdicts: &[Verdict]) -> i32 {
    if verdicts.iter().any(|v| v.outcome.is_failure()) {
        EXIT_FAIL
    } else {
        EXIT_PASS
    }
}

/// A command's code, or its error printed and [`EXIT_UNABLE`].
pub fn code_or_unable(result: Result<i32>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_UNABLE
        }
    }
}
