//! Standalone initramfs archives (`kmodlab initramfs`): built from a description in the kernel's
//! `gen_init_cpio` format or from a folder, optionally compressed, and listed back.
//!
//! The description format is the one `usr/gen_init_cpio.c` reads, one entry per line:
//!
//! ```text
//! # a comment
//! file <name> <location> <mode> <uid> <gid> [<hard links>]
//! dir <name> <mode> <uid> <gid>
//! nod <name> <mode> <uid> <gid> <dev_type> <maj> <min>
//! slink <name> <target> <mode> <uid> <gid>
//! pipe <name> <mode> <uid> <gid>
//! sock <name> <mode> <uid> <gid>
//! ```
//!
//! `<mode>` is octal permission bits, `<uid>`/`<gid>` decimal, `<dev_type>` `c` or `b`, and a
//! `<location>` may use `${VAR}`. Where kmodlab is stricter than `gen_init_cpio` it says so in the
//! error: an unknown entry type, a missing or extra field, type bits in `<mode>`, an unset
//! `${VAR}` and a device type other than `c`/`b` are errors that name the file, the line and the
//! field, where `gen_init_cpio` warns or guesses. A relative `<location>` is taken from the
//! description's own folder (gen_init_cpio: the current folder). Times are 0 in every entry, so
//! the same inputs give the same bytes (gen_init_cpio: the file's mtime and the current time).
//! A symlink's `<mode>` is checked but stored as 0777, since Linux ignores it.

use crate::guest::initramfs::{self, Entry, Writer};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::HashMap;
use std::fmt;
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

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

/// One line of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescEntry {
    /// 1-based line number in the description.
    pub line: usize,
    pub name: String,
    /// Permission bits (at most 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: DescKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DescKind {
    /// A regular file copied from `location`; `links` are further names of it (hard links).
    File {
        location: PathBuf,
        links: Vec<String>,
    },
    Dir,
    Nod {
        block: bool,
        major: u32,
        minor: u32,
    },
    Slink {
        target: String,
    },
    Pipe,
    Sock,
}

/// The fields each entry type takes after the type word, as gen_init_cpio's usage names them.
fn fields_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "file" => &["name", "location", "mode", "uid", "gid"],
        "dir" | "pipe" | "sock" => &["name", "mode", "uid", "gid"],
        "nod" => &["name", "mode", "uid", "gid", "dev_type", "maj", "min"],
        "slink" => &["name", "target", "mode", "uid", "gid"],
        _ => return None,
    })
}

/// Errors shown at most, so that a wrong file does not flood the terminal.
const MAX_ERRORS: usize = 20;

/// Parses a description. `file` is only used in messages and to resolve relative locations
/// (against its folder); `env` looks up `${VAR}` in locations. Every problem in the text is
/// reported, each as `FILE:LINE: ...`.
pub fn parse(
    text: &str,
    file: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<DescEntry>> {
    let base = file.parent().unwrap_or(Path::new(""));
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        match parse_line(raw, base, env) {
            Ok(Some(entry)) => entries.push(DescEntry { line, ..entry }),
            Ok(None) => {}
            Err(e) => errors.push(format!("{}:{line}: {e}", file.display())),
        }
    }
    match errors.len() {
        0 => Ok(entries),
        1 => Err(anyhow!(errors.remove(0))),
        n => {
            let shown: Vec<String> = errors.into_iter().take(MAX_ERRORS).collect();
            let more = if n > MAX_ERRORS {
                format!("\n... and {} more", n - MAX_ERRORS)
            } else {
                String::new()
            };
            Err(anyhow!("{n} errors:\n{}{more}", shown.join("\n")))
        }
    }
}

/// One line: `None` for blank lines and comments. The returned entry's `line` is 0.
fn parse_line(
    raw: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<DescEntry>> {
    let mut words = raw.split_whitespace();
    let Some(kind) = words.next() else {
        return Ok(None);
    };
    if kind.starts_with('#') {
        return Ok(None);
    }
    let Some(names) = fields_of(kind) else {
        bail!("unknown entry type `{kind}` (expected file, dir, nod, slink, pipe or sock)");
    };
    let usage = || {
        let mut text = format!(
            "`{kind} {}`",
            names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if kind == "file" {
            text.insert_str(text.len() - 1, " [<hard links>]");
        }
        text
    };
    let words: Vec<&str> = words.collect();
    if let Some(comment) = words.iter().find(|w| w.starts_with('#')) {
        bail!(
            "`{comment}`: a comment must be on a line of its own (the line is {})",
            usage()
        );
    }
    if words.len() < names.len() {
        bail!(
            "missing field <{}>: the line is {}",
            names[words.len()],
            usage()
        );
    }
    if words.len() > names.len() && kind != "file" {
        bail!(
            "unexpected extra field `{}`: the line is {}",
            words[names.len()],
            usage()
        );
    }
    let field = |name: &str| {
        let at = names.iter().position(|n| *n == name).unwrap_or_default();
        words[at]
    };
    let mode = parse_mode(field("mode"))?;
    let uid = parse_id("uid", field("uid"))?;
    let gid = parse_id("gid", field("gid"))?;
    let kind = match kind {
        "file" => {
            let expanded = expand_env(field("location"), env)?;
            let location = base.join(expanded);
            let links = words[names.len()..].iter().map(|s| s.to_string()).collect();
            DescKind::File { location, links }
        }
        "dir" => DescKind::Dir,
        "pipe" => DescKind::Pipe,
        "sock" => DescKind::Sock,
        "slink" => DescKind::Slink {
            target: field("target").to_string(),
        },
        _ => {
            let block = match field("dev_type") {
                "b" => true,
                "c" => false,
                other => bail!(
                    "field <dev_type>: `{other}` is neither `c` (character device) nor `b` \
                     (block device)"
                ),
            };
            let number = |name: &str| {
                field(name).parse::<u32>().map_err(|_| {
                    anyhow!(
                        "field <{name}>: `{}` is not a decimal device number",
                        field(name)
                    )
                })
            };
            DescKind::Nod {
                block,
                major: number("maj")?,
                minor: number("min")?,
            }
        }
    };
    Ok(Some(DescEntry {
        line: 0,
        name: field("name").to_string(),
        mode,
        uid,
        gid,
        kind,
    }))
}

fn parse_mode(text: &str) -> Result<u32> {
    let mode = text
        .bytes()
        .all(|b| (b'0'..=b'7').contains(&b))
        .then(|| u32::from_str_radix(text, 8).ok())
        .flatten()
        .ok_or_else(|| anyhow!("field <mode>: `{text}` is not an octal number such as 0755"))?;
    if mode > 0o7777 {
        bail!(
            "field <mode>: `{text}` has bits beyond 07777; give the permission bits only, the \
             entry type sets the rest"
        );
    }
    Ok(mode)
}

fn parse_id(name: &str, text: &str) -> Result<u32> {
    text.parse::<u32>()
        .map_err(|_| anyhow!("field <{name}>: `{text}` is not a number from 0 to 4294967295"))
}

/// Replaces each `${VAR}` as gen_init_cpio does, but refuses an unset variable rather than
/// silently making it empty.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let var = &rest[start + 2..start + 2 + len];
        let value = env(var).ok_or_else(|| {
            anyhow!("field <location>: `{text}` uses ${{{var}}}, which is not set")
        })?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Adds the described entries to `writer`, in order. Errors name the description and the line.
pub fn write_entries<W: Write>(
    entries: &[DescEntry],
    file: &Path,
    writer: &mut Writer<W>,
) -> Result<()> {
    for entry in entries {
        writer.set_owner(entry.uid, entry.gid);
        let name = entry.name.as_str();
        let mode = entry.mode;
        let added = match &entry.kind {
            DescKind::File { location, links } if links.is_empty() => {
                writer.file_from_path(name, mode, location)
            }
            DescKind::File { location, links } => {
                let mut names = vec![name];
                names.extend(links.iter().map(String::as_str));
                writer.hard_linked_file_from_path(&names, mode, location)
            }
            DescKind::Dir => writer.dir(name, mode),
            DescKind::Nod {
                block: false,
                major,
                minor,
            } => writer.char_device(name, mode, *major, *minor),
            DescKind::Nod {
                block: true,
                major,
                minor,
            } => writer.block_device(name, mode, *major, *minor),
            DescKind::Slink { target } => writer.symlink(name, target),
            DescKind::Pipe => writer.fifo(name, mode),
            DescKind::Sock => writer.socket(name, mode),
        };
        added.with_context(|| format!("{}:{}", file.display(), entry.line))?;
    }
    writer.set_owner(0, 0);
    Ok(())
}

/// Adds a folder's tree (not the folder itself) to `writer`: directories, files, symlinks, device
/// nodes, fifos and sockets with their permission bits, owned by root; files hard-linked to each
/// other inside the tree stay hard links. Returns how many entries it added.
pub fn write_tree<W: Write>(dir: &Path, writer: &mut Writer<W>) -> Result<usize> {
    let mut found = Vec::new();
    walk(dir, "", &mut found)?;
    // Hard links: every name of one inode, so the group can be written at its last name (when
    // all their parents have been written).
    let mut groups: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    for (rel, _, meta) in &found {
        if meta.is_file() && meta.nlink() > 1 {
            groups
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
    }
    let mut count = 0;
    for (rel, path, meta) in &found {
        let mode = meta.mode() & 0o7777;
        let kind = meta.file_type();
        let mut names_added = 1;
        let added = if kind.is_dir() {
            writer.dir(rel, mode)
        } else if kind.is_file() {
            match groups.get(&(meta.dev(), meta.ino())) {
                Some(names) if names.len() > 1 => {
                    if names.last() != Some(rel) {
                        continue;
                    }
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    names_added = names.len();
                    writer.hard_linked_file_from_path(&names, mode, path)
                }
                _ => writer.file_from_path(rel, mode, path),
            }
        } else if kind.is_symlink() {
            let target = std::fs::read_link(path)
                .with_context(|| format!("reading the symlink {}", path.display()))?;
            let Some(target) = target.to_str() else {
                bail!(
                    "{}: the symlink's target is not UTF-8, which kmodlab cannot store",
                    path.display()
                );
            };
            writer.symlink(rel, target)
        } else if kind.is_char_device() || kind.is_block_device() {
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            if kind.is_char_device() {
                writer.char_device(rel, mode, major, minor)
            } else {
                writer.block_device(rel, mode, major, minor)
            }
        } else if kind.is_fifo() {
            writer.fifo(rel, mode)
        } else if kind.is_socket() {
            writer.socket(rel, mode)
        } else {
            bail!("{}: unknown file type", path.display());
        };
        added.with_context(|| format!("adding {}", path.display()))?;
        count += names_added;
    }
    Ok(count)
}

/// Every entry below `dir`, parents before children, names sorted for a reproducible archive.
fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf, std::fs::Metadata)>,
) -> Result<()> {
    let mut children = std::fs::read_dir(dir)
        .with_context(|| format!("reading the folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading the folder {}", dir.display()))?;
    children.sort();
    for path in children {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            bail!(
                "{}: the name is not UTF-8, which kmodlab cannot store",
                path.display()
            );
        };
        let rel = format!("{prefix}/{name}");
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let is_dir = meta.is_dir();
        out.push((rel.clone(), path.clone(), meta));
        if is_dir {
            walk(&path, &rel, out)?;
        }
    }
    Ok(())
}

/// What [`build`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Built {
    /// Entries in the archive, parent directories added on the way included.
    pub entries: usize,
    /// Size of the cpio archive before compression.
    pub archive_bytes: u64,
    /// Size of the file written.
    pub file_bytes: u64,
}

/// Builds `output` from a description file or a folder. The file appears only when complete.
pub fn build(input: &Path, output: &Path, compression: Compression) -> Result<Built> {
    let meta = std::fs::metadata(input).with_context(|| format!("reading {}", input.display()))?;
    let desc = if meta.is_dir() {
        None
    } else {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading the description {}", input.display()))?;
        Some(parse(&text, input, &|var| std::env::var(var).ok())?)
    };
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))?;
    let file = temp
        .reopen()
        .with_context(|| format!("opening {}", temp.path().display()))?;
    let mut writer = Writer::new(Counting::new(Sink::new(file, compression)?));
    match &desc {
        Some(entries) => write_entries(entries, input, &mut writer)?,
        None => {
            write_tree(input, &mut writer)?;
        }
    }
    let entries = writer.len();
    let counting = writer.finish()?;
    let archive_bytes = counting.count;
    counting.inner.finish()?;
    temp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    let file_bytes = std::fs::metadata(output)
        .with_context(|| format!("reading {}", output.display()))?
        .len();
    Ok(Built {
        entries,
        archive_bytes,
        file_bytes,
    })
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W> Counting<W> {
    fn new(inner: W) -> Self {
        Counting { inner, count: 0 }
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the archive's bytes go: the file, through the compressor.
enum Sink {
    Plain(BufWriter<std::fs::File>),
    Gzip(flate2::write::GzEncoder<BufWriter<std::fs::File>>),
    /// `zstd` reads the archive on stdin and writes the file.
    Zstd(BufWriter<ChildStdin>, Reaped),
}

/// A child process that is killed and waited for if it is dropped before [`Reaped::take`].
struct Reaped(Option<Child>);

impl Reaped {
    fn take(mut self) -> Result<Child> {
        self.0
            .take()
            .ok_or_else(|| anyhow!("the child process is gone"))
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        // An archive abandoned on an error must not leave zstd behind.
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Sink {
    fn new(file: std::fs::File, compression: Compression) -> Result<Sink> {
        Ok(match compression {
            Compression::None => Sink::Plain(BufWriter::new(file)),
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                BufWriter::new(file),
                flate2::Compression::best(),
            )),
            Compression::Zstd => {
                let zstd = crate::host::setup::require_tool("zstd")?;
                let mut child = Command::new(&zstd)
                    .args(["-q", "-19", "-c", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::from(file))
                    .stderr(Stdio::piped())
                    .spawn()
                    .with_context(|| format!("starting {}", zstd.display()))?;
                let stdin = child
                    .stdin
                    .take()
                    .ok_or_else(|| anyhow!("zstd's stdin is missing"))?;
                Sink::Zstd(BufWriter::new(stdin), Reaped(Some(child)))
            }
        })
    }

    /// Ends compression and makes sure everything reached the file.
    fn finish(self) -> Result<()> {
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
            Sink::Zstd(stdin, child) => {
                // Closing stdin tells zstd the archive is complete.
                drop(stdin.into_inner().map_err(|e| e.into_error())?);
                let output = child
                    .take()?
                    .wait_with_output()
                    .context("waiting for zstd")?;
                if !output.status.success() {
                    bail!(
                        "zstd failed ({}): {}",
                        output.status,
                        String::from_utf8_lossy(&output.stderr).trim()
                    );
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
            let (entries, end) = initramfs::read_archive(bytes, at)?;
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

/// Compressed formats the kernel's initramfs unpacker knows, by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Magic {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Lzma,
    Lz4,
    Lzo,
}

impl Magic {
    fn of(bytes: &[u8]) -> Option<Magic> {
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

    fn name(self) -> &'static str {
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

    fn hint(self) -> &'static str {
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

fn zstd_decompress(data: &[u8]) -> Result<Vec<u8>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_text(text: &str) -> Result<Vec<DescEntry>> {
        parse(text, Path::new("/d/list.txt"), &no_env)
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse_text(text).unwrap_err())
    }

    #[test]
    fn every_entry_type_of_gen_init_cpio_parses() {
        let text = "\
# A simple initramfs
dir /dev 0755 0 0
nod /dev/console 0600 0 0 c 5 1

  # indented comment
nod /dev/vda 0660 0 6 b 254 0
dir /root 0700 0 0
file /sbin/kinit kinit 0755 0 0
file /bin/a /abs/a 4755 1000 1000 /bin/b /bin/c
slink /bin/sh busybox 0777 0 0
pipe /run/fifo 0600 0 0
sock\t/run/sock\t0755 0 0\r
";
        let entries = parse_text(text).unwrap();
        let lines: Vec<usize> = entries.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(
            entries[1].kind,
            DescKind::Nod {
                block: false,
                major: 5,
                minor: 1
            }
        );
        assert_eq!((entries[2].gid, entries[2].mode), (6, 0o660));
        assert_eq!(
            entries[4].kind,
            DescKind::File {
                location: "/d/kinit".into(),
                links: vec![]
            },
            "relative locations are taken from the description's folder"
        );
        assert_eq!(
            entries[5],
            DescEntry {
                line: 9,
                name: "/bin/a".into(),
                mode: 0o4755,
                uid: 1000,
                gid: 1000,
                kind: DescKind::File {
                    location: "/abs/a".into(),
                    links: vec!["/bin/b".into(), "/bin/c".into()]
                }
            }
        );
        assert_eq!(
            entries[6].kind,
            DescKind::Slink {
                target: "busybox".into()
            }
        );
        assert_eq!(entries[8].kind, DescKind::Sock);
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let cases = [
            ("dir /a 0755 0 0\nfolder /b 0755 0 0", "/d/list.txt:2: unknown entry type `folder`"),
            ("dir /a 0755 0", "/d/list.txt:1: missing field <gid>: the line is `dir <name> <mode> <uid> <gid>`"),
            ("\n\nnod /dev/x 0600 0 0 c 5", "/d/list.txt:3: missing field <min>"),
            ("dir /a 0755 0 0 extra", "/d/list.txt:1: unexpected extra field `extra`"),
            ("dir /a 0x755 0 0", "/d/list.txt:1: field <mode>: `0x755` is not an octal number"),
            ("dir /a 0785 0 0", "field <mode>: `0785` is not an octal"),
            ("file /a /b 100644 0 0", "/d/list.txt:1: field <mode>: `100644` has bits beyond 07777"),
            ("pipe /p 0600 -1 0", "/d/list.txt:1: field <uid>: `-1` is not a number"),
            ("sock /s 0600 0 root", "field <gid>: `root` is not a number"),
            ("nod /dev/x 0600 0 0 u 1 3", "/d/list.txt:1: field <dev_type>: `u` is neither"),
            ("nod /dev/x 0600 0 0 c one 3", "field <maj>: `one` is not a decimal"),
            ("file /a ${KMODLAB_NOPE}/a 0644 0 0", "/d/list.txt:1: field <location>: `${KMODLAB_NOPE}/a` uses ${KMODLAB_NOPE}, which is not set"),
            ("dir /a 0755 0 0 # root", "a comment must be on a line of its own"),
            ("file /a /b 0644 0 0 /c # x", "a comment must be on a line of its own"),
        ];
        for (text, expected) in cases {
            let err = error(text);
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let many = error("x\ny\ndir /a 0755 0 0\nz");
        assert!(
            many.starts_with("3 errors:\n/d/list.txt:1: ")
                && many.contains("\n/d/list.txt:2: ")
                && many.contains("\n/d/list.txt:4: "),
            "{many}"
        );
    }

    #[test]
    fn locations_expand_variables() {
        let env = |var: &str| (var == "SRC").then(|| "/src".to_string());
        let entries = parse(
            "file /a ${SRC}/x/${SRC}y 0644 0 0\nfile /b ${unterminated 0644 0 0",
            Path::new("list"),
            &env,
        )
        .unwrap();
        assert_eq!(
            entries[0].kind,
            DescKind::File {
                location: "/src/x//srcy".into(),
                links: vec![]
            }
        );
        assert_eq!(
            entries[1].kind,
            DescKind::File {
                location: "${unterminated".into(),
                links: vec![]
            }
        );
    }

    #[test]
    fn writer_errors_carry_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("list.txt");
        let write = |text: &str| {
            let entries = parse(text, &list, &no_env).unwrap();
            let mut w = Writer::new(Vec::new());
            write_entries(&entries, &list, &mut w).map(|_| ())
        };
        let err = format!(
            "{:#}",
            write("dir /a 0755 0 0\nnod /a/x 0600 0 0 c 4096 0").unwrap_err()
        );
        assert!(
            err.contains("list.txt:2:") && err.contains("4096:0 does not fit"),
            "{err}"
        );
        let err = format!("{:#}", write("file /a missing 0644 0 0").unwrap_err());
        assert!(
            err.contains("list.txt:1:") && err.contains("missing"),
            "{err}"
        );
        let err = format!(
            "{:#}",
            write("dir /a 0755 0 0\ndir /a 0755 0 0").unwrap_err()
        );
        assert!(
            err.contains("list.txt:2:") && err.contains("duplicate"),
            "{err}"
        );
    }

    #[test]
    fn a_description_and_a_folder_give_the_entries_they_describe() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("tree");
        std::fs::create_dir_all(src.join("bin")).unwrap();
        std::fs::create_dir_all(src.join("etc/empty")).unwrap();
        std::fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        std::fs::hard_link(src.join("bin/tool"), src.join("etc/tool-link")).unwrap();
        std::os::unix::fs::symlink("tool", src.join("bin/sh")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(src.join("bin/tool"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::fs::set_permissions(
            src.join("etc/empty"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let out = dir.path().join("tree.cpio");
        let built = build(&src, &out, Compression::None).unwrap();
        assert_eq!(built.entries, 6);
        let listed = list(&out).unwrap();
        let lines: Vec<String> = listed.iter().map(Listed::line).collect();
        let names: Vec<&str> = listed.iter().map(|l| l.entry.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "etc",
                "etc/empty",
                "bin/tool",
                "etc/tool-link"
            ],
            "{lines:#?}"
        );
        assert_eq!(lines[1], "lrwxrwxrwx       0/0          4 bin/sh -> tool");
        assert_eq!(lines[3], "drwx------       0/0          0 etc/empty");
        let tool = &listed[4].entry;
        let link = &listed[5].entry;
        assert_eq!((tool.ino, tool.nlink, tool.size), (link.ino, 2, 0));
        assert_eq!((link.size, link.mode), (10, 0o100750));

        let desc = dir.path().join("list.txt");
        std::fs::write(
            &desc,
            "dir /dev 0755 0 0\nnod /dev/console 0600 0 0 c 5 1\nfile /init tree/bin/tool 0755 0 0\n\
             slink /bin/sh /init 0777 0 0\npipe /run/p 0620 1 2\n",
        )
        .unwrap();
        for compression in [Compression::None, Compression::Gzip] {
            let out = dir.path().join(format!("desc.{compression}"));
            let built = build(&desc, &out, compression).unwrap();
            assert_eq!(built.entries, 7, "with the parents bin and run");
            let lines: Vec<String> = list(&out).unwrap().iter().map(Listed::line).collect();
            assert_eq!(
                lines,
                [
                    "drwxr-xr-x       0/0          0 dev",
                    "crw-------       0/0       5, 1 dev/console",
                    "-rwxr-xr-x       0/0         10 init",
                    "drwxr-xr-x       0/0          0 bin",
                    "lrwxrwxrwx       0/0          5 bin/sh -> /init",
                    "drwxr-xr-x       0/0          0 run",
                    "prw--w----       1/2          0 run/p",
                ],
                "{compression}"
            );
        }
        let gz = std::fs::read(dir.path().join("desc.gzip")).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
    }

    #[test]
    fn a_failed_build_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let desc = dir.path().join("list.txt");
        std::fs::write(&desc, "dir /a 0755 0 0\nfile /a/b nowhere 0644 0 0\n").unwrap();
        let out = dir.path().join("out.cpio");
        let err = format!("{:#}", build(&desc, &out, Compression::Gzip).unwrap_err());
        assert!(err.contains("list.txt:2:"), "{err}");
        assert!(!out.exists());
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "only the description remains");
    }

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
