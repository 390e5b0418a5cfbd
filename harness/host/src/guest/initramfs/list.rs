//! `kmodlab initramfs --list`: every archive in an initramfs file, as the kernel would unpack them.

use super::compress::{zstd_decompress, Compression, Magic};
use super::reader::{read_archive, Entry};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::Path;

/// One entry of a listed archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub entry: Entry,
    /// A symlink's target.
    pub link_target: Option<String>,
    /// Which archive of the file it is in (from 1; the kernel accepts several back to back) and
    /// how that part was compressed.
    pub part: usize,
    pub compression: Compression,
}

impl Listed {
    /// One line: type and permissions, owner, size (or `major, minor` for device nodes), name,
    /// and `-> target` for symlinks. Like `cpio -tv` without the link count and the time.
    pub fn line(&self) -> String {
        let e = &self.entry;
        let size = match e.type_char() {
            'c' | 'b' => format!("{}, {}", e.rdev.0, e.rdev.1),
            _ => e.size.to_string(),
        };
        let mut line = format!(
            "{} {:>9} {:>10} {}",
            e.mode_string(),
            format!("{}/{}", e.uid, e.gid),
            size,
            e.name
        );
        if let Some(target) = &self.link_target {
            line.push_str(" -> ");
            line.push_str(target);
        }
        line
    }
}

/// Lists an initramfs file: every archive in it, compressed (gzip, zstd) or not, as the kernel
/// would unpack them.
pub fn list(path: &Path) -> Result<Vec<Listed>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    list_bytes(&bytes).with_context(|| format!("reading the initramfs {}", path.display()))
}

/// [`list`] on bytes in memory.
pub fn list_bytes(bytes: &[u8]) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    list_into(bytes, Compression::None, true, &mut out)?;
    if out.is_empty() && bytes.iter().all(|b| *b == 0) {
        bail!("it is empty (no cpio archive in it)");
    }
    Ok(out)
}

/// Reads the archives in `bytes`; `top` allows compressed parts (the kernel does not accept
/// compressed data inside compressed data).
fn list_into(
    bytes: &[u8],
    compression: Compression,
    top: bool,
    out: &mut Vec<Listed>,
) -> Result<()> {
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest[0] == 0 {
            at += 1;
            continue;
        }
        if rest.starts_with(b"0707") {
            let (entries, end) = read_archive(bytes, at)?;
            let part = out.last().map_or(0, |l: &Listed| l.part) + 1;
            for entry in entries {
                let link_target = (entry.type_char() == 'l')
                    .then(|| String::from_utf8_lossy(entry.data_in(bytes)).into_owned());
                out.push(Listed {
                    entry,
                    link_target,
                    part,
                    compression,
                });
            }
            at = end.max(at + 1);
            continue;
        }
        let magic = Magic::of(rest);
        match (magic, top) {
            (Some(Magic::Gzip), true) => {
                let mut decoder = flate2::bufread::GzDecoder::new(rest);
                let mut plain = Vec::new();
                decoder
                    .read_to_end(&mut plain)
                    .with_context(|| format!("offset {at}: decompressing gzip data"))?;
                let left = decoder.into_inner().len();
                list_into(&plain, Compression::Gzip, false, out)?;
                at = bytes.len() - left;
            }
            (Some(Magic::Zstd), true) => {
                // The kernel stops after the zstd frame; the `zstd` program would take trailing
                // padding for another frame, so leave it out.
                let end = bytes.iter().rposition(|b| *b != 0).map_or(at, |i| i + 1);
                let plain = zstd_decompress(&bytes[at..end])
                    .with_context(|| format!("offset {at}: decompressing zstd data"))?;
                list_into(&plain, Compression::Zstd, false, out)?;
                at = bytes.len();
            }
            (Some(other), true) => bail!(
                "offset {at}: {} data; kmodlab reads gzip and zstd, so decompress it first \
                 (e.g. `{}`)",
                other.name(),
                other.hint()
            ),
            (_, false) => bail!(
                "offset {at} of the {compression} data: junk after the cpio archive (the kernel \
                 would refuse it too)"
            ),
            (None, true) => bail!(
                "offset {at}: neither a newc cpio archive nor compressed data (it starts with {:02x?})",
                &rest[..rest.len().min(6)]
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::initramfs::Writer;
    use std::io::Write;

    #[test]
    fn listing_follows_the_kernels_rules_for_several_and_compressed_parts() {
        let plain = {
            let mut w = Writer::new(Vec::new());
            w.file("a", 0o644, b"x").unwrap();
            w.finish().unwrap()
        };
        let gzipped = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let mut w = Writer::new(Vec::new());
            w.file("b", 0o644, b"yy").unwrap();
            e.write_all(&w.finish().unwrap()).unwrap();
            e.finish().unwrap()
        };
        // An uncompressed part (like early microcode), padding, then a compressed one.
        let mut both = plain.clone();
        both.extend_from_slice(&[0; 12]);
        both.extend_from_slice(&gzipped);
        both.extend_from_slice(&[0; 3]);
        let listed = list_bytes(&both).unwrap();
        let seen: Vec<(&str, usize, Compression)> = listed
            .iter()
            .map(|l| (l.entry.name.as_str(), l.part, l.compression))
            .collect();
        assert_eq!(
            seen,
            [("a", 1, Compression::None), ("b", 2, Compression::Gzip)]
        );

        let err = list_bytes(&[0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("xz-compressed") && err.contains("xz -dc"),
            "{err}"
        );
        let err = list_bytes(b"hello world").unwrap_err().to_string();
        assert!(err.contains("neither a newc cpio archive"), "{err}");
        let err = list_bytes(&[0; 16]).unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
    }
}
