//! The `kmodlab.toml` that `kmodlab init` writes for a folder without one: what its build
//! produced (the language, the `.ko` files in load order, one test per `.ko` with its load list),
//! commented so that the user can refine it.

use super::{kernel_name, Language};

/// A module the build produced, with the modules to load for it (dependencies first, itself last).
pub struct Found {
    pub file: String,
    pub load: Vec<String>,
}

/// A module that did not build, and the first line that says why.
pub struct NotBuilt {
    pub file: String,
    pub why: String,
}

/// The spec's text for `folder`.
pub fn describe(
    folder: &str,
    language: Language,
    found: &[Found],
    not_built: &[NotBuilt],
) -> String {
    let mut build: Vec<&str> = Vec::new();
    for module in found {
        for m in &module.load {
            if !build.contains(&m.as_str()) {
                build.push(m);
            }
        }
    }
    let quoted = |list: &[&str]| {
        list.iter()
            .map(|m| format!("\"{m}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "# The tests of {folder}, written by `kmodlab init` from what its build produced.\n\
         # Refine them: `expect`/`forbid` regexes for the kernel log, `params`, `ktap = true` for\n\
         # modules that print KTAP, `requires` for kernel options (README.md, \"Writing a module\").\n\
         # With this file, kmodlab runs these tests instead of one load test per .ko.\n\n\
         [module]\n\
         language = \"{}\"\n\
         description = \"\"                 # one line: what these modules do\n\
         build = [{}]   # the .ko files, in load order\n\
         # requires = [\"CONFIG_...\"]        # kernel options the tests need; without them they SKIP\n",
        match language {
            Language::C => "c",
            Language::Rust => "rust",
        },
        quoted(&build)
    );
    for module in not_built {
        text.push_str(&format!(
            "# {}.ko did not build, so it has no test: {}\n",
            module.file,
            module.why.replace('\n', " ")
        ));
    }
    for module in found {
        let load: Vec<&str> = module.load.iter().map(String::as_str).collect();
        text.push_str(&format!(
            "\n[[test]]\n\
             name = \"{}\"\n\
             load = [{}]   # dependencies first (depmod's order)\n\
             # params = \"\"              # parameters of the last module in `load`\n\
             # expect = ['some message']  # regexes lines of the test's kernel log must match\n\
             # forbid = ['refcount_t: ']  # regexes none may match\n",
            kernel_name(&module.file).to_ascii_lowercase(),
            quoted(&load)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn what_init_writes_is_a_valid_spec_with_one_test_per_module() {
        let text = describe(
            "pair",
            Language::C,
            &[
                Found {
                    file: "a-user".into(),
                    load: vec!["a-core".into(), "a-user".into()],
                },
                Found {
                    file: "a-core".into(),
                    load: vec!["a-core".into()],
                },
            ],
            &[NotBuilt {
                file: "broken".into(),
                why: "broken.c:8:9: error: expected ';'".into(),
            }],
        );
        let spec = crate::spec::parse(
            "pair",
            Path::new("pair"),
            Path::new("pair/kmodlab.toml"),
            &text,
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        assert_eq!(spec.build, ["a-core", "a-user"]);
        assert_eq!(spec.tests.len(), 2);
        assert_eq!(spec.tests[0].name, "a_user");
        assert_eq!(spec.tests[0].load, ["a-core", "a-user"]);
        assert!(text.contains("# broken.ko did not build"), "{text}");
    }
}
