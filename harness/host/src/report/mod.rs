//! Reports: the run's verdicts for people (`human`) and, beside it, for machines. Every writer
//! works from the same typed run events and verdicts; none knows anything about VMs.

pub mod html;
pub mod human;
pub mod json;
pub mod junit;
pub mod ktap;

pub use human::Human;

use crate::judge::verdict::{Outcome, Verdict};
use std::fmt::Write as _;

/// Where [`escape_markup`]'s text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Markup {
    /// XML character data.
    XmlText,
    /// An XML attribute value in double quotes: newlines and tabs as character references too,
    /// so that readers do not normalise them into spaces.
    XmlAttribute,
    /// HTML element content or a quoted attribute value.
    Html,
}

/// Untrusted text (kernel and module output) made safe for `how`. Control characters and what
/// XML 1.0 forbids even as a reference (NUL, ESC, U+FFFE, ...) are shown the way /dev/kmsg escapes
/// bytes (`\x1b`), so they neither reach a reader raw nor vanish.
pub(crate) fn escape_markup(text: &str, how: Markup) -> String {
    let quoted = how != Markup::XmlText;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quoted => out.push_str("&quot;"),
            '\'' if how == Markup::Html => out.push_str("&#39;"),
            '\n' if how == Markup::XmlAttribute => out.push_str("&#10;"),
            '\t' if how == Markup::XmlAttribute => out.push_str("&#9;"),
            // A literal carriage return would be turned into a newline by any XML reader.
            '\r' => out.push_str("&#13;"),
            '\n' | '\t' => out.push(c),
            c if c.is_control() || !allowed_in_xml(c) => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// XML 1.0's `Char` production, less the three whitespace characters handled apart.
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Tallies that add up: `total = passed + failed + skipped`; `crashed`, `timed_out` and
/// `errored` are the parts of `failed` that were not plain assertion failures. Every report counts
/// with this.
#[derive(serde::Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub crashed: usize,
    pub timed_out: usize,
    pub errored: usize,
}

impl Counts {
    pub fn of<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Counts {
        let mut counts = Counts::default();
        for verdict in verdicts {
            counts.total += 1;
            match verdict.outcome {
                Outcome::Pass => counts.passed += 1,
                Outcome::Skip => counts.skipped += 1,
                Outcome::Fail => {}
                Outcome::Crash => counts.crashed += 1,
                Outcome::Timeout => counts.timed_out += 1,
                Outcome::Error => counts.errored += 1,
            }
            if verdict.outcome.is_failure() {
                counts.failed += 1;
            }
        }
        counts
    }
}

/// `3 passed, 1 failed, 0 skipped`, then what the failures were when any crashed, timed out or errored.
pub fn summary_line(verdicts: &[Verdict]) -> String {
    let counts = Counts::of(verdicts);
    let mut line = format!(
        "{} passed, {} failed, {} skipped",
        counts.passed, counts.failed, counts.skipped
    );
    let kinds: Vec<String> = [
        (counts.crashed, "crashed"),
        (counts.timed_out, "timed out"),
        (counts.errored, "errored"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, word)| format!("{n} {word}"))
    .collect();
    if !kinds.is_empty() {
        line.push_str(&format!(" ({})", kinds.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(outcome: Outcome) -> Verdict {
        crate::test_support::verdict("m", "t", outcome, "")
    }

    #[test]
    fn the_summary_counts_every_verdict_once() {
        let all = [
            Outcome::Pass,
            Outcome::Pass,
            Outcome::Fail,
            Outcome::Crash,
            Outcome::Timeout,
            Outcome::Skip,
            Outcome::Error,
        ];
        let verdicts: Vec<Verdict> = all.iter().map(|o| verdict(*o)).collect();
        assert_eq!(
            summary_line(&verdicts),
            "2 passed, 4 failed, 1 skipped (1 crashed, 1 timed out, 1 errored)"
        );
        assert_eq!(
            summary_line(&verdicts[..2]),
            "2 passed, 0 failed, 0 skipped"
        );
    }
}
