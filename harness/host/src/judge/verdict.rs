//! The judgement of one test: its outcome, the one-line reason and what supports it.

use super::evidence::Evidence;
use kmodlab_protocol::KmsgRecord;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Fail,
    Error,
    Crash,
    Timeout,
    Skip,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Error => "ERROR",
            Outcome::Crash => "CRASH",
            Outcome::Timeout => "TIMEOUT",
            Outcome::Skip => "SKIP",
        }
    }

    /// The outcome a label names; one this version does not know is not a pass, but an ERROR.
    pub fn from_label(label: &str) -> Outcome {
        match label {
            "PASS" => Outcome::Pass,
            "FAIL" => Outcome::Fail,
            "CRASH" => Outcome::Crash,
            "TIMEOUT" => Outcome::Timeout,
            "SKIP" => Outcome::Skip,
            _ => Outcome::Error,
        }
    }

    /// Whether this outcome makes the run fail.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Pass | Outcome::Skip)
    }

    /// Whether a test that ended so leaves a kernel that must not judge another test: it
    /// crashed, or something in it never returned.
    pub fn ends_the_vm(self) -> bool {
        matches!(self, Outcome::Crash | Outcome::Timeout)
    }
}

/// The judgement of one test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub module: String,
    pub test: String,
    pub outcome: Outcome,
    /// One line: the crash title, the failed case, the errno, the skip reason. Empty for a pass.
    pub reason: String,
    /// Supporting lines: the crash report, the KTAP failures.
    pub details: Vec<String>,
    pub errno: Option<i32>,
    #[serde(with = "seconds")]
    pub duration: Duration,
    /// The test's kernel log window (kmsg records, else console lines).
    pub log: Vec<String>,
    /// The kernel records of that window as the agent sent them, with who printed each and on
    /// which CPU (empty when only the console was left, or for plain logs `parse` judges).
    #[serde(skip)]
    pub records: Vec<KmsgRecord>,
    /// Which of those lines show the failure; filled by the judge ([`Verdict::with_evidence`]).
    #[serde(skip_serializing_if = "Evidence::is_empty")]
    pub evidence: Evidence,
}

impl Verdict {
    /// A verdict with its identity, outcome and reason, and nothing else yet: no details, no
    /// errno, no time, no log. The `with_*` methods add the rest.
    pub fn new(module: &str, test: &str, outcome: Outcome, reason: impl Into<String>) -> Verdict {
        Verdict {
            module: module.into(),
            test: test.into(),
            outcome,
            reason: reason.into(),
            details: vec![],
            errno: None,
            duration: Duration::ZERO,
            log: vec![],
            records: vec![],
            evidence: Evidence::default(),
        }
    }

    pub fn skipped(module: &str, test: &str, reason: String) -> Verdict {
        Verdict::new(module, test, Outcome::Skip, reason)
    }

    pub fn with_details(self, details: Vec<String>) -> Verdict {
        Verdict { details, ..self }
    }

    pub fn with_errno(self, errno: Option<i32>) -> Verdict {
        Verdict { errno, ..self }
    }

    pub fn with_duration(self, duration: Duration) -> Verdict {
        Verdict { duration, ..self }
    }

    pub fn with_log(self, log: Vec<String>) -> Verdict {
        Verdict { log, ..self }
    }

    pub fn with_records(self, records: Vec<KmsgRecord>) -> Verdict {
        Verdict { records, ..self }
    }

    /// The verdict with the evidence in its lines marked; the last step of judging.
    pub fn with_evidence(self) -> Verdict {
        let evidence = Evidence::of(&self);
        Verdict { evidence, ..self }
    }

    pub fn id(&self) -> String {
        format!("{}/{}", self.module, self.test)
    }

    /// Rewrites every line of kernel text the verdict carries (its details, its log and its
    /// records; not its reason), e.g. to show the module's own folder where the kernel printed
    /// the paths of the copy it was built from.
    pub fn map_text(&mut self, rewrite: impl Fn(&str) -> String) {
        for line in self.details.iter_mut().chain(self.log.iter_mut()) {
            *line = rewrite(line);
        }
        for record in &mut self.records {
            record.text = rewrite(&record.text);
        }
    }
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
