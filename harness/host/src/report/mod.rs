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

/// `3 passed, 1 failed, 0 skipped`, then what the failures were when any crashed, timed out or errored.
pub fn summary_line(verdicts: &[Verdict]) -> String {
    let count = |f: &dyn Fn(Outcome) -> bool| verdicts.iter().filter(|v| f(v.outcome)).count();
    let passed = count(&|o| o == Outcome::Pass);
    let skipped = count(&|o| o == Outcome::Skip);
    let failed = count(&|o| o.is_failure());
    let mut line = format!("{passed} passed, {failed} failed, {skipped} skipped");
    let kinds: Vec<String> = [
        (Outcome::Crash, "crashed"),
        (Outcome::Timeout, "timed out"),
        (Outcome::Error, "errored"),
    ]
    .iter()
    .filter_map(|(o, word)| {
        let n = count(&|x| x == *o);
        (n > 0).then(|| format!("{n} {word}"))
    })
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
