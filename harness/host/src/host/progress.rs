//! Progress for long steps (kernel builds, module builds, VM boots).
//!
//! On a terminal a spinner, or a bar once the total is known, with the elapsed time and a message.
//! Anywhere else (CI, log files) plain lines and never an escape code: one when the step starts, at
//! most one every ten seconds while it runs, and one when it ends, with the time it took.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often plain output may report that a step is still running.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// One long-running step. Its methods take `&self`, so a reader thread can update it while
/// another thread waits on a child process.
pub struct Step {
    label: String,
    started: Instant,
    view: View,
    ended: Mutex<bool>,
}

enum View {
    Terminal(ProgressBar),
    Plain(Mutex<Plain>),
}

struct Plain {
    out: Box<dyn Write + Send>,
    interval: Duration,
    last_line: Instant,
    message: String,
    position: u64,
    length: Option<u64>,
}

impl Step {
    /// Starts a step on stderr: a spinner on a terminal, plain lines otherwise.
    pub fn start(label: &str) -> Step {
        let stderr = std::io::stderr();
        if is_live_terminal(&stderr) {
            Step::terminal(label)
        } else {
            Step::to_writer(label, Box::new(stderr))
        }
    }

    /// Starts a step that writes plain lines to `out` (a log file, a test buffer).
    pub fn to_writer(label: &str, out: Box<dyn Write + Send>) -> Step {
        Step::plain(label, out, PLAIN_INTERVAL)
    }

    fn plain(label: &str, out: Box<dyn Write + Send>, interval: Duration) -> Step {
        let mut plain = Plain {
            out,
            interval,
            last_line: Instant::now(),
            message: String::new(),
            position: 0,
            length: None,
        };
        plain.line(&format!("{label}: started"));
        Step {
            label: label.to_string(),
            started: Instant::now(),
            view: View::Plain(Mutex::new(plain)),
            ended: Mutex::new(false),
        }
    }

    fn terminal(label: &str) -> Step {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(spinner_style())
            .with_prefix(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Step {
            label: label.to_string(),
            started: Instant::now(),
            view: View::Terminal(bar),
            ended: Mutex::new(false),
        }
    }

    /// Replaces the message shown after the label (for example "1234 objects").
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.view {
            View::Terminal(bar) => bar.set_message(message),
            View::Plain(plain) => self.with_plain(plain, |p| p.message = message),
        }
    }

    /// Sets the expected total; the spinner becomes a bar.
    pub fn set_length(&self, length: u64) {
        match &self.view {
            View::Terminal(bar) => {
                if bar.length().is_none() {
                    bar.set_style(bar_style());
                }
                bar.set_length(length);
            }
            View::Plain(plain) => self.with_plain(plain, |p| p.length = Some(length)),
        }
    }

    /// Sets how far the step has got, in the unit of `set_length`.
    pub fn set_position(&self, position: u64) {
        match &self.view {
            View::Terminal(bar) => {
                // A total from an earlier build is a guess: never let the bar run past its end.
                if let Some(length) = bar.length() {
                    if position > length {
                        bar.set_length(position);
                    }
                }
                bar.set_position(position);
            }
            View::Plain(plain) => self.with_plain(plain, |p| p.position = position),
        }
    }

    /// Prints a line above the progress display without breaking it.
    pub fn println(&self, line: &str) {
        match &self.view {
            View::Terminal(bar) => bar.println(line),
            View::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    p.line(line);
                }
            }
        }
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Ends the step successfully, with a one-line summary.
    pub fn finish(self, summary: &str) {
        self.end(
            &format!(
                "{}: done in {}",
                self.label,
                format_duration(self.elapsed())
            ),
            summary,
        );
    }

    /// Ends the step as failed; the caller reports the error itself.
    pub fn fail(self, summary: &str) {
        self.end(
            &format!(
                "{}: FAILED after {}",
                self.label,
                format_duration(self.elapsed())
            ),
            summary,
        );
    }

    fn end(&self, head: &str, summary: &str) {
        if let Ok(mut ended) = self.ended.lock() {
            if *ended {
                return;
            }
            *ended = true;
        }
        let line = if summary.is_empty() {
            head.to_string()
        } else {
            format!("{head}: {summary}")
        };
        match &self.view {
            View::Terminal(bar) => {
                bar.finish_and_clear();
                eprintln!("{line}");
            }
            View::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    p.line(&line);
                }
            }
        }
    }

    /// Applies an update, then writes a status line when the interval has passed since the last.
    fn with_plain(&self, plain: &Mutex<Plain>, update: impl FnOnce(&mut Plain)) {
        let Ok(mut p) = plain.lock() else { return };
        update(&mut p);
        if p.last_line.elapsed() >= p.interval {
            let mut line = format!("{}: {}", self.label, format_duration(self.elapsed()));
            // Without a total, a bare position says little: the message carries any count.
            if let Some(length) = p.length {
                line.push_str(&format!(", {}/{}", p.position, length));
            }
            if !p.message.is_empty() {
                line.push_str(&format!(", {}", p.message));
            }
            p.line(&line);
        }
    }
}

impl Drop for Step {
    /// A step dropped without `finish` or `fail` (an early `?` return) still ends its display.
    fn drop(&mut self) {
        let elapsed = format_duration(self.elapsed());
        self.end(&format!("{}: stopped after {elapsed}", self.label), "");
    }
}

impl Plain {
    fn line(&mut self, line: &str) {
        // Progress output must never fail the work it reports on.
        let _ = writeln!(self.out, "{line}");
        let _ = self.out.flush();
        self.last_line = Instant::now();
    }
}

/// What a run is doing right now (a module build, a boot, a test), as one spinner line under the
/// lines already printed to stdout, with its elapsed time. Only on a terminal: a log gets the
/// lines alone.
pub struct Live {
    current: Option<ProgressBar>,
}

impl Live {
    /// `None` when stdout is not a terminal (or is a dumb one).
    pub fn stdout() -> Option<Live> {
        is_live_terminal(&std::io::stdout()).then_some(Live { current: None })
    }

    /// Shows `what` with a clock that starts now, replacing whatever was shown.
    pub fn show(&mut self, what: &str) {
        self.clear();
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout())
            .with_style(live_style())
            .with_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.current = Some(bar);
    }

    /// Removes the spinner line.
    pub fn clear(&mut self) {
        if let Some(bar) = self.current.take() {
            bar.finish_and_clear();
        }
    }

    /// Runs `print` with the spinner line out of the way, so printed lines stay above it.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.current {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Whether `stream` gets displays that redraw their line (spinners, bars): a terminal, and not a
/// dumb one. Colour is decided apart ([`colour_enabled`]): NO_COLOR takes away the colour, not the
/// spinner.
pub fn is_live_terminal(stream: &impl IsTerminal) -> bool {
    stream.is_terminal() && !std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// Whether what kmodlab writes to `stream` may be coloured: anstream's choice from the stream and
/// the environment (a terminal that is not dumb; NO_COLOR, CLICOLOR and CLICOLOR_FORCE).
pub fn colour_enabled<S: anstream::stream::RawStream>(stream: &S) -> bool {
    anstream::AutoStream::choice(stream) != anstream::ColorChoice::Never
}

/// The spinner, cyan where colour is enabled on `stream`.
fn spinner<S: anstream::stream::RawStream>(stream: &S) -> &'static str {
    if colour_enabled(stream) {
        "{spinner:.cyan}"
    } else {
        "{spinner}"
    }
}

fn live_style() -> ProgressStyle {
    // Tenths of a second: most of these steps take well under one.
    let spinner = spinner(&std::io::stdout());
    ProgressStyle::with_template(&format!("{spinner} {{msg}} {{tenths}}"))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .with_key(
            "tenths",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
            },
        )
}

fn spinner_style() -> ProgressStyle {
    let spinner = spinner(&std::io::stderr());
    ProgressStyle::with_template(&format!("{spinner} {{prefix}} [{{elapsed}}] {{msg}}"))
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    let spinner = spinner(&std::io::stderr());
    ProgressStyle::with_template(&format!(
        "{spinner} {{prefix}} [{{elapsed}}] [{{bar:30}}] {{percent}}% {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// "0.21s", "12.3s", "4m 12s", "1h 02m".
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.2}s")
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else if secs < 3600.0 {
        format!("{}m {:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h {:02}m", d.as_secs() / 3600, d.as_secs() / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::SharedBuffer;

    #[test]
    fn plain_output_has_start_status_and_end_lines_without_escapes() {
        let out = SharedBuffer::default();
        let step = Step::plain("kernel build", Box::new(out.clone()), Duration::ZERO);
        step.set_length(10);
        step.set_position(4);
        step.set_message("4 objects");
        step.finish("bzImage 2.8 MB");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "kernel build: started");
        assert!(
            lines
                .iter()
                .any(|l| l.contains("4/10") && l.ends_with("4 objects")),
            "{text}"
        );
        assert!(
            lines.last().unwrap().starts_with("kernel build: done in "),
            "{text}"
        );
        assert!(
            lines.last().unwrap().ends_with(": bzImage 2.8 MB"),
            "{text}"
        );
        assert!(
            !text.contains('\x1b'),
            "escape code in plain output: {text:?}"
        );
    }

    #[test]
    fn plain_output_is_rate_limited() {
        let out = SharedBuffer::default();
        let step = Step::plain("boot", Box::new(out.clone()), Duration::from_secs(3600));
        for i in 0..100 {
            step.set_position(i);
        }
        step.fail("timed out");
        let text = out.text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .starts_with("boot: FAILED after "),
            "{text}"
        );
    }

    #[test]
    fn a_dropped_step_still_ends_once() {
        let out = SharedBuffer::default();
        drop(Step::plain(
            "module build",
            Box::new(out.clone()),
            Duration::ZERO,
        ));
        let text = out.text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("module build: stopped after"), "{text}");
    }

    #[test]
    fn a_file_gets_neither_live_displays_nor_colour() {
        let file = tempfile::tempfile().expect("a file");
        assert!(!is_live_terminal(&file));
        // Only CLICOLOR_FORCE colours what is not a terminal.
        if std::env::var_os("CLICOLOR_FORCE").is_none() {
            assert!(!colour_enabled(&file));
            assert_eq!(spinner(&file), "{spinner}");
        }
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(210)), "0.21s");
        assert_eq!(format_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(format_duration(Duration::from_secs(252)), "4m 12s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h 02m");
    }
}
