//! `new` gives a module that passes `test` at once: from each template and from an example.

use kmodlab::judge::verdict::Outcome;
use kmodlab::spec::scaffold;
use kmodlab::spec::select::Selected;
use kmodlab::spec::{self, Language};
use kmodlab_e2e::{assert_outcome, root, run_selection};

#[test]
fn new_modules_pass_their_first_test() {
    let modules = tempfile::tempdir().expect("tempdir");
    let examples = root().join("modules");
    let created = [
        scaffold::create(modules.path(), "fresh_c", Language::C, None),
        scaffold::create(modules.path(), "fresh_rust", Language::Rust, None),
        scaffold::create(
            modules.path(),
            "copied_wq",
            Language::C,
            Some(&examples.join("workqueue")),
        ),
    ];
    let selection: Vec<Selected> = created
        .into_iter()
        .map(|dir| {
            let dir = dir.unwrap_or_else(|e| panic!("{e:#}"));
            Selected {
                spec: spec::load(&dir).unwrap_or_else(|e| panic!("{e:#}")),
                tests: None,
            }
        })
        .collect();
    let report = run_selection(selection, &Default::default());
    assert_eq!(report.verdicts.len(), 3);
    for verdict in &report.verdicts {
        assert_outcome(verdict, Outcome::Pass);
    }
    // The copy builds its own .ko, so it can run beside the example it came from.
    assert!(modules
        .path()
        .join("copied_wq")
        .join("copied_wq.c")
        .is_file());
}
