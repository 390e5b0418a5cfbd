//! `kmodlab`: the standalone command, for module repositories outside this one.

fn main() {
    let ctx = kmodlab::cli::Context {
        modules_dir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
        configs_dir: None,
        agent: kmodlab::cli::AgentSource::Installed,
    };
    std::process::exit(kmodlab::cli::main(&ctx));
}
