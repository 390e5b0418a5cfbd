//! Every example's README ends with changes to try and what kmodlab will then report. The first one
//! of each is written down in the example's `try-this.toml`; these tests make that change in a copy
//! and hold the README to its word: the verdict turns from PASS to the one it names.

use kmodlab::spec;
use kmodlab::spec::select::Selected;
use kmodlab_e2e::{root, run_selection};
use regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TryThis {
    change: Vec<Change>,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    file: String,
    replace: String,
    with: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    test: String,
    outcome: String,
    /// A regex the verdict's reason must match.
    reason: String,
    /// Fragments beyond `base` the effect needs (e.g. `["rust", "debug"]`); default: the default kernel.
    #[serde(default)]
    kernel_config: Vec<String>,
}

/// The changed copies to run on one kernel, and what each should report.
#[derive(Default)]
struct Group {
    selection: Vec<Selected>,
    expectations: Vec<(String, Expect)>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from)
        .expect("read module folder")
        .flatten()
    {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}

#[test]
fn every_examples_first_try_this_turns_its_verdict() {
    let work = tempfile::tempdir().expect("tempdir");
    // Changed copies grouped by the kernel fragments they need.
    let mut groups: BTreeMap<Vec<String>, Group> = BTreeMap::new();
    let examples = spec::discover(&root().join("modules")).expect("modules");
    assert!(examples.len() >= 3, "the examples are found");
    for dir in examples {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let try_path = dir.join("try-this.toml");
        let text = std::fs::read_to_string(&try_path).unwrap_or_else(|_| {
            panic!("{name} has no try-this.toml: every example's README's first change is tested")
        });
        let plan: TryThis =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", try_path.display()));
        let copy = work.path().join(&name);
        copy_dir(&dir, &copy);
        for change in &plan.change {
            let file = copy.join(&change.file);
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{name}/{}: {e}", change.file));
            let found = source.matches(&change.replace).count();
            assert_eq!(
                found, 1,
                "{name}/{}: `{}` must occur exactly once, found {found}",
                change.file, change.replace
            );
            std::fs::write(&file, source.replacen(&change.replace, &change.with, 1))
                .expect("write change");
        }
        let spec = spec::load(&copy).unwrap_or_else(|e| panic!("{e:#}"));
        let group = groups.entry(plan.expect.kernel_config.clone()).or_default();
        group.selection.push(Selected {
            spec,
            tests: Some(vec![plan.expect.test.clone()]),
        });
        group.expectations.push((name, plan.expect));
    }
    for (
        kernel_config,
        Group {
            selection,
            expectations,
        },
    ) in groups
    {
        let opts = kmodlab::cli::KernelOpts {
            kernel_config,
            ..Default::default()
        };
        let report = run_selection(selection, &opts);
        assert_eq!(
            report.verdicts.len(),
            expectations.len(),
            "one verdict per changed example"
        );
        for (name, expect) in expectations {
            let id = format!("{name}/{}", expect.test);
            let verdict = report
                .verdicts
                .iter()
                .find(|v| v.id() == id)
                .unwrap_or_else(|| panic!("no verdict for {id}"));
            assert_eq!(
                verdict.outcome.label(),
                expect.outcome,
                "{id}: {}",
                verdict.reason
            );
            let pattern = Regex::new(&expect.reason).expect("reason regex");
            assert!(
                pattern.is_match(&verdict.reason),
                "{id}: reason `{}` does not match /{}/",
                verdict.reason,
                expect.reason
            );
        }
    }
}
