//! `kmodlab`: the standalone command, for module repositories outside this one.

fn main() {
    // Output piped into `head` should end quietly, as other command-line tools do, not panic.
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let ctx = kmodlab::cli::Context {
        modules_dir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
        configs_dir: None,
        agent: kmodlab::cli::AgentSource::Installed,
    };
    std::process::exit(kmodlab::cli::main(&ctx));
}
