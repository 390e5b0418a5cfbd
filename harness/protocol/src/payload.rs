//! What the host sends a VM restored from a snapshot: the plan and the files it names.
//!
//! A snapshot is saved while the agent waits with nothing in its initramfs but itself, so each
//! run's plan, modules and companion programs travel over the payload port instead: a line with
//! [`MAGIC`], a line of JSON ([`Header`]), then each file's bytes back to back, in the header's
//! order. The agent skips whatever comes before the magic line: right after a restore the first
//! bytes sent were seen to be lost, so the host sends a few newlines first.

use crate::Plan;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};

/// The name of the virtio console port the payload comes through (`/sys/class/virtio-ports/*/name`).
pub const PORT_NAME: &str = "kmodlab.payload";

/// The line that starts a payload.
pub const MAGIC: &str = "KMODLAB-PAYLOAD-1";

/// Newlines sent before [`MAGIC`], for the bytes a restore may swallow.
const PREAMBLE: &[u8] = b"\n\n\n\n\n\n\n\n";

/// The longest header accepted: a plan of thousands of tests fits; a stream of garbage does not
/// make the agent allocate without end.
const MAX_HEADER: u64 = 16 << 20;

/// The plan and what follows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub plan: Plan,
    pub files: Vec<FileEntry>,
}

/// One file of the payload: where it goes in the guest, its mode and its length.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub mode: u32,
    pub size: u64,
}

/// Writes a payload: `files` holds each entry of `header.files` with a reader of exactly its
/// size, in the same order.
pub fn write<W: Write>(
    out: &mut W,
    header: &Header,
    files: impl IntoIterator<Item = impl Read>,
) -> std::io::Result<()> {
    out.write_all(PREAMBLE)?;
    out.write_all(MAGIC.as_bytes())?;
    out.write_all(b"\n")?;
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")?;
    for (entry, file) in header.files.iter().zip(files) {
        let copied = std::io::copy(&mut file.take(entry.size), out)?;
        if copied != entry.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: {copied} bytes, not {}", entry.path, entry.size),
            ));
        }
    }
    out.flush()
}

/// Reads a payload's header, skipping whatever came before its magic line; the files' bytes
/// follow in `input`, to be taken with [`read_file`] in the header's order.
pub fn read_header<R: BufRead>(input: &mut R) -> Result<Header, String> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .take(MAX_HEADER)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the payload: {e}"))?;
        if n == 0 {
            return Err("the payload port closed before a payload came".into());
        }
        // Only the line's end is compared: a byte lost before it is no matter.
        if line.trim_ascii_end().ends_with(MAGIC.as_bytes()) {
            break;
        }
    }
    line.clear();
    input
        .take(MAX_HEADER)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading the payload's header: {e}"))?;
    serde_json::from_slice(&line).map_err(|e| format!("the payload's header: {e}"))
}

/// Reads the next file of a payload into memory.
pub fn read_file<R: Read>(input: &mut R, entry: &FileEntry) -> Result<Vec<u8>, String> {
    let size = usize::try_from(entry.size).map_err(|e| format!("{}: {e}", entry.path))?;
    let mut bytes = vec![0; size];
    input
        .read_exact(&mut bytes)
        .map_err(|e| format!("reading {} ({} bytes): {e}", entry.path, entry.size))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            plan: Plan { tests: vec![] },
            files: vec![
                FileEntry {
                    path: "/lib/modules/x/extra/a.ko".into(),
                    mode: 0o644,
                    size: 3,
                },
                FileEntry {
                    path: "/kmodlab/bin/m/p".into(),
                    mode: 0o755,
                    size: 0,
                },
            ],
        }
    }

    #[test]
    fn a_payload_reads_back_after_lost_and_stray_bytes() {
        let mut sent = Vec::new();
        write(&mut sent, &header(), [&b"abc"[..], &b""[..]]).unwrap();
        // A restore swallowed the first bytes; noise came before.
        let mut received = b"noise".to_vec();
        received.extend_from_slice(&sent[3..]);
        let mut input = std::io::Cursor::new(received);
        let got = read_header(&mut input).unwrap();
        assert_eq!(got, header());
        assert_eq!(read_file(&mut input, &got.files[0]).unwrap(), b"abc");
        assert_eq!(read_file(&mut input, &got.files[1]).unwrap(), b"");
    }

    #[test]
    fn a_short_file_is_an_error_on_both_sides() {
        let err = write(&mut Vec::new(), &header(), [&b"ab"[..], &b""[..]]).unwrap_err();
        assert!(err.to_string().contains("a.ko: 2 bytes, not 3"), "{err}");
        let mut sent = Vec::new();
        write(&mut sent, &header(), [&b"abc"[..], &b""[..]]).unwrap();
        sent.truncate(sent.len() - 1);
        let mut input = std::io::Cursor::new(sent);
        let got = read_header(&mut input).unwrap();
        let err = read_file(&mut input, &got.files[0]).unwrap_err();
        assert!(err.contains("a.ko (3 bytes)"), "{err}");
        let err = read_header(&mut std::io::Cursor::new(b"\n\n")).unwrap_err();
        assert!(err.contains("closed before a payload"), "{err}");
    }
}
