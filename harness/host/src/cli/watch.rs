//! `watch`: run the tests, then again on every save, printing only what changed.

use super::args::WatchArgs;
use super::exit::EXIT_PASS;
use super::{agent_binary, kernel_request};
use crate::build::copy::{is_source_name, walk_sources};
use crate::guest::accel::AccelChoice;
use crate::host::cache::KeyBuilder;
use crate::host::progress::Live;
use crate::host::setup;
use crate::judge::verdict::{Outcome, Verdict};
use crate::report::{self, summary_line};
use crate::run::{self, Isolation, RunEvent, RunOptions};
use crate::spec::select;
use anyhow::{Context, Result};
use notify_debouncer_mini::{new_debouncer, notify::RecursiveMode, DebounceEventResult};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Saves closer together than this count as one (editors write a file in several steps).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// What the loop remembers of a verdict to tell whether it changed.
type Seen = BTreeMap<String, (Outcome, String)>;

/// The `watch` command: the selected module folders' tests, in one VM, on every save.
pub(super) fn command(args: WatchArgs, ctx: &super::Context) -> Result<i32> {
    let modules_dir = args.module_opts.modules_dir_or(&ctx.modules_dir);
    // Bad names and specs are reported before anything slow happens.
    let first = select::select(&modules_dir, &args.modules)?;
    if !args.module_opts.no_setup {
        setup::ensure(true)?;
    }
    let kernel = kernel_request(&args.kernel, ctx)?;
    let agent = agent_binary(ctx)?;
    let qemu = setup::require_tool("qemu-system-x86_64")?;
    let accel: AccelChoice = args.vms.accel.into();
    let dirs: Vec<PathBuf> = first.iter().map(|s| s.spec.dir.clone()).collect();
    let run_once = || -> Result<Vec<Verdict>> {
        // Specs are read again each round: saving kmodlab.toml is an edit like any other.
        let options = RunOptions {
            selection: select::select(&modules_dir, &args.modules)?,
            kernel: kernel.clone(),
            agent: agent.clone(),
            accel,
            qemu: qemu.clone(),
            runs_dir: None,
            timeout: None,
            run_timeout: None,
            isolation: Some(Isolation::All),
            jobs: args.vms.jobs.unwrap_or_else(run::default_jobs),
            memory_mb: 256,
            cpus: 2,
            snapshots: !args.vms.no_snapshot,
        };
        // On a terminal, what the round is doing now; the round's changes are printed after it.
        let mut live = Live::stdout();
        let mut kernel_release = None;
        let report = run::run(&options, &mut |event| {
            if let RunEvent::KernelReady { release, .. } = event {
                kernel_release = Some(release.clone());
            }
            let Some(line) = round_progress(event, live.as_mut()) else {
                return;
            };
            match live.as_ref() {
                Some(live) => live.suspend(|| println!("{line}")),
                None => println!("{line}"),
            }
        });
        drop(live);
        let report = report?;
        if let Some(path) = &args.html {
            let info = report::json::RunInfo::of(&report, kernel_release, options.cpus);
            report::html::write(path, &report.verdicts, &info)?;
        }
        Ok(report.verdicts)
    };
    watch(&dirs, run_once, &mut std::io::stdout())?;
    Ok(EXIT_PASS)
}

/// Shows what a round is doing on the spinner line; returns the line to print for what must stay
/// (notices, compiler warnings).
fn round_progress(event: &RunEvent, live: Option<&mut Live>) -> Option<String> {
    let doing = match event {
        RunEvent::ModuleBuilding { module } => format!("module  {module}: building"),
        RunEvent::VmStarted { label, restored } => format!(
            "qemu    {label}: {}",
            if *restored { "restoring" } else { "booting" }
        ),
        RunEvent::TestStarted { id } => format!("test    {id}: running"),
        RunEvent::Notice(text) => return Some(format!("note    {text}")),
        RunEvent::ModuleBuilt(build) if !build.warnings.trim().is_empty() => {
            return Some(format!(
                "{}: compiler warnings:\n{}",
                build.module,
                build.warnings.trim_end()
            ))
        }
        _ => return None,
    };
    if let Some(live) = live {
        live.show(&doing);
    }
    None
}

/// Runs `run_once` now and after every relevant change below `dirs`, until the watcher stops.
pub fn watch(
    dirs: &[PathBuf],
    mut run_once: impl FnMut() -> Result<Vec<Verdict>>,
    out: &mut dyn Write,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(DEBOUNCE, tx).context("starting the file watcher")?;
    for dir in dirs {
        debouncer
            .watcher()
            .watch(dir, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    let shown: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    writeln!(out, "watching {} (Ctrl-C to stop)", shown.join(", "))?;
    let mut previous: Option<Seen> = None;
    let mut round = 0;
    loop {
        round += 1;
        let started = Instant::now();
        // Taken before the round, so that a save made while it runs starts the next one.
        let tested = fingerprint(dirs);
        match run_once() {
            Ok(verdicts) => {
                let seen = remember(&verdicts);
                let changes = describe_changes(previous.as_ref(), &seen, &verdicts);
                for line in &changes {
                    writeln!(out, "{line}")?;
                }
                let unchanged = if previous.is_some() && changes.is_empty() {
                    "no change: "
                } else {
                    ""
                };
                writeln!(
                    out,
                    "{unchanged}{} (run {round}, {:.1}s)",
                    summary_line(&verdicts),
                    started.elapsed().as_secs_f64()
                )?;
                previous = Some(seen);
            }
            Err(e) => writeln!(out, "error: {e:#}\nwaiting for the next save")?,
        }
        out.flush()?;
        // Wait for a save that changed something. Events alone are not enough: the watcher also
        // reports files being opened and read, which every run does, and editors may rewrite a
        // file unchanged. So a round starts only when the sources' contents differ from the tested ones.
        while fingerprint(dirs) == tested {
            // Sleep until the watcher reports anything below the folders, then look again.
            if rx.recv().is_err() {
                return Ok(());
            }
        }
    }
}

/// A hash of every relevant file's path and contents below `dirs`.
fn fingerprint(dirs: &[PathBuf]) -> String {
    let mut key = KeyBuilder::new();
    for dir in dirs {
        // What cannot be listed or read now is left out: a save in progress settles into the next look.
        for rel in walk_sources(dir).flatten().filter(|rel| is_relevant(rel)) {
            let path = dir.join(rel);
            if let Ok(bytes) = std::fs::read(&path) {
                key.part("path", path.to_string_lossy().as_bytes());
                key.part("data", bytes);
            }
        }
    }
    key.finish()
}

fn remember(verdicts: &[Verdict]) -> Seen {
    verdicts
        .iter()
        .map(|v| (v.id(), (v.outcome, v.reason.clone())))
        .collect()
}

/// One line per test whose verdict is new or different: `hello/greets: PASS -> FAIL  not ok 3 ...`.
fn describe_changes(previous: Option<&Seen>, now: &Seen, verdicts: &[Verdict]) -> Vec<String> {
    let mut lines = Vec::new();
    for verdict in verdicts {
        let id = verdict.id();
        let before = previous.and_then(|p| p.get(&id));
        let reason = if verdict.reason.is_empty() {
            String::new()
        } else {
            format!("  {}", verdict.reason)
        };
        match before {
            None => lines.push(format!("{:<7} {id}{reason}", verdict.outcome.label())),
            Some((outcome, old_reason))
                if *outcome != verdict.outcome || *old_reason != verdict.reason =>
            {
                lines.push(format!(
                    "{id}: {} -> {}{reason}",
                    outcome.label(),
                    verdict.outcome.label()
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(previous) = previous {
        for id in previous.keys().filter(|id| !now.contains_key(*id)) {
            lines.push(format!("{id}: no longer run"));
        }
    }
    lines
}

/// Sources and specs (what the build copies), not the files editors leave around.
fn is_relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    is_source_name(&name) && !(name.ends_with('~') || name.ends_with(".swp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(test: &str, outcome: Outcome, reason: &str) -> Verdict {
        Verdict::new("m", test, outcome, reason)
    }

    #[test]
    fn only_what_changed_is_told() {
        let first = vec![
            verdict("a", Outcome::Pass, ""),
            verdict("b", Outcome::Pass, ""),
        ];
        let second = vec![
            verdict("a", Outcome::Pass, ""),
            verdict("b", Outcome::Fail, "not ok 1 x"),
        ];
        let all_first = describe_changes(None, &remember(&first), &first);
        assert_eq!(all_first, ["PASS    m/a", "PASS    m/b"]);
        let changed = describe_changes(Some(&remember(&first)), &remember(&second), &second);
        assert_eq!(changed, ["m/b: PASS -> FAIL  not ok 1 x"]);
        assert!(describe_changes(Some(&remember(&second)), &remember(&second), &second).is_empty());
        let fewer = vec![verdict("a", Outcome::Pass, "")];
        assert_eq!(
            describe_changes(Some(&remember(&first)), &remember(&fewer), &fewer),
            ["m/b: no longer run"]
        );
    }

    #[test]
    fn the_fingerprint_follows_contents_not_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("m.c");
        std::fs::write(&file, "int x;").expect("write");
        let dirs = [dir.path().to_path_buf()];
        let first = fingerprint(&dirs);
        let _ = std::fs::read(&file).expect("read");
        std::fs::write(&file, "int x;").expect("same contents again");
        std::fs::write(dir.path().join("m.o"), "object").expect("a build product");
        assert_eq!(fingerprint(&dirs), first);
        std::fs::write(&file, "int y;").expect("edit");
        assert_ne!(fingerprint(&dirs), first);
    }

    #[test]
    fn editor_files_and_build_products_are_ignored() {
        assert!(is_relevant(Path::new("/m/hello.c")) && is_relevant(Path::new("/m/kmodlab.toml")));
        for ignored in [
            "/m/.hello.c.swp",
            "/m/hello.c~",
            "/m/hello.o",
            "/m/hello.ko",
            "/m/.hello.o.cmd",
        ] {
            assert!(!is_relevant(Path::new(ignored)), "{ignored}");
        }
    }
}
