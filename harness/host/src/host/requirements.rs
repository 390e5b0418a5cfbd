//! What the host needs, as data: [`REQUIREMENTS`] for kmodlab itself, [`TEST_REQUIREMENTS`] for this
//! project's own tests only. Each names a probe (a tool on the build PATH, a header, a folder in the
//! Rust sysroot, ...) and a fix (a Debian package, a rustup piece, a pinned `cargo install`);
//! [`crate::host::setup`] runs the probes and the fixes.

use std::fmt;

/// The bindgen the kernel's Rust support is built and tested with here: `cargo install --locked
/// bindgen-cli@0.73.2` builds in about 70 s, and 6.12's `make rustavailable` accepts it with rustc 1.95.
pub const BINDGEN_VERSION: &str = "0.73.2";

/// How to tell that a requirement is met. Paths are absolute; tools are looked up on
/// [`crate::host::setup::build_env_path`].
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// An executable with this name on the build PATH.
    Tool(&'static str),
    /// A tool whose `--version` output contains this version.
    ToolVersion {
        tool: &'static str,
        version: &'static str,
    },
    /// A file; one `*` may stand for part of one path component (`/usr/lib/llvm-*/lib/libclang.so`).
    File(&'static str),
    /// A statically linked executable (the guest has no dynamic loader to offer it).
    StaticBinary(&'static str),
    /// A path inside the active Rust toolchain's sysroot (`rustc --print sysroot`).
    RustSysroot(&'static str),
}

/// How to meet a requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// A Debian package: needs root.
    Apt(&'static str),
    /// `rustup` with these arguments: no root needed.
    Rustup(&'static [&'static str]),
    /// `cargo` with these arguments: no root needed.
    Cargo(&'static [&'static str]),
    /// Something kmodlab does not install itself.
    Manual(&'static str),
}

impl Fix {
    /// The command a person would type (apt commands without `sudo`).
    pub fn command(&self) -> String {
        match self {
            Fix::Apt(package) => format!("apt-get install -y --no-install-recommends {package}"),
            Fix::Rustup(args) => format!("rustup {}", args.join(" ")),
            Fix::Cargo(args) => format!("cargo {}", args.join(" ")),
            Fix::Manual(text) => (*text).to_string(),
        }
    }
}

/// One thing the host needs.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// Short name, as a person would search for it.
    pub name: &'static str,
    /// What kmodlab uses it for.
    pub purpose: &'static str,
    pub probe: Probe,
    pub fix: Fix,
}

const RUSTUP_INSTALL: &str = "install Rust with rustup: https://rustup.rs (curl --proto '=https' -sSf https://sh.rustup.rs | sh)";

/// Everything kmodlab needs on the host. What the kernel build needs follows
/// Documentation/process/changes.rst for an x86_64 GCC build with CONFIG_RUST; python3 and cpio are
/// not here on purpose: neither merge_config.sh nor a build of our configs runs them, and kmodlab
/// writes its initramfs itself (the project's tests use both: [`TEST_REQUIREMENTS`]).
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        name: "make",
        purpose: "kernel and module builds",
        probe: Probe::Tool("make"),
        fix: Fix::Apt("make"),
    },
    Requirement {
        name: "gcc",
        purpose: "compiling the kernel and C modules",
        probe: Probe::Tool("gcc"),
        fix: Fix::Apt("gcc"),
    },
    Requirement {
        name: "libc headers",
        purpose: "the kernel's host programs (scripts/, objtool)",
        probe: Probe::File("/usr/include/stdio.h"),
        fix: Fix::Apt("libc6-dev"),
    },
    Requirement {
        name: "flex",
        purpose: "the kernel's Kconfig parser",
        probe: Probe::Tool("flex"),
        fix: Fix::Apt("flex"),
    },
    Requirement {
        name: "bison",
        purpose: "the kernel's Kconfig parser",
        probe: Probe::Tool("bison"),
        fix: Fix::Apt("bison"),
    },
    Requirement {
        name: "bc",
        purpose: "kernel/time/timeconst.h",
        probe: Probe::Tool("bc"),
        fix: Fix::Apt("bc"),
    },
    Requirement {
        name: "libelf headers",
        purpose: "objtool and resolve_btfids",
        probe: Probe::File("/usr/include/libelf.h"),
        fix: Fix::Apt("libelf-dev"),
    },
    Requirement {
        name: "OpenSSL headers",
        purpose: "the kernel's certificate and signing tools",
        probe: Probe::File("/usr/include/openssl/ssl.h"),
        fix: Fix::Apt("libssl-dev"),
    },
    Requirement {
        name: "xz",
        purpose: "unpacking the kernel source tarball",
        probe: Probe::Tool("xz"),
        fix: Fix::Apt("xz-utils"),
    },
    Requirement {
        name: "zstd",
        purpose: "zstd-compressed kernels and modules",
        probe: Probe::Tool("zstd"),
        fix: Fix::Apt("zstd"),
    },
    Requirement {
        name: "kmod",
        purpose: "modinfo and depmod on built modules",
        probe: Probe::Tool("kmod"),
        fix: Fix::Apt("kmod"),
    },
    Requirement {
        name: "clang",
        purpose: "Rust for Linux (bindgen's C front end)",
        probe: Probe::Tool("clang"),
        fix: Fix::Apt("clang"),
    },
    Requirement {
        name: "libclang",
        purpose: "Rust for Linux (bindgen loads libclang)",
        probe: Probe::File("/usr/lib/llvm-*/lib/libclang.so"),
        fix: Fix::Apt("libclang-dev"),
    },
    Requirement {
        name: "QEMU",
        purpose: "booting test kernels",
        probe: Probe::Tool("qemu-system-x86_64"),
        fix: Fix::Apt("qemu-system-x86"),
    },
    Requirement {
        name: "static busybox",
        purpose: "a shell and tools inside the guest",
        probe: Probe::StaticBinary("/bin/busybox"),
        fix: Fix::Apt("busybox-static"),
    },
    Requirement {
        name: "rustup",
        purpose: "installing the Rust pieces below",
        probe: Probe::Tool("rustup"),
        fix: Fix::Manual(RUSTUP_INSTALL),
    },
    Requirement {
        name: "rustc",
        purpose: "Rust modules and the guest agent",
        probe: Probe::Tool("rustc"),
        fix: Fix::Manual(RUSTUP_INSTALL),
    },
    Requirement {
        name: "rust-src",
        purpose: "Rust for Linux builds core and alloc from source",
        probe: Probe::RustSysroot("lib/rustlib/src/rust/library/core"),
        fix: Fix::Rustup(&["component", "add", "rust-src"]),
    },
    Requirement {
        name: "musl target",
        purpose: "the static guest agent",
        probe: Probe::RustSysroot("lib/rustlib/x86_64-unknown-linux-musl/lib"),
        fix: Fix::Rustup(&["target", "add", "x86_64-unknown-linux-musl"]),
    },
    Requirement {
        name: "bindgen 0.73.2",
        purpose: "Rust for Linux (C bindings)",
        probe: Probe::ToolVersion {
            tool: "bindgen",
            version: BINDGEN_VERSION,
        },
        fix: Fix::Cargo(&[
            "install",
            "--locked",
            "bindgen-cli",
            "--version",
            BINDGEN_VERSION,
        ]),
    },
];

/// What only this project's own tests need: independent readers and drivers they check kmodlab's
/// output with. `cargo xtask ci` installs these too; `kmodlab test` and `setup` never do, so users
/// do not get a browser for running their modules.
pub const TEST_REQUIREMENTS: &[Requirement] = &[
    Requirement {
        name: "cpio",
        purpose: "the independent reader kmodlab's own tests check its initramfs archives with",
        probe: Probe::Tool("cpio"),
        fix: Fix::Apt("cpio"),
    },
    Requirement {
        name: "tmux",
        purpose: "the terminal kmodlab's own tests drive `shell` in",
        probe: Probe::Tool("tmux"),
        fix: Fix::Apt("tmux"),
    },
    Requirement {
        name: "python3",
        purpose: "the independent JSON and JUnit readers and kunit.py in kmodlab's own tests",
        probe: Probe::Tool("python3"),
        fix: Fix::Apt("python3"),
    },
    Requirement {
        // The headless shell: the same engine without the desktop browser's GTK, and smaller.
        name: "headless Chromium",
        purpose: "rendering the HTML report in kmodlab's own tests",
        probe: Probe::Tool(CHROMIUM),
        fix: Fix::Apt(CHROMIUM),
    },
];

/// The headless Chromium the tests render the HTML report with: Debian's package and binary name.
pub const CHROMIUM: &str = "chromium-headless-shell";

/// A requirement that is not met, with why and how to fix it.
#[derive(Debug, Clone)]
pub struct Missing {
    pub name: &'static str,
    pub purpose: &'static str,
    /// What the probe saw, e.g. "no `clang` on PATH" or "found bindgen 0.69.4".
    pub detail: String,
    pub fix: Fix,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}; fix: {}",
            self.name,
            self.purpose,
            self.detail,
            self.fix.command()
        )
    }
}
