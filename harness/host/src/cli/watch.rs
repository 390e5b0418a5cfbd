//! `watch`: run the tests, then again on every save, printing only what changed.

use crate::judge::verdict::{Outcome, Verdict};
use crate::report::summary_line;
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
    fn walk(dir: &Path, key: &mut crate::host::cache::KeyBuilder) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_relevant(p))
            .collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                walk(&path, key);
            } else if let Ok(bytes) = std::fs::read(&path) {
                key.part("path", path.to_string_lossy().as_bytes());
                key.part("data", bytes);
            }
        }
    }
    let mut key = crate::host::cache::KeyBuilder::new();
    for dir in dirs {
        walk(dir, &mut key);
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

/// Sources and specs, not the files editors and builds leave around.
fn is_relevant(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return false;
    };
    !(name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".tmp")
        || crate::build::module::is_build_product(&name))
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
