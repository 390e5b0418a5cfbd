//! Which lines of a verdict show its failure, marked by the judge so that reports point at them
//! without judging again: kernel failure markers, KTAP cases that failed, the line a reason quotes,
//! and the lines of the crash report its details carry.

use super::oops;
use super::verdict::Verdict;
use kmodlab_protocol::ktap::{classify, strip_prefixes, strip_timestamp, Line};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Indices of a verdict's lines that are its evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Lines of its `log` that show the failure: a kernel failure marker, a KTAP case that
    /// failed, the line its reason quotes.
    #[serde(default)]
    pub log: Vec<usize>,
    /// Other lines of its `log` that belong to the crash report in its `details`.
    #[serde(default)]
    pub report: Vec<usize>,
    /// Lines of its `details` that are failure markers or failed KTAP cases.
    #[serde(default)]
    pub details: Vec<usize>,
    /// Its `records` with a line that shows the failure (not kept in JSON, as the records are not).
    #[serde(skip)]
    pub records: Vec<usize>,
}

impl Evidence {
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
            && self.report.is_empty()
            && self.details.is_empty()
            && self.records.is_empty()
    }

    /// The evidence in a verdict's lines.
    pub fn of(verdict: &Verdict) -> Evidence {
        let report: HashSet<&str> = verdict
            .details
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        // The reason of a failing verdict; a forbidden line or the kernel's word on a refused load
        // ends it.
        let reason = (verdict.outcome.is_failure() && !verdict.reason.is_empty())
            .then_some(verdict.reason.as_str());
        let shows_failure = |line: &str| is_failure_line(line) || quotes(reason, line);
        let mut evidence = Evidence::default();
        for (i, line) in verdict.log.iter().enumerate() {
            if shows_failure(line) {
                evidence.log.push(i);
            } else if report.contains(strip_timestamp(line).trim()) {
                evidence.report.push(i);
            }
        }
        evidence.details = indices(verdict.details.iter().map(|l| is_failure_line(l)));
        evidence.records = indices(verdict.records.iter().map(|r| r.lines().any(shows_failure)));
        evidence
    }
}

fn indices(flags: impl Iterator<Item = bool>) -> Vec<usize> {
    flags
        .enumerate()
        .filter_map(|(i, flag)| flag.then_some(i))
        .collect()
}

/// A kernel failure marker or a KTAP case that failed.
fn is_failure_line(line: &str) -> bool {
    oops::is_marker(line)
        || matches!(
            classify(line),
            Line::TestResult {
                ok: false,
                directive: None,
                ..
            }
        )
}

/// Whether `reason` quotes `line`: a forbidden line, the kernel's word on a refused load, or a
/// KTAP diagnostic (`# case: check failed ...`) without its `#`.
fn quotes(reason: Option<&str>, line: &str) -> bool {
    let Some(reason) = reason else {
        return false;
    };
    let text = strip_timestamp(line).trim();
    let said = strip_prefixes(line).trim().trim_start_matches('#').trim();
    // Short texts would match too much of a reason by chance.
    [text, said]
        .iter()
        .any(|t| t.len() >= 8 && reason.ends_with(t))
}
