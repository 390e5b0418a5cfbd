//! What the unit tests of several modules share.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Writes `text` to `dir/rel`, creating the folders on the way.
pub fn touch(dir: &std::path::Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A writer a test hands out (as a `Box<dyn Write>`) and reads back afterwards.
#[derive(Clone, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("buffer lock").clone()).expect("UTF-8 output")
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A verdict with the given identity and outcome and nothing else: no details, no log, 120 ms.
/// Tests override what they look at with struct update syntax.
pub fn verdict(
    module: &str,
    test: &str,
    outcome: crate::judge::verdict::Outcome,
    reason: &str,
) -> crate::judge::verdict::Verdict {
    crate::judge::verdict::Verdict::new(module, test, outcome, reason)
        .with_duration(std::time::Duration::from_millis(120))
}

/// The `warn_init` fixture's CRASH as the report tests use it: the report's first line and
/// `report_line`, and one line of kernel log.
pub fn warn_init_crash(report_line: &str, log_line: &str) -> crate::judge::verdict::Verdict {
    let mut crash = verdict(
        "warn_init",
        "warns",
        crate::judge::verdict::Outcome::Crash,
        "WARNING in warn_init_trigger",
    );
    crash.details = vec![
        "------------[ cut here ]------------".into(),
        report_line.into(),
    ];
    crash.log = vec![log_line.into()];
    crash
}

/// `module/test OUTCOME reason` per verdict.
pub fn verdict_lines(verdicts: &[crate::judge::verdict::Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| {
            format!("{} {} {}", v.id(), v.outcome.label(), v.reason)
                .trim_end()
                .to_string()
        })
        .collect()
}
