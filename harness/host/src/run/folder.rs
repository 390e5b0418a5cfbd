//! The run folder: the one place that knows its files, writes them during `test` and reads
//! them back for `parse`.
//!
//! - `plan.json` ([`PLAN_FILE`]): what each planned test was judged against ([`SavedTest`]);
//! - `vmN.events.jsonl` and `vmN.console.log`: what each VM's agent sent and its console printed
//!   (the VM writes them as they arrive);
//! - `vmN.qemu.txt`: the QEMU command line, QEMU's own messages, and how QEMU ended when it ended
//!   by itself ([`QemuEnd::recorded`]), so `parse` tells a guest's end from one from outside;
//! - `verdicts.json`: every verdict, in test-id order, and `MODULE.TEST.log`, each test's log.

use crate::guest::vm::{QemuEnd, VmLogs};
use crate::judge::evidence::Evidence;
use crate::judge::verdict::{Outcome, Verdict};
use crate::spec::{ProgramSpec, TestSpec};
use anyhow::{bail, Context, Result};
use kmodlab_protocol::Event;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The file in a run folder that keeps what each planned test was judged against.
pub const PLAN_FILE: &str = "plan.json";
/// The verdicts a run wrote, in test-id order (`run` numbers every requested test, skipped ones too).
pub const VERDICTS_FILE: &str = "verdicts.json";

// ---------------------------------------------------------------------------------------------
// Writing

/// `runs/20261122-031500-4242`, plus a `latest` link beside it.
pub fn create_run_dir(runs_dir: Option<&Path>) -> Result<PathBuf> {
    let runs = match runs_dir {
        Some(dir) => dir.to_path_buf(),
        None => crate::host::cache::dir("runs")?,
    };
    std::fs::create_dir_all(&runs).with_context(|| format!("creating {}", runs.display()))?;
    // Several runs can start in the same second, even in one process (the end-to-end tests run in
    // parallel): create_dir, not create_dir_all, so a name already taken is noticed, never shared.
    let base = format!("{}-{}", utc_stamp(SystemTime::now()), std::process::id());
    let mut dir = runs.join(&base);
    let mut attempt = 1;
    loop {
        match std::fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 1000 => {
                attempt += 1;
                dir = runs.join(format!("{base}-{attempt}"));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("creating the run folder {}", dir.display()))
            }
        }
    }
    let latest = runs.join("latest");
    let _ = std::fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir.file_name().unwrap_or_default(), &latest);
    Ok(dir)
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(time: SystemTime) -> String {
    // `2026-11-22T04:22:15Z`, reshaped.
    // humantime cannot show a time before 1970; a clock set that far back gets the epoch.
    let time = time.max(SystemTime::UNIX_EPOCH);
    let rfc3339 = humantime::format_rfc3339_seconds(time).to_string();
    rfc3339
        .trim_end_matches('Z')
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .map(|c| if c == 'T' { '-' } else { c })
        .collect()
}

/// Where a VM's initramfs goes while it runs.
pub fn initramfs_path(run_dir: &Path, label: &str) -> PathBuf {
    run_dir.join(format!("{label}.initramfs"))
}

/// Writes [`PLAN_FILE`] into a run folder.
pub fn save_plan(run_dir: &Path, tests: &[SavedTest]) -> Result<()> {
    write_json(&run_dir.join(PLAN_FILE), &tests)
}

/// Writes [`VERDICTS_FILE`], and each verdict's log beside it as `MODULE.TEST.log`.
pub fn save_verdicts(run_dir: &Path, verdicts: &[Verdict]) -> Result<()> {
    write_json(&run_dir.join(VERDICTS_FILE), &verdicts)?;
    for verdict in verdicts {
        if !verdict.log.is_empty() {
            let path = run_dir.join(format!("{}.{}.log", verdict.module, verdict.test));
            std::fs::write(&path, verdict.log.join("\n") + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("encoding JSON")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The plan

/// One planned test as the run saw it: enough to judge its recorded events again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedTest {
    /// The id the agent's events carry.
    pub id: u32,
    pub module: String,
    pub test: String,
    pub load: Vec<String>,
    pub params: String,
    pub ktap: bool,
    pub settle_ms: u64,
    /// Absent (0) in run folders from before the after-unload window.
    #[serde(default)]
    pub after_unload_ms: u64,
    #[serde(default)]
    pub reload: bool,
    /// The limit the test ran with (the spec's, or `--timeout`).
    pub timeout_ms: u64,
    pub expect: Vec<String>,
    pub forbid: Vec<String>,
    /// Where the module was built and the folder it came from, so that reports show the user's
    /// paths as `test` did.
    #[serde(default)]
    pub build_copy: Option<PathBuf>,
    #[serde(default)]
    pub source_dir: Option<PathBuf>,
    /// The programs the test ran (`[[test.run]]`); absent in run folders from before companions.
    #[serde(default)]
    pub run: Vec<SavedProgram>,
    /// The errno name the last load had to be refused with (`load_error`); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_error: Option<String>,
}

/// One `[[test.run]]` entry as the run judged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedProgram {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub exit: i32,
    #[serde(default)]
    pub expect: Vec<String>,
    #[serde(default)]
    pub forbid: Vec<String>,
    /// Its own limit, when the spec gave one; else the test's.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl SavedTest {
    pub fn new(
        id: u32,
        module: &str,
        spec: &TestSpec,
        source_paths: Option<&(PathBuf, PathBuf)>,
    ) -> SavedTest {
        SavedTest {
            id,
            module: module.to_string(),
            test: spec.name.clone(),
            load: spec.load.clone(),
            params: spec.params.clone(),
            ktap: spec.ktap,
            settle_ms: spec.settle.as_millis() as u64,
            after_unload_ms: spec.after_unload.as_millis() as u64,
            reload: spec.reload,
            timeout_ms: spec.timeout.as_millis() as u64,
            expect: spec.expect.iter().map(|r| r.as_str().to_string()).collect(),
            forbid: spec.forbid.iter().map(|r| r.as_str().to_string()).collect(),
            build_copy: source_paths.map(|(copy, _)| copy.clone()),
            source_dir: source_paths.map(|(_, original)| original.clone()),
            run: spec
                .run
                .iter()
                .map(|p| SavedProgram {
                    program: p.program.clone(),
                    args: p.args.clone(),
                    exit: p.exit,
                    expect: p.expect.iter().map(|r| r.as_str().to_string()).collect(),
                    forbid: p.forbid.iter().map(|r| r.as_str().to_string()).collect(),
                    timeout_ms: p.timeout.map(|t| t.as_millis() as u64),
                })
                .collect(),
            load_error: spec.load_error.map(|e| format!("{e:?}")),
        }
    }

    /// The spec the test was judged against, patterns compiled again.
    pub fn spec(&self) -> Result<TestSpec> {
        let compile = |patterns: &[String], field: &str| -> Result<Vec<Regex>> {
            patterns
                .iter()
                .map(|p| {
                    Regex::new(p).with_context(|| {
                        format!("{PLAN_FILE}: {}/{} {field} /{p}/", self.module, self.test)
                    })
                })
                .collect()
        };
        Ok(TestSpec {
            name: self.test.clone(),
            load: self.load.clone(),
            params: self.params.clone(),
            ktap: self.ktap,
            settle: Duration::from_millis(self.settle_ms),
            timeout: Duration::from_millis(self.timeout_ms),
            after_unload: Duration::from_millis(self.after_unload_ms),
            reload: self.reload,
            expect: compile(&self.expect, "expect")?,
            forbid: compile(&self.forbid, "forbid")?,
            run: self
                .run
                .iter()
                .map(|p| {
                    let field = |f: &str| format!("run {} {f}", p.program);
                    Ok(ProgramSpec {
                        program: p.program.clone(),
                        args: p.args.clone(),
                        exit: p.exit,
                        expect: compile(&p.expect, &field("expect"))?,
                        forbid: compile(&p.forbid, &field("forbid"))?,
                        timeout: p.timeout_ms.map(Duration::from_millis),
                    })
                })
                .collect::<Result<Vec<_>>>()?,
            load_error: match &self.load_error {
                None => None,
                Some(name) => Some(crate::spec::errno_by_name(name).map_err(|e| {
                    anyhow::anyhow!("{PLAN_FILE}: {}/{} load_error: {e}", self.module, self.test)
                })?),
            },
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A run folder's files, read back.
#[derive(Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// The saved plan by test id; `None` for a run folder from before `plan.json`.
    pub plan: Option<BTreeMap<u32, SavedTest>>,
    /// The verdicts the run wrote, in test-id order.
    pub verdicts: Vec<Verdict>,
    /// The numbers of the VMs whose events were kept, in order.
    pub vms: Vec<u32>,
}

/// What one VM left in the run folder.
#[derive(Debug)]
pub struct VmFiles {
    pub label: String,
    pub events: Vec<Event>,
    pub console: String,
    /// Lines of its events file that were not events.
    pub notes: Vec<String>,
    /// How QEMU ended, when it ended by itself.
    pub qemu_end: Option<QemuEnd>,
}

impl RunFolder {
    pub fn read(dir: &Path) -> Result<RunFolder> {
        let mut vms: Vec<u32> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the run folder {}", dir.display()))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                name.strip_prefix("vm")?
                    .strip_suffix(VmLogs::EVENTS_SUFFIX)?
                    .parse()
                    .ok()
            })
            .collect();
        vms.sort_unstable();
        let plan_path = dir.join(PLAN_FILE);
        let verdicts_path = dir.join(VERDICTS_FILE);
        if vms.is_empty() && !verdicts_path.is_file() {
            bail!(
                "{} is not a kmodlab run folder: it has no vmN.events.jsonl and no {VERDICTS_FILE}",
                dir.display()
            );
        }
        let plan = if plan_path.is_file() {
            let tests: Vec<SavedTest> = read_json(&plan_path)?;
            Some(tests.into_iter().map(|t| (t.id, t)).collect())
        } else {
            None
        };
        let verdicts = if verdicts_path.is_file() {
            let list: Vec<Recorded> = read_json(&verdicts_path)?;
            list.into_iter().map(Recorded::verdict).collect()
        } else {
            Vec::new()
        };
        Ok(RunFolder {
            dir: dir.to_path_buf(),
            plan,
            verdicts,
            vms,
        })
    }

    /// The events and console log VM `number` left.
    pub fn vm(&self, number: u32) -> Result<VmFiles> {
        let label = format!("vm{number}");
        let logs = VmLogs::named(&self.dir, &label);
        let events_path = logs.events;
        let events_text = std::fs::read_to_string(&events_path)
            .with_context(|| format!("reading {}", events_path.display()))?;
        // A missing console log only costs crash reports the agent could not send.
        let console = std::fs::read(&logs.console)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let qemu_end = std::fs::read_to_string(&logs.qemu)
            .ok()
            .and_then(|text| QemuEnd::recorded(&text));
        let mut events = Vec::new();
        let mut notes = Vec::new();
        for (n, line) in events_text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match Event::from_line(line) {
                Ok(event) => events.push(event),
                Err(e) => notes.push(format!(
                    "{}:{}: not an agent event ({e}); skipped",
                    events_path.display(),
                    n + 1
                )),
            }
        }
        Ok(VmFiles {
            label,
            events,
            console,
            notes,
            qemu_end,
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
}

/// A verdict as `verdicts.json` keeps it.
#[derive(Deserialize)]
struct Recorded {
    module: String,
    test: String,
    outcome: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: Vec<String>,
    #[serde(default)]
    errno: Option<i32>,
    #[serde(default)]
    duration: f64,
    #[serde(default)]
    log: Vec<String>,
    /// Absent from run folders written before verdicts carried it.
    #[serde(default)]
    evidence: Option<Evidence>,
}

impl Recorded {
    fn verdict(self) -> Verdict {
        let verdict = Verdict::new(
            &self.module,
            &self.test,
            Outcome::from_label(&self.outcome),
            self.reason,
        )
        .with_details(self.details)
        .with_errno(self.errno)
        .with_duration(Duration::try_from_secs_f64(self.duration).unwrap_or_default())
        .with_log(self.log);
        match self.evidence {
            Some(evidence) => Verdict {
                evidence,
                ..verdict
            },
            None => verdict.with_evidence(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_started_together_never_share_a_folder() {
        let runs = tempfile::tempdir().expect("tempdir");
        let folders: Vec<PathBuf> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| create_run_dir(Some(runs.path()))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread").expect("run folder"))
                .collect()
        });
        let mut unique = folders.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), folders.len(), "{folders:?}");
    }

    #[test]
    fn run_folders_are_named_by_utc_time() {
        let at = |unix: u64| utc_stamp(std::time::UNIX_EPOCH + Duration::from_secs(unix));
        assert_eq!(at(0), "19700101-000000");
        assert_eq!(at(1_795_321_335), "20261122-042215");
        assert_eq!(at(951_782_400), "20000229-000000");
    }
}
