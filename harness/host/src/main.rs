//! `kmodlab`: the standalone command, for module repositories outside this one. It carries the
//! guest agent and every kernel config fragment (build.rs), so it needs nothing beside it.

fn main() {
    kmodlab::cli::quiet_on_broken_pipe();
    let ctx = kmodlab::cli::Context {
        modules_dir: std::env::current_dir().unwrap_or_else(|_| ".".into()),
        configs_dir: None,
        agent: kmodlab::cli::AgentSource::Installed,
    };
    std::process::exit(kmodlab::cli::main(&ctx));
}
