//! Compression: what `kmodlab initramfs` writes (gzip in process, zstd through the `zstd`
//! program) and what it recognises when listing.

use crate::host::child::KillOnDrop;
use anyhow::{anyhow, bail, Context, Result};
use std::fmt;
use std::io::{BufWriter, Read, Write};
use std::process::{ChildStdin, Command, Stdio};

/// How the archive is compressed. The kernel unpacks a compressed initramfs only if it was built
/// with the matching `CONFIG_RD_GZIP` / `CONFIG_RD_ZSTD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// gzip level 9, as the kernel's own `usr/Makefile` compresses (the flate2 crate, in process).
    Gzip,
    /// zstd level 19, as the kernel's `cmd_zstd` does (the `zstd` program: setup installs it, and
    /// it spares every build of kmodlab compiling the zstd C library for a rarely used option).
    Zstd,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Where the archive's bytes go: the file, through the compressor.
pub(super) enum Sink {
    Plain(BufWriter<std::fs::File>),
    Gzip(flate2::write::GzEncoder<BufWriter<std::fs::File>>),
    /// `zstd` reads the archive on stdin and writes the file.
    Zstd(BufWriter<ChildStdin>, KillOnDrop),
}

impl Sink {
    pub(super) fn new(file: std::fs::File, compression: Compression) -> Result<Sink> {
        Ok(match compression {
            Compression::None => Sink::Plain(BufWriter::new(file)),
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                BufWriter::new(file),
                flate2::Compression::best(),
            )),
            Compression::Zstd => {
                let zstd = crate::host::setup::require_tool("zstd")?;
                // An archive abandoned on an error must not leave zstd behind.
                let mut child = KillOnDrop::spawn(
                    Command::new(&zstd)
                        .args(["-q", "-19", "-c", "-"])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::from(file))
                        .stderr(Stdio::piped()),
                )
                .with_context(|| format!("starting {}", zstd.display()))?;
                let stdin = child
                    .take_stdin()
                    .ok_or_else(|| anyhow!("zstd's stdin is missing"))?;
                Sink::Zstd(BufWriter::new(stdin), child)
            }
        })
    }

    /// Ends compression and makes sure everything reached the file.
    pub(super) fn finish(self) -> Result<()> {
        match self {
            Sink::Plain(out) => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all().context("writing the archive")?;
            }
            Sink::Gzip(encoder) => {
                let out = encoder.finish().context("compressing with gzip")?;
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all().context("writing the archive")?;
            }
            Sink::Zstd(stdin, mut child) => {
                // Closing stdin tells zstd the archive is complete.
                drop(stdin.into_inner().map_err(|e| e.into_error())?);
                let mut messages = String::new();
                if let Some(mut stderr) = child.take_stderr() {
                    let _ = stderr.read_to_string(&mut messages);
                }
                let status = child.wait().context("waiting for zstd")?;
                if !status.success() {
                    bail!("zstd failed ({status}): {}", messages.trim());
                }
            }
        }
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(out) => out.write(buf),
            Sink::Gzip(out) => out.write(buf),
            Sink::Zstd(out, _) => out.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(out) => out.flush(),
            Sink::Gzip(out) => out.flush(),
            Sink::Zstd(out, _) => out.flush(),
        }
    }
}

/// Compressed formats the kernel's initramfs unpacker knows, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Magic {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Lzma,
    Lz4,
    Lzo,
}

impl Magic {
    pub(super) fn of(bytes: &[u8]) -> Option<Magic> {
        const TABLE: [(&[u8], Magic); 8] = [
            (&[0x1f, 0x8b], Magic::Gzip),
            (&[0x1f, 0x9e], Magic::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd], Magic::Zstd),
            (&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], Magic::Xz),
            (b"BZh", Magic::Bzip2),
            (&[0x5d, 0x00, 0x00], Magic::Lzma),
            (&[0x02, 0x21, 0x4c, 0x18], Magic::Lz4),
            (&[0x89, 0x4c, 0x5a, 0x4f], Magic::Lzo),
        ];
        TABLE
            .iter()
            .find(|(magic, _)| bytes.starts_with(magic))
            .map(|(_, m)| *m)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Magic::Gzip => "gzip",
            Magic::Zstd => "zstd",
            Magic::Xz => "xz-compressed",
            Magic::Bzip2 => "bzip2-compressed",
            Magic::Lzma => "lzma-compressed",
            Magic::Lz4 => "lz4-compressed",
            Magic::Lzo => "lzo-compressed",
        }
    }

    pub(super) fn hint(self) -> &'static str {
        match self {
            Magic::Xz => "xz -dc FILE > plain.cpio",
            Magic::Bzip2 => "bzip2 -dc FILE > plain.cpio",
            Magic::Lzma => "xz --format=lzma -dc FILE > plain.cpio",
            Magic::Lz4 => "lz4 -dc FILE > plain.cpio",
            Magic::Lzo => "lzop -dc FILE > plain.cpio",
            Magic::Gzip | Magic::Zstd => "",
        }
    }
}

/// Decompresses one zstd frame with the `zstd` program.
pub(super) fn zstd_decompress(data: &[u8]) -> Result<Vec<u8>> {
    let zstd = crate::host::setup::require_tool("zstd")?;
    let mut child = Command::new(&zstd)
        .args(["-q", "-d", "-c", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", zstd.display()))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("zstd's stdin is missing"))?;
    // Feed stdin from a thread while this one drains stdout, so neither pipe can fill and stall.
    let input = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().context("waiting for zstd")?;
    let fed = feeder
        .join()
        .map_err(|_| anyhow!("the thread feeding zstd panicked"))?;
    if !output.status.success() {
        bail!(
            "zstd failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    fed.context("feeding zstd")?;
    Ok(output.stdout)
}
