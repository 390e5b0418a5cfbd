// SPDX-License-Identifier: GPL-2.0

//! KTAP version 1 output for Rust kernel modules (the twin of `kmodlab/ktap.h`).
//!
//! Include it from the module's crate root, next to which the harness places
//! the shared `include/` folder:
//!
//! ```ignore
//! #[path = "../include/kmodlab_ktap.rs"]
//! mod ktap;
//!
//! let mut t = ktap::Ktap::plan(2);         // "KTAP version 1" + "1..2"
//! t.check(1 + 1 == 2, "addition_works");   // "ok 1 addition_works"
//! t.diag(format_args!("x = {}", 42));      // "# x = 42"
//! t.skip("needs_avx", "no AVX here");      // "ok 2 needs_avx # SKIP no AVX here"
//! t.finish();                              // "# totals: ..."
//! ```
//!
//! Lines are printed with `pr_info!`, which puts the module name in front
//! (`rust_hello: ok 1 ...`).  kmodlab strips such a prefix before parsing;
//! other KTAP readers may need the same.  Test names must not contain `#`.

// Not every module uses every method.
#![allow(dead_code)]

use core::fmt;
use kernel::prelude::*;

/// The state of one KTAP document: counts results and numbers them.
pub(crate) struct Ktap {
    planned: u32,
    done: u32,
    failed: u32,
    skipped: u32,
}

impl Ktap {
    /// Starts a document of `planned` test cases (version line and plan).
    pub(crate) fn plan(planned: u32) -> Self {
        pr_info!("KTAP version 1\n");
        pr_info!("1..{}\n", planned);
        Ktap {
            planned,
            done: 0,
            failed: 0,
            skipped: 0,
        }
    }

    /// Prints the next result, `ok <n> <name>` or `not ok <n> <name>`,
    /// and returns `passed`.
    pub(crate) fn check(&mut self, passed: bool, name: &str) -> bool {
        self.done += 1;
        if passed {
            pr_info!("ok {} {}\n", self.done, name);
        } else {
            self.failed += 1;
            pr_info!("not ok {} {}\n", self.done, name);
        }
        passed
    }

    /// Records a case that was not run: `ok <n> <name> # SKIP <reason>`.
    pub(crate) fn skip(&mut self, name: &str, reason: &str) {
        self.done += 1;
        self.skipped += 1;
        pr_info!("ok {} {} # SKIP {}\n", self.done, name, reason);
    }

    /// Prints a diagnostic line, `# <text>`; build the text with `format_args!`.
    pub(crate) fn diag(&self, text: fmt::Arguments<'_>) {
        pr_info!("# {}\n", text);
    }

    /// Ends the document: a summary line, and a complaint if the number of
    /// results differs from the plan.  Returns the number of failed cases.
    pub(crate) fn finish(self) -> u32 {
        if self.done != self.planned {
            pr_info!(
                "# plan mismatch: planned {} cases, reported {}\n",
                self.planned,
                self.done
            );
        }
        pr_info!(
            "# totals: pass:{} fail:{} skip:{} total:{}\n",
            self.done - self.failed - self.skipped,
            self.failed,
            self.skipped,
            self.done
        );
        self.failed
    }
}
