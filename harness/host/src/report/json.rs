//! JSON (`--json FILE`): every verdict with everything kmodlab knows about it, and the run's own
//! facts, for scripts and dashboards. The verdict fields are [`Verdict`]'s own serialisation (the
//! run folder's `verdicts.json` has the same), plus `id` and `title`.

use super::Counts;
use crate::judge::verdict::{Outcome, Verdict};
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bumped when a field changes meaning or goes away; new fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// Facts about the run (or the parsed logs) as a whole.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The run folder `test` made, or the run folder `parse` read; `None` for plain logs.
    pub run_folder: Option<PathBuf>,
    pub kernel_release: Option<String>,
    pub vms: u32,
    pub duration: Duration,
    /// The VMs' CPU count, when known (`parse` of a plain log does not know it).
    pub cpus: Option<u32>,
}

impl RunInfo {
    /// The facts of a run `test` (or `watch`) just made.
    pub fn of(report: &crate::run::RunReport, kernel_release: Option<String>, cpus: u32) -> Self {
        RunInfo {
            run_folder: Some(report.run_dir.clone()),
            kernel_release,
            vms: report.vms,
            duration: report.duration,
            cpus: Some(cpus),
        }
    }
}

#[derive(Serialize)]
struct Document<'a> {
    schema_version: u32,
    kmodlab_version: &'static str,
    run_folder: Option<String>,
    kernel_release: Option<&'a str>,
    vms: u32,
    /// The VMs' CPU count, when known.
    cpus: Option<u32>,
    /// Seconds.
    duration: f64,
    counts: Counts,
    verdicts: Vec<Entry<'a>>,
}

#[derive(Serialize)]
struct Entry<'a> {
    /// `module/test`.
    id: String,
    /// The crash title (`WARNING in demo_exit`) for a CRASH, else null; the same text as `reason`.
    title: Option<&'a str>,
    #[serde(flatten)]
    verdict: &'a Verdict,
}

/// The document as pretty-printed JSON.
pub fn document(verdicts: &[Verdict], info: &RunInfo) -> Result<String> {
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        kmodlab_version: env!("CARGO_PKG_VERSION"),
        run_folder: info.run_folder.as_ref().map(|p| p.display().to_string()),
        kernel_release: info.kernel_release.as_deref(),
        vms: info.vms,
        cpus: info.cpus,
        duration: info.duration.as_secs_f64(),
        counts: Counts::of(verdicts),
        verdicts: verdicts
            .iter()
            .map(|v| Entry {
                id: v.id(),
                title: (v.outcome == Outcome::Crash).then_some(v.reason.as_str()),
                verdict: v,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).context("encoding the JSON report")
}

/// Writes the document to `path`.
pub fn write(path: &Path, verdicts: &[Verdict], info: &RunInfo) -> Result<()> {
    let text = document(verdicts, info)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("writing the JSON report {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(test: &str, outcome: Outcome, reason: &str) -> Verdict {
        Verdict {
            details: vec!["d1".into()],
            errno: (outcome == Outcome::Error).then_some(19),
            duration: Duration::from_millis(250),
            log: vec!["[    1.0] \u{1b}line".into()],
            ..crate::test_support::verdict("m", test, outcome, reason)
        }
    }

    #[test]
    fn every_field_is_there_and_counts_add_up() {
        let verdicts = vec![
            verdict("a", Outcome::Pass, ""),
            verdict("b", Outcome::Crash, "WARNING in f"),
            verdict("c", Outcome::Error, "load m: ENODEV"),
            verdict("d", Outcome::Skip, "no rust"),
        ];
        let info = RunInfo {
            run_folder: Some("/tmp/run".into()),
            kernel_release: Some("6.12.117".into()),
            vms: 2,
            duration: Duration::from_millis(1500),
            cpus: Some(2),
        };
        let text = document(&verdicts, &info).expect("encodes");
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["run_folder"], "/tmp/run");
        assert_eq!(value["kernel_release"], "6.12.117");
        assert_eq!(value["vms"], 2);
        assert_eq!(value["cpus"], 2);
        assert_eq!(value["duration"], 1.5);
        assert_eq!(
            value["counts"],
            serde_json::json!({"total": 4, "passed": 1, "failed": 2, "skipped": 1,
                               "crashed": 1, "timed_out": 0, "errored": 1})
        );
        let crash = &value["verdicts"][1];
        assert_eq!(crash["id"], "m/b");
        assert_eq!(crash["module"], "m");
        assert_eq!(crash["test"], "b");
        assert_eq!(crash["outcome"], "CRASH");
        assert_eq!(crash["title"], "WARNING in f");
        assert_eq!(crash["reason"], "WARNING in f");
        assert_eq!(crash["details"], serde_json::json!(["d1"]));
        assert_eq!(crash["duration"], 0.25);
        assert_eq!(crash["log"][0], "[    1.0] \u{1b}line");
        assert_eq!(value["verdicts"][0]["title"], serde_json::Value::Null);
        assert_eq!(value["verdicts"][2]["errno"], 19);
        assert_eq!(value["verdicts"][0]["errno"], serde_json::Value::Null);
    }
}
