//! What was recorded about each test: the agent's events and the console's lines, put together
//! into one [`TestRecord`] per test.

use kmodlab_protocol::{Event, KmsgRecord, OpResult, WaitEnd};
use std::time::Duration;

/// Why the host stopped waiting for a test that never finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interruption {
    /// The test's time limit (plus the agent's grace) passed on the host's clock.
    HostTimeout,
    /// QEMU exited, or its channels closed, while the test ran.
    VmEnded,
    /// The whole run's time limit passed while the test ran.
    RunTimeLimit,
}

/// Everything recorded about one test, assembled from agent events and console lines.
#[derive(Debug, Clone, Default)]
pub struct TestRecord {
    pub id: u32,
    pub started: bool,
    pub finished: bool,
    pub taint_before: Option<u64>,
    pub taint_after: Option<u64>,
    pub loads: Vec<(String, OpResult)>,
    pub wait: Option<WaitEnd>,
    pub unloads: Vec<(String, OpResult)>,
    pub kmsg: Vec<KmsgRecord>,
    pub console: Vec<String>,
    pub interrupted: Option<Interruption>,
    pub duration: Duration,
    /// The test's programs (its `[[test.run]]` list), in the order they ran.
    pub programs: Vec<ProgramRecord>,
}

/// How one program of a test ended, as the agent reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramRecord {
    pub program: String,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub timed_out: bool,
    /// stdout and stderr, interleaved.
    pub output: String,
    pub duration: Duration,
    /// How many kernel records of the test came before its report, to place its output in the log.
    pub kmsg_before: usize,
}

impl ProgramRecord {
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.output.lines()
    }

    /// Its last `n` lines of output, for a verdict's details.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines: Vec<&str> = self.lines().collect();
        let mut out: Vec<String> = lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| format!("{}: {l}", self.program))
            .collect();
        if out.is_empty() {
            out.push(format!("{}: (no output)", self.program));
        }
        out
    }
}

impl TestRecord {
    pub fn new(id: u32) -> Self {
        TestRecord {
            id,
            ..Default::default()
        }
    }

    /// Takes in an event about this test (or a kmsg record while it runs).
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::TestStarted { taint, .. } => {
                self.started = true;
                self.taint_before = Some(*taint);
            }
            Event::ModuleLoaded { module, result, .. } => {
                self.loads.push((module.clone(), result.clone()))
            }
            Event::WaitEnded { end, .. } => self.wait = Some(*end),
            Event::ModuleUnloaded { module, result, .. } => {
                self.unloads.push((module.clone(), result.clone()))
            }
            Event::Kmsg(record) => self.kmsg.push(record.clone()),
            Event::TestFinished {
                taint, duration_us, ..
            } => {
                self.finished = true;
                self.taint_after = Some(*taint);
                self.duration = Duration::from_micros(*duration_us);
            }
            Event::ProgramFinished {
                program,
                exit_code,
                signal,
                timed_out,
                output,
                duration_us,
                ..
            } => self.programs.push(ProgramRecord {
                program: program.clone(),
                exit_code: *exit_code,
                signal: signal.clone(),
                timed_out: *timed_out,
                output: output.clone(),
                duration: Duration::from_micros(*duration_us),
                kmsg_before: self.kmsg.len(),
            }),
            Event::Hello { .. } | Event::AgentError { .. } | Event::Done => {}
        }
    }

    pub fn kmsg_lines(&self) -> Vec<&str> {
        self.kmsg.iter().flat_map(|r| r.lines()).collect()
    }
}
