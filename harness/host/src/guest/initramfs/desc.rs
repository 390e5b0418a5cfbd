//! Descriptions in the kernel's `gen_init_cpio` format, for `kmodlab initramfs`.
//!
//! The format is the one `usr/gen_init_cpio.c` reads, one entry per line:
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

use crate::guest::initramfs::Writer;
use anyhow::{anyhow, bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

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
    let words: Vec<&str> = words.collect();
    check_field_count(kind, names, &words)?;
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
        _ => parse_nod(field("dev_type"), field("maj"), field("min"))?,
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

/// The form of a line of this type, for messages: `` `dir <name> <mode> <uid> <gid>` ``.
fn usage(kind: &str, names: &[&str]) -> String {
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
}

/// Refuses a comment after the fields, a missing field and an extra one (except a file's hard
/// links).
fn check_field_count(kind: &str, names: &[&str], words: &[&str]) -> Result<()> {
    if let Some(comment) = words.iter().find(|w| w.starts_with('#')) {
        bail!(
            "`{comment}`: a comment must be on a line of its own (the line is {})",
            usage(kind, names)
        );
    }
    if words.len() < names.len() {
        bail!(
            "missing field <{}>: the line is {}",
            names[words.len()],
            usage(kind, names)
        );
    }
    if words.len() > names.len() && kind != "file" {
        bail!(
            "unexpected extra field `{}`: the line is {}",
            words[names.len()],
            usage(kind, names)
        );
    }
    Ok(())
}

/// A device node's `<dev_type> <maj> <min>`.
fn parse_nod(dev_type: &str, major: &str, minor: &str) -> Result<DescKind> {
    let block = match dev_type {
        "b" => true,
        "c" => false,
        other => bail!(
            "field <dev_type>: `{other}` is neither `c` (character device) nor `b` \
             (block device)"
        ),
    };
    let number = |name: &str, text: &str| {
        text.parse::<u32>()
            .map_err(|_| anyhow!("field <{name}>: `{text}` is not a decimal device number"))
    };
    Ok(DescKind::Nod {
        block,
        major: number("maj", major)?,
        minor: number("min", minor)?,
    })
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
}
