//! Output for people: one line per test as verdicts arrive, then the closing summary.

use super::summary_line;
use crate::run::{RunEvent, RunReport};
use crate::verdict::{Outcome, Verdict};
use std::io::{IsTerminal, Write};

/// Prints run events for a person at a terminal (or a CI log: no escape codes without a terminal).
pub struct Human {
    verbose: bool,
    color: bool,
    out: Box<dyn Write>,
}

impl Human {
    pub fn stdout(verbose: bool) -> Self {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Human {
            verbose,
            color,
            out: Box::new(PrintStdout),
        }
    }

    pub fn on_event(&mut self, event: &RunEvent) {
        let line = match event {
            RunEvent::RunFolder(_) => return,
            RunEvent::KernelReady { release, duration } => {
                format!("kernel  {release} ready ({:.1}s)", duration.as_secs_f64())
            }
            RunEvent::ModuleBuilt(build) => {
                let how = if build.reused {
                    "up to date".to_string()
                } else {
                    format!("built in {:.1}s", build.duration.as_secs_f64())
                };
                let mut line = format!("module  {} {how}", build.module);
                if !build.warnings.trim().is_empty() {
                    line.push_str(&format!(
                        "; compiler warnings:\n{}",
                        indent(build.warnings.trim_end())
                    ));
                }
                line
            }
            RunEvent::Accelerator { accel, reason } => {
                if !self.verbose {
                    return;
                }
                format!("qemu    accelerator {accel}: {reason}")
            }
            RunEvent::VmStarted { label } => {
                if !self.verbose {
                    return;
                }
                format!("qemu    {label} started")
            }
            RunEvent::VmEnded { label, reason } => {
                if !self.verbose {
                    return;
                }
                format!("qemu    {label} ended: {reason}")
            }
            RunEvent::Notice(text) => format!("note    {text}"),
            RunEvent::Verdict(verdict) => self.verdict_lines(verdict),
        };
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
    }

    fn verdict_lines(&self, v: &Verdict) -> String {
        let label = format!("{:<7}", v.outcome.label());
        let label = if self.color {
            paint(v.outcome, &label)
        } else {
            label
        };
        let mut text = format!("{label} {:<32} {:>6.2}s", v.id(), v.duration.as_secs_f64());
        if !v.reason.is_empty() {
            text.push_str("  ");
            text.push_str(&v.reason);
        }
        if v.outcome.is_failure() {
            let shown = v
                .details
                .iter()
                .filter(|l| self.verbose || !is_register_dump(l));
            for line in shown.take(if self.verbose { 60 } else { 12 }) {
                text.push_str("\n        | ");
                text.push_str(line);
            }
        }
        if self.verbose && !v.log.is_empty() {
            text.push_str("\n        kernel log of this test:");
            for line in &v.log {
                text.push_str("\n        > ");
                text.push_str(line);
            }
        }
        text
    }

    /// The run folder, then the closing line.
    pub fn finish(&mut self, report: &RunReport) {
        let _ = writeln!(
            self.out,
            "run folder: {} ({} VM{}, {:.1}s)",
            report.run_dir.display(),
            report.vms,
            if report.vms == 1 { "" } else { "s" },
            report.duration.as_secs_f64()
        );
        let _ = writeln!(self.out, "{}", summary_line(&report.verdicts));
        let _ = self.out.flush();
    }
}

/// Standard output through `print!`, which the test harness captures (a plain `io::stdout()` is not),
/// so end-to-end tests that run the command line stay quiet unless they fail.
struct PrintStdout;

impl Write for PrintStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        print!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

/// Crash-report lines a person rarely needs at first sight: registers, code bytes, the module list.
/// They stay in `-v`, the JSON and the run folder.
fn is_register_dump(line: &str) -> bool {
    let text = kmodlab_protocol::ktap::strip_timestamp(line).trim_start();
    const PREFIXES: [&str; 17] = [
        "RSP:",
        "RAX:",
        "RDX:",
        "RBP:",
        "R10:",
        "R13:",
        "FS:",
        "CS:",
        "CR2:",
        "DR0:",
        "DR3:",
        "DR6:",
        "Code:",
        "Modules linked in:",
        "Hardware name:",
        "Tainted: [",
        "PKRU:",
    ];
    PREFIXES.iter().any(|p| text.starts_with(p))
}

fn paint(outcome: Outcome, text: &str) -> String {
    let code = match outcome {
        Outcome::Pass => "32",
        Outcome::Skip => "33",
        Outcome::Fail | Outcome::Error => "31",
        Outcome::Crash | Outcome::Timeout => "1;31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("        | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
