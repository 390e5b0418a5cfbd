//! Output for KTAP readers (`--format ktap`): the verdicts as one KTAP version 1 document, in the
//! shape KUnit prints, so that `kunit.py parse` and other KTAP tools read it.
//!
//! Each module is a subtest (`# Subtest: hello`) holding one result per test; the module's own
//! result line follows. KTAP knows only `ok` and `not ok`, so the verdict's kind (FAIL, ERROR,
//! CRASH, TIMEOUT) and reason go in a `#` diagnostic just before its `not ok`, as KUnit does with
//! its assertion messages. In this mode stdout carries nothing but the document: progress and
//! notices go to stderr.

use super::summary_line;
use crate::judge::verdict::{Outcome, Verdict};
use crate::run::RunEvent;
use std::fmt::Write as _;
use std::io::Write as _;

/// KUnit indents each nesting level by four spaces; `kunit.py` accepts any indent, we match KUnit.
const INDENT: &str = "    ";

/// The verdicts grouped by module, modules in the order they first appear, tests in their order.
pub fn by_module(verdicts: &[Verdict]) -> Vec<(&str, Vec<&Verdict>)> {
    let mut groups: Vec<(&str, Vec<&Verdict>)> = Vec::new();
    for verdict in verdicts {
        match groups.iter_mut().find(|(m, _)| *m == verdict.module) {
            Some((_, tests)) => tests.push(verdict),
            None => groups.push((verdict.module.as_str(), vec![verdict])),
        }
    }
    groups
}

/// The whole KTAP document. `verbose` adds each test's kernel log as diagnostics.
pub fn document(verdicts: &[Verdict], verbose: bool) -> String {
    let modules = by_module(verdicts);
    let mut out = String::new();
    out.push_str("KTAP version 1\n");
    let _ = writeln!(out, "1..{}", modules.len());
    for (number, (module, tests)) in modules.iter().enumerate() {
        let number = number + 1;
        let _ = writeln!(out, "{INDENT}KTAP version 1");
        let _ = writeln!(out, "{INDENT}# Subtest: {}", name(module));
        let _ = writeln!(out, "{INDENT}1..{}", tests.len());
        for (case, verdict) in tests.iter().enumerate() {
            write_case(&mut out, case + 1, verdict, verbose);
        }
        let failed = tests.iter().any(|v| v.outcome.is_failure());
        let all_skipped = tests.iter().all(|v| v.outcome == Outcome::Skip);
        let line = if failed {
            format!("not ok {number} {}", name(module))
        } else if all_skipped {
            format!("ok {number} {} # SKIP", name(module))
        } else {
            format!("ok {number} {}", name(module))
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn write_case(out: &mut String, number: usize, v: &Verdict, verbose: bool) {
    let test = name(&v.test);
    let mut diagnostics: Vec<String> = Vec::new();
    if v.outcome.is_failure() {
        let reason = if v.reason.is_empty() {
            "(no reason recorded)"
        } else {
            v.reason.as_str()
        };
        diagnostics.push(format!("{test}: {}: {}", v.outcome.label(), reason));
        diagnostics.extend(v.details.iter().map(|d| format!("  {d}")));
    }
    if verbose && !v.log.is_empty() {
        diagnostics.push(format!("{test}: kernel log of this test:"));
        diagnostics.extend(v.log.iter().map(|l| format!("> {l}")));
    }
    for line in diagnostics {
        let _ = writeln!(out, "{INDENT}# {}", clean(&line));
    }
    let result = match v.outcome {
        Outcome::Pass => format!("ok {number} {test}"),
        Outcome::Skip => format!("ok {number} {test} # SKIP {}", clean(&v.reason)),
        Outcome::Fail | Outcome::Error | Outcome::Crash | Outcome::Timeout => {
            format!("not ok {number} {test}")
        }
    };
    let _ = writeln!(out, "{INDENT}{}", result.trim_end());
}

/// A test or module name as a KTAP description: `#` would start a directive, so it becomes `_`.
fn name(text: &str) -> String {
    let cleaned = clean(text).replace('#', "_");
    if cleaned.trim().is_empty() {
        "unnamed".to_string()
    } else {
        cleaned
    }
}

/// One line of text that cannot break the document: control characters (kernel logs have them)
/// are shown as `\xNN`, so no stray newline or escape sequence reaches the reader.
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\t' {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// The KTAP view of a run: progress a person needs goes to stderr, the document to stdout.
pub struct Ktap {
    verbose: bool,
}

impl Ktap {
    pub fn new(verbose: bool) -> Self {
        Ktap { verbose }
    }

    /// Tells stderr what a person would otherwise miss: notices and compiler warnings.
    pub fn on_event(&mut self, event: &RunEvent) {
        let line = match event {
            RunEvent::Notice(text) => format!("note    {text}"),
            RunEvent::ModuleBuilt(build) if !build.warnings.trim().is_empty() => format!(
                "module  {}: compiler warnings:\n{}",
                build.module,
                build.warnings.trim_end()
            ),
            RunEvent::RunFolder(dir) => format!("run folder: {}", dir.display()),
            _ => return,
        };
        eprintln!("{line}");
    }

    /// Prints the document on stdout and the closing summary on stderr. Through `print!`, as
    /// the human view does, so that tests capture it.
    pub fn finish(&mut self, verdicts: &[Verdict]) {
        print!("{}", document(verdicts, self.verbose));
        let _ = std::io::stdout().flush();
        eprintln!("{}", summary_line(verdicts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::ktap;

    use crate::test_support::{verdict, warn_init_crash};

    fn sample() -> Vec<Verdict> {
        let crash = warn_init_crash(
            "WARNING: CPU: 0 PID: 36 at warn_init.c:12 warn_init_trigger+0x0/0x10",
            "[    1.0] esc \u{1b}[31m # not a directive",
        );
        vec![
            verdict("hello", "greets", Outcome::Pass, ""),
            verdict(
                "ktap_fail",
                "reports_not_ok",
                Outcome::Fail,
                "not ok 2 arithmetic_is_broken: check failed",
            ),
            crash,
            verdict(
                "hello",
                "params",
                Outcome::Skip,
                "the kernel lacks CONFIG_RUST",
            ),
            verdict(
                "init_hang",
                "hangs",
                Outcome::Timeout,
                "load: init_hang's init did not return within 3s",
            ),
            verdict(
                "init_enodev",
                "fails",
                Outcome::Error,
                "load init_enodev: ENODEV",
            ),
        ]
    }

    #[test]
    fn modules_are_subtests_and_tests_their_cases() {
        let text = document(&sample(), false);
        let expected_start = "\
KTAP version 1
1..5
    KTAP version 1
    # Subtest: hello
    1..2
    ok 1 greets
    ok 2 params # SKIP the kernel lacks CONFIG_RUST
ok 1 hello
    KTAP version 1
    # Subtest: ktap_fail
    1..1
    # reports_not_ok: FAIL: not ok 2 arithmetic_is_broken: check failed
    not ok 1 reports_not_ok
not ok 2 ktap_fail
";
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.contains(
            "    # warns: CRASH: WARNING in warn_init_trigger\n    #   ------------[ cut here ]"
        ));
        assert!(
            text.ends_with("    not ok 1 fails\nnot ok 5 init_enodev\n"),
            "{text}"
        );
    }

    #[test]
    fn the_document_parses_back_to_the_same_counts() {
        let verdicts = sample();
        for verbose in [false, true] {
            let docs = ktap::parse_text(&document(&verdicts, verbose));
            assert_eq!(docs.len(), 1, "one document");
            let doc = &docs[0];
            assert!(doc.complete);
            assert_eq!(
                doc.counts(),
                ktap::Counts {
                    passed: 1,
                    failed: 4,
                    skipped: 1
                }
            );
            let paths: Vec<String> = doc.failures().into_iter().map(|f| f.path).collect();
            assert_eq!(
                paths,
                [
                    "ktap_fail.reports_not_ok",
                    "warn_init.warns",
                    "init_hang.hangs",
                    "init_enodev.fails"
                ]
            );
            let crash = &doc.failures()[1];
            assert!(
                crash.reason.contains("CRASH: WARNING in warn_init_trigger"),
                "{crash:?}"
            );
        }
    }

    #[test]
    fn control_bytes_and_hashes_cannot_break_lines() {
        let mut v = verdict("m#1", "t\nx", Outcome::Fail, "bad\rreason\u{7}");
        v.log = vec!["a\u{0}b".into()];
        let text = document(&[v], true);
        assert!(!text.contains('\r') && !text.contains('\u{7}') && !text.contains('\u{0}'));
        assert!(text.contains("# Subtest: m_1\n"));
        assert!(text.contains("not ok 1 t\\x0ax\n"));
        assert!(text.contains("# t\\x0ax: FAIL: bad\\x0dreason\\x07\n"));
        assert!(text.contains("# > a\\x00b\n"));
        assert_eq!(ktap::parse_text(&text)[0].counts().failed, 1);
    }

    #[test]
    fn an_all_skipped_module_is_skipped_and_an_empty_run_is_an_empty_plan() {
        let text = document(
            &[verdict("rust_hello", "tsc", Outcome::Skip, "no rust")],
            false,
        );
        assert!(text.ends_with("ok 1 rust_hello # SKIP\n"), "{text}");
        assert_eq!(document(&[], false), "KTAP version 1\n1..0\n");
    }
}
