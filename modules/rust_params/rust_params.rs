// SPDX-License-Identifier: GPL-2.0

//! rust_params: what a Rust module on Linux 6.12 can do instead of module
//! parameters.
//!
//! The 6.12 `module!` macro has no `params` key, so `insmod rust_params.ko
//! count=5` cannot reach this code: the kernel ignores the argument with a
//! warning.  The closest honest substitute is shown here: the settings a C
//! module would take as parameters live in a `static` with built-in values,
//! and `init` turns them into a checked `Config` through a constructor that
//! returns `Result`.  Invalid settings refuse the load with `EINVAL`, as a C
//! module's init does with a bad parameter.  A KTAP document checks that the
//! constructor accepts good values and rejects bad ones.

use kernel::prelude::*;

#[path = "../include/kmodlab_ktap.rs"]
mod ktap;

module! {
    type: RustParams,
    name: "rust_params",
    author: "kmodlab",
    description: "Built-in settings validated at init: what 6.12 offers instead of Rust module parameters",
    license: "GPL",
}

/// Settings as they are written down, before any checking.  In C each field
/// would be a `module_param()`.
struct RawConfig {
    /// How many times to greet, 1..=MAX_COUNT.
    count: i32,
    /// Who is greeted: 1..=MAX_LABEL characters, letters, digits, `_` or `-`.
    label: &'static str,
}

/// The built-in settings.  Nothing in 6.12 can change them at load time:
/// changing them means editing this line and rebuilding the module.
static SETTINGS: RawConfig = RawConfig {
    count: 2,
    label: "kmodlab",
};

const MAX_COUNT: i32 = 5;
const MAX_LABEL: usize = 15;

/// Settings that passed validation.  The only way to get one is
/// `Config::new`, so code that holds a `Config` never re-checks it.
struct Config {
    count: u32,
    label: &'static str,
}

impl Config {
    fn new(raw: &RawConfig) -> Result<Config> {
        if !(1..=MAX_COUNT).contains(&raw.count) {
            return Err(EINVAL);
        }
        let label_ok = !raw.label.is_empty()
            && raw.label.len() <= MAX_LABEL
            && raw
                .label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !label_ok {
            return Err(EINVAL);
        }
        Ok(Config {
            // In range 1..=MAX_COUNT, so the conversion cannot fail.
            count: raw.count as u32,
            label: raw.label,
        })
    }
}

/// One validation case for the KTAP document: a name, the raw settings, and
/// whether `Config::new` must accept them.
struct Case {
    name: &'static str,
    raw: RawConfig,
    accept: bool,
}

/// Shorthand for one row of the table below.
const fn case(name: &'static str, count: i32, label: &'static str, accept: bool) -> Case {
    Case {
        name,
        raw: RawConfig { count, label },
        accept,
    }
}

const CASES: [Case; 8] = [
    case("accepts_smallest_count", 1, "a", true),
    case("accepts_largest_count", MAX_COUNT, "kmod_lab-15char", true),
    case("rejects_zero_count", 0, "kmodlab", false),
    case("rejects_count_above_max", MAX_COUNT + 1, "kmodlab", false),
    case("rejects_negative_count", -1, "kmodlab", false),
    case("rejects_empty_label", 1, "", false),
    case("rejects_label_with_space", 1, "kmod lab", false),
    case("rejects_label_too_long", 1, "kmod_lab-16chars", false),
];

struct RustParams {
    config: Config,
}

impl kernel::Module for RustParams {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        // A bad built-in value refuses the load: init returns Err(EINVAL) and
        // insmod fails with "Invalid argument".
        let config = match Config::new(&SETTINGS) {
            Ok(config) => config,
            Err(e) => {
                pr_err!(
                    "built-in settings rejected: count={} label=\"{}\"\n",
                    SETTINGS.count,
                    SETTINGS.label
                );
                return Err(e);
            }
        };
        for _ in 0..config.count {
            pr_info!("Hello, {}!\n", config.label);
        }

        let mut t = ktap::Ktap::plan(CASES.len() as u32);
        t.diag(format_args!(
            "built-in settings: count={} label={}",
            config.count, config.label
        ));
        for case in &CASES {
            let verdict = Config::new(&case.raw);
            let passed = match verdict {
                Ok(_) => case.accept,
                Err(e) => !case.accept && e == EINVAL,
            };
            if !passed {
                t.diag(format_args!(
                    "{}: count={} label=\"{}\" was {}",
                    case.name,
                    case.raw.count,
                    case.raw.label,
                    if verdict.is_ok() {
                        "accepted"
                    } else {
                        "rejected"
                    }
                ));
            }
            t.check(passed, case.name);
        }
        t.finish();

        Ok(RustParams { config })
    }
}

impl Drop for RustParams {
    fn drop(&mut self) {
        pr_info!("Goodbye, {}!\n", self.config.label);
    }
}
