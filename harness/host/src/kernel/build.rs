//! Running kbuild: the command's environment, its full output into a log, progress while it runs,
//! and its last lines when it fails.

use crate::host::progress::Step;
use crate::host::setup;
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Lines of output an error shows.
const TAIL_LINES: usize = 25;

/// Variables from the caller's environment that would change what kbuild builds or where, or
/// (MAKEFLAGS from an outer make) how it schedules: a cached kernel must not depend on them.
const SCRUBBED_ENV: &[&str] = &[
    "ARCH",
    "SUBARCH",
    "CROSS_COMPILE",
    "LLVM",
    "LLVM_IAS",
    "CC",
    "KCFLAGS",
    "KCPPFLAGS",
    "KAFLAGS",
    "KRUSTFLAGS",
    "KBUILD_OUTPUT",
    "KBUILD_EXTMOD",
    "KBUILD_KCONFIG",
    "KCONFIG_CONFIG",
    "KCONFIG_ALLCONFIG",
    "CONFIG_",
    "O",
    "M",
    "V",
    "W",
    "C",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "GNUMAKEFLAGS",
];

/// A command with kbuild's environment: setup's PATH (rustc, bindgen) and nothing stray.
pub(crate) fn kbuild_command(program: &Path, src: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .current_dir(src)
        .env("PATH", setup::build_env_path())
        .env("LC_ALL", "C");
    for name in SCRUBBED_ENV {
        command.env_remove(name);
    }
    command
}

/// Whether a line is one of kbuild's short step lines: `  CC      mm/slub.o`, `  LD [M]  x.ko`.
pub(crate) fn is_step_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("  ") else {
        return false;
    };
    let tag: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    !tag.is_empty()
        && tag
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && tag.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && rest[tag.len()..].starts_with(' ')
        && !rest[tag.len()..].trim().is_empty()
}

/// Runs `command` with stdout and stderr into `log` (appended), counting kbuild steps on `step`
/// (as a bar when `expected` steps are known). Returns the number of steps seen. On failure the
/// error holds the last lines of output and the log's path.
pub(crate) fn run_logged(
    mut command: Command,
    log: &Path,
    step: &Step,
    expected: Option<u64>,
) -> Result<u64> {
    let mut log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening the log {}", log.display()))?;
    let shown = format!("{command:?}");
    writeln!(log_file, "$ {shown}").with_context(|| format!("writing {}", log.display()))?;

    // One pipe for both streams keeps make's errors next to the lines that caused them.
    let (reader, writer) = std::io::pipe().context("creating a pipe for make's output")?;
    let writer_err = writer.try_clone().context("duplicating a pipe")?;
    command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err);
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    // The command still holds the pipe's write ends: drop them, or reading never sees the end.
    drop(command);

    if let Some(total) = expected {
        step.set_length(total);
    }
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut steps = 0u64;
    let mut log_error = None;
    for line in BufReader::new(reader).split(b'\n') {
        let line = match line {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                log_error.get_or_insert(anyhow::Error::new(e).context("reading make's output"));
                break;
            }
        };
        if log_error.is_none() {
            if let Err(e) = writeln!(log_file, "{line}") {
                log_error =
                    Some(anyhow::Error::new(e).context(format!("writing {}", log.display())));
            }
        }
        if is_step_line(&line) {
            steps += 1;
            let what = line.split_whitespace().last().unwrap_or("");
            // With a total the bar shows the count; the message then only says what is being made.
            match expected {
                Some(_) => step.set_message(what.to_string()),
                None => step.set_message(format!("{steps} steps · {what}")),
            }
            step.set_position(steps);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let status = child
        .wait()
        .with_context(|| format!("waiting for {shown}"))?;
    if !status.success() {
        let lines: Vec<String> = tail.into_iter().collect();
        bail!(
            "{shown} failed ({status}); its last {} lines:\n{}\nfull log: {}",
            lines.len(),
            lines.join("\n"),
            log.display()
        );
    }
    if let Some(e) = log_error {
        return Err(e);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_lines_are_kbuild_short_lines() {
        assert!(is_step_line("  CC      mm/slub.o"));
        assert!(is_step_line("  LD [M]  samples/x.ko"));
        assert!(is_step_line("  RUSTC L rust/core.o"));
        assert!(is_step_line("  HOSTCC  scripts/basic/fixdep"));
        assert!(!is_step_line("make[1]: Entering directory '/b'"));
        assert!(!is_step_line("  GEN"));
        assert!(!is_step_line("mm/slub.c:12: error: x"));
        assert!(!is_step_line("  12 | int x;"));
        assert!(!is_step_line("    CC deeper"));
    }

    #[test]
    fn run_logged_counts_steps_and_logs_everything() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo '  CC      a.o'; echo oops >&2; echo '  LD      vmlinux'",
        ]);
        let step = Step::to_writer("test", Box::new(std::io::sink()));
        assert_eq!(run_logged(command, &log, &step, Some(2)).unwrap(), 2);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("  CC      a.o\noops\n  LD      vmlinux\n"),
            "{text}"
        );
    }

    #[test]
    fn a_failure_shows_the_last_lines_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "for i in $(seq 1 40); do echo line$i; done; echo 'x.c:1: error: no' >&2; exit 2",
        ]);
        let step = Step::to_writer("test", Box::new(std::io::sink()));
        let err = run_logged(command, &log, &step, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("its last 25 lines:\nline17\n"), "{err}");
        assert!(
            err.contains("line40\nx.c:1: error: no\nfull log: "),
            "{err}"
        );
        assert!(!err.contains("line16\n"), "{err}");
        assert!(err.ends_with(&log.display().to_string()), "{err}");
    }
}
