//! QEMU's monitor protocol (QMP), as much as saving a snapshot needs: commands in, their returns
//! out, asynchronous events skipped.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A QMP session on QEMU's end of a socket pair.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Reads QEMU's greeting and leaves capabilities negotiation, ready for commands.
    pub fn connect(stream: UnixStream, timeout: Duration) -> Result<Qmp> {
        stream
            .set_read_timeout(Some(timeout))
            .context("setting the monitor's read timeout")?;
        let writer = stream.try_clone().context("cloning the monitor socket")?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            bail!("QEMU's monitor did not greet with QMP: {greeting}");
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs one command; its `return` value, or its error as an error.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let request = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{request}").with_context(|| format!("sending {command} to QEMU"))?;
        loop {
            let message = self.read_message()?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let desc = error.get("desc").and_then(Value::as_str).unwrap_or("?");
                bail!("QEMU refused {command}: {desc}");
            }
            // An event ({"event": ...}): not an answer.
        }
    }

    /// Waits until the guest runs (true), or `limit` passes (false): a VM restored with
    /// `-incoming` runs once the state is loaded, and what reaches its devices before that is lost.
    pub fn wait_until_running(&mut self, limit: Duration) -> Result<bool> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let status = self.execute("query-status", json!({}))?;
            if status.get("running").and_then(Value::as_bool) == Some(true) {
                return Ok(true);
            }
            if std::time::Instant::now() > deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .context("reading QEMU's monitor")?;
        if n == 0 {
            let closed =
                std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "QEMU closed its monitor");
            return Err(closed.into());
        }
        serde_json::from_str(&line).with_context(|| format!("QEMU's monitor said {line:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_get_their_returns_past_events_and_errors_name_the_command() {
        let (ours, mut qemu) = UnixStream::pair().unwrap();
        let fake = std::thread::spawn(move || {
            let mut input = BufReader::new(qemu.try_clone().unwrap());
            qemu.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut line = String::new();
            for answer in [
                "{\"return\": {}}\n",
                "{\"event\": \"STOP\"}\n{\"return\": {\"status\": \"completed\"}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such thing\"}}\n",
            ] {
                line.clear();
                input.read_line(&mut line).unwrap();
                assert!(line.contains("\"execute\""), "{line}");
                qemu.write_all(answer.as_bytes()).unwrap();
            }
        });
        let mut qmp = Qmp::connect(ours, Duration::from_secs(5)).unwrap();
        let status = qmp.execute("query-migrate", json!({})).unwrap();
        assert_eq!(status["status"], "completed");
        let err = qmp.execute("bogus", json!({})).unwrap_err();
        assert_eq!(err.to_string(), "QEMU refused bogus: no such thing");
        fake.join().unwrap();
    }
}
