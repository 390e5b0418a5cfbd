//! Checks that keep the repository honest about itself, in the spirit of rust-analyzer's tidy tests:
//! the README's command table lists exactly the commands the binaries have, and no document or
//! comment cites a file the repository does not hold.

use clap::CommandFactory;
use regex::Regex;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("harness/host lies two folders below the repository root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The files git tracks, relative to the repository root.
fn tracked_files() -> Vec<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo_root())
        .args(["ls-files", "-z"])
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8_lossy(&out.stdout)
        .split('\0')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// The command names of the README's table under `## Commands`: `test` from `` `test [MODULE...]` ``,
/// and `ci` from `` `cargo xtask ci` `` (those go in the second set).
fn readme_commands() -> (BTreeSet<String>, BTreeSet<String>) {
    let readme = read("README.md");
    let section = readme
        .split("\n## Commands")
        .nth(1)
        .expect("README has a ## Commands section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let row = Regex::new(r"^\|\s*`(cargo xtask )?([a-z][a-z-]*)[^`]*`\s*\|").expect("regex");
    let (mut kmodlab, mut xtask) = (BTreeSet::new(), BTreeSet::new());
    for line in section.lines() {
        if let Some(c) = row.captures(line) {
            let name = c[2].to_string();
            if c.get(1).is_some() {
                xtask.insert(name);
            } else {
                kmodlab.insert(name);
            }
        }
    }
    (kmodlab, xtask)
}

#[test]
fn the_readme_lists_exactly_the_commands_the_binaries_have() {
    let (listed, listed_xtask) = readme_commands();
    let cli: BTreeSet<String> = kmodlab::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .collect();
    assert_eq!(
        listed, cli,
        "README's command table and the CLI disagree (left: README, right: `kmodlab --help`)"
    );
    // xtask's own tasks are the variants of its `Task` enum besides the flattened kmodlab commands.
    let xtask = read("xtask/src/main.rs");
    let body = xtask
        .split("enum Task {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("xtask/src/main.rs has `enum Task`");
    let variant = Regex::new(r"(?m)^    ([A-Z][A-Za-z]*)\b").expect("regex");
    let tasks: BTreeSet<String> = variant
        .captures_iter(body)
        .map(|c| c[1].to_lowercase())
        .filter(|name| name != "kmodlab")
        .collect();
    assert_eq!(
        listed_xtask, tasks,
        "README's `cargo xtask` rows and xtask's own tasks disagree"
    );
}

/// Folders at the top of the repository: a path that starts with one of them names a file of ours.
const TOP_FOLDERS: [&str; 7] = [
    "docs/",
    "harness/",
    "modules/",
    "tests/",
    "kernel-configs/",
    "xtask/",
    ".ci/",
];

/// Every file the documents and comments cite by a repository path (`docs/PERFORMANCE.md`,
/// `tests/fixtures/warn_init/`) or by a bare document name (`SOME_NAME.md`), that does not exist.
/// Paths into the kernel tree (`include/linux/panic.h`) are not ours and are not checked.
#[test]
fn documents_and_comments_cite_only_files_the_repository_has() {
    let files = tracked_files();
    let root = repo_root();
    let names: BTreeSet<&str> = files.iter().filter_map(|f| f.rsplit('/').next()).collect();
    let path =
        Regex::new(r"(?:^|[\s`(\[])((?:\.\./|\./)*[A-Za-z0-9_.][A-Za-z0-9_./-]*)").expect("regex");
    let mut missing = Vec::new();
    for file in &files {
        let is_doc = file.ends_with(".md");
        if !is_doc && !file.ends_with(".rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            // In code, only comments cite files.
            if !is_doc && !line.trim_start().starts_with("//") {
                continue;
            }
            for c in path.captures_iter(line) {
                let cited = c[1].trim_end_matches(['.', ',', ':', ';', ')']);
                if !cites_a_missing_file(cited, file, &root, &names) {
                    continue;
                }
                missing.push(format!("{file}:{}: {cited}", n + 1));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "these cite files the repository does not have:\n{}",
        missing.join("\n")
    );
}

fn cites_a_missing_file(cited: &str, from: &str, root: &Path, names: &BTreeSet<&str>) -> bool {
    let placeholder = cited.contains("NAME") || cited.ends_with(['_', '-']);
    if cited.contains("://") || cited.contains('*') || cited.contains("...") || placeholder {
        return false;
    }
    let citing_dir = root.join(from);
    // A relative path in a document is a link from where the document stands; in code comments
    // and guest command lines (`./chardev_test`) it is an example, not a citation.
    if cited.starts_with("./") || cited.starts_with("../") {
        let names_a_file =
            cited.ends_with('/') || cited.rsplit('/').next().is_some_and(|n| n.contains('.'));
        let dir = citing_dir.parent().unwrap_or(root);
        return from.ends_with(".md") && names_a_file && !dir.join(cited).exists();
    }
    if TOP_FOLDERS.iter().any(|top| cited.starts_with(top)) {
        // From the repository's root, or from the citing file's own crate (`tests/data/` in a
        // crate's integration tests).
        return !citing_dir.ancestors().any(|dir| dir.join(cited).exists());
    }
    // A bare document name (`SOME_NAME.md`, `README.md`) must be one of ours.
    if !cited.contains('/') && cited.ends_with(".md") {
        return !names.contains(cited);
    }
    false
}

/// Every `` `kmodlab NAME ...` `` or `` `cargo xtask NAME ...` `` that a document or comment shows
/// names a command that exists.
#[test]
fn documents_and_comments_show_only_commands_that_exist() {
    let mut known: BTreeSet<String> = kmodlab::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    known.extend(readme_commands().1);
    let shown = Regex::new(r"`(?:kmodlab|cargo xtask) ([a-z][a-z-]*)").expect("regex");
    let root = repo_root();
    let mut unknown = Vec::new();
    for file in tracked_files() {
        if !file.ends_with(".md") && !file.ends_with(".rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&file)) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for c in shown.captures_iter(line) {
                if !known.contains(&c[1]) {
                    unknown.push(format!("{file}:{}: {}", n + 1, &c[0]));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "these show commands that do not exist:\n{}",
        unknown.join("\n")
    );
}
