//! Output for people: one line per test as verdicts arrive, then the closing summary.

use super::summary_line;
use crate::host::progress::Live;
use crate::judge::verdict::{Outcome, Verdict};
use crate::run::{RunEvent, RunReport};
use anstream::AutoStream;
use std::io::Write;

/// Prints run events for a person at a terminal (or a CI log: no escape codes without a terminal,
/// nor with `NO_COLOR` set).
pub struct Human {
    verbose: bool,
    /// Takes the escape codes out of what is written when colour is not wanted.
    out: AutoStream<Box<dyn Write>>,
    /// On a terminal, what is running now; the printed lines say what it took once it is done.
    live: Option<Live>,
    /// The accelerator of the run's VMs, for the boot lines.
    accel: Option<String>,
}

impl Human {
    pub fn stdout(verbose: bool) -> Self {
        // Colour as stdout itself would have it (a terminal, no NO_COLOR), though the writing goes
        // through `print!`.
        let choice = AutoStream::choice(&std::io::stdout());
        Human {
            verbose,
            out: AutoStream::new(Box::new(PrintStdout), choice),
            live: Live::stdout(),
            accel: None,
        }
    }

    pub fn on_event(&mut self, event: &RunEvent) {
        // What starts a step only moves the spinner; what ends one clears it, then prints its line.
        let started = match event {
            RunEvent::ModuleBuilding { module } => Some(format!("module  {module}: building")),
            RunEvent::VmStarted { label, restored } => Some(format!(
                "qemu    {label}: {}",
                if *restored { "restoring" } else { "booting" }
            )),
            RunEvent::TestStarted { id } => Some(format!("test    {id}: running")),
            _ => None,
        };
        if let (Some(what), Some(live)) = (&started, self.live.as_mut()) {
            live.show(what);
        }
        if started.is_some() && !matches!(event, RunEvent::VmStarted { .. }) {
            return;
        }
        if !matches!(
            event,
            RunEvent::VmStarted { .. } | RunEvent::Notice(_) | RunEvent::Accelerator { .. }
        ) {
            if let Some(live) = self.live.as_mut() {
                live.clear();
            }
        }
        let line = match event {
            RunEvent::RunFolder(_)
            | RunEvent::ModuleBuilding { .. }
            | RunEvent::TestStarted { .. } => return,
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
                self.accel = Some(accel.to_string());
                if !self.verbose {
                    return;
                }
                format!("qemu    accelerator {accel}: {reason}")
            }
            RunEvent::VmBooted {
                label,
                after,
                restored,
            } => {
                let accel = self
                    .accel
                    .as_deref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default();
                format!(
                    "qemu    {label} {} in {:.2}s{accel}",
                    if *restored { "restored" } else { "booted" },
                    after.as_secs_f64()
                )
            }
            RunEvent::VmStarted { label, .. } => {
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
        self.print(&line);
    }

    /// One line (or a few) to stdout, above the spinner if there is one.
    fn print(&mut self, line: &str) {
        let out = &mut self.out;
        let mut write = || {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        };
        match &self.live {
            Some(live) => live.suspend(write),
            None => write(),
        }
    }

    fn verdict_lines(&self, v: &Verdict) -> String {
        let label = paint(v.outcome, &format!("{:<7}", v.outcome.label()));
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
        if let Some(live) = self.live.as_mut() {
            live.clear();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::module::ModuleBuild;
    use crate::test_support::SharedBuffer;
    use std::time::Duration;

    #[test]
    fn without_a_terminal_each_step_is_one_plain_line_with_its_time() {
        let out = SharedBuffer::default();
        let mut human = Human {
            verbose: false,
            out: AutoStream::never(Box::new(out.clone())),
            live: None,
            accel: None,
        };
        let events = [
            RunEvent::ModuleBuilding {
                module: "hello".into(),
            },
            RunEvent::ModuleBuilt(ModuleBuild {
                module: "hello".into(),
                objects: vec![],
                reused: false,
                duration: Duration::from_millis(1630),
                warnings: String::new(),
                copy_dir: "/tmp/x".into(),
                companions: vec![],
                failed: vec![],
                load_orders: Default::default(),
            }),
            RunEvent::Accelerator {
                accel: crate::guest::vm::Accelerator::Tcg,
                reason: "KVM probe failed".into(),
            },
            RunEvent::VmStarted {
                label: "vm1".into(),
                restored: false,
            },
            RunEvent::VmBooted {
                label: "vm1".into(),
                after: Duration::from_millis(517),
                restored: false,
            },
            RunEvent::TestStarted {
                id: "hello/loads".into(),
            },
        ];
        for event in &events {
            human.on_event(event);
        }
        let text = out.text();
        assert_eq!(
            text,
            "module  hello built in 1.6s\nqemu    vm1 booted in 0.52s (tcg)\n"
        );
    }

    #[test]
    fn a_verdicts_label_is_coloured_only_when_colour_is_wanted() {
        let verdict = crate::test_support::verdict("m", "t", Outcome::Fail, "why");
        let shown = |out: AutoStream<Box<dyn Write>>, buffer: &SharedBuffer| {
            let mut human = Human {
                verbose: false,
                out,
                live: None,
                accel: None,
            };
            human.on_event(&RunEvent::Verdict(verdict.clone()));
            buffer.text()
        };
        let plain = SharedBuffer::default();
        let text = shown(AutoStream::never(Box::new(plain.clone())), &plain);
        assert!(
            text.starts_with("FAIL    m/t ") && !text.contains('\x1b'),
            "{text:?}"
        );
        let coloured = SharedBuffer::default();
        let text = shown(
            AutoStream::always_ansi(Box::new(coloured.clone())),
            &coloured,
        );
        assert!(text.starts_with("\x1b[31mFAIL   \x1b[0m m/t "), "{text:?}");
    }
}
