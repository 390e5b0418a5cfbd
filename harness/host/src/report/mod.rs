//! Reports: the run's verdicts for people (`human`) and, beside it, for machines. Every writer
//! works from the same typed run events and verdicts; none knows anything about VMs.

pub mod html;
pub mod human;
pub mod json;
pub mod junit;
pub mod ktap;

pub use human::Human;

use crate::verdict::{Outcome, Verdict};

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
