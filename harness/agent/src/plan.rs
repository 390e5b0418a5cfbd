//! Getting the test plan: from the initramfs, or from the payload a restored VM is sent.

use kmodlab_protocol::{payload, Plan, PLAN_PATH};
use std::io::{BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The plan the host packed into the initramfs; `None` when there is none: this initramfs is a
/// snapshot's, and the plan will come as a payload ([`from_payload`]).
pub fn from_initramfs() -> Option<Result<Plan, String>> {
    let bytes = match std::fs::read(PLAN_PATH) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("read {PLAN_PATH}: {e}"))),
    };
    Some(parse(&bytes).map_err(|e| format!("{PLAN_PATH}: {e}")))
}

/// The virtio port the payload comes through, open.
pub fn open_payload_port() -> Result<std::fs::File, String> {
    let port = payload_port()?;
    std::fs::File::open(&port).map_err(|e| format!("open {}: {e}", port.display()))
}

/// Waits for the host's payload on `port`, writes the files it carries where their entries say,
/// and returns its plan. Blocks until the payload comes: the VM is saved while it waits here,
/// and every restored copy wakes up here.
pub fn from_payload(port: std::fs::File) -> Result<Plan, String> {
    let mut input = BufReader::with_capacity(1 << 16, Patient(port));
    let header = payload::read_header(&mut input)?;
    for entry in &header.files {
        let bytes = payload::read_file(&mut input, entry)?;
        write_file(entry, &bytes)?;
    }
    Ok(header.plan)
}

/// The device of the port named [`payload::PORT_NAME`]. Ports are added and named by the
/// device's control messages, which the kernel handles in a work item: at /init the port may
/// not be there yet.
fn payload_port() -> Result<PathBuf, String> {
    const CLASS: &str = "/sys/class/virtio-ports";
    for _ in 0..400 {
        if let Ok(entries) = std::fs::read_dir(CLASS) {
            for entry in entries.flatten() {
                let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if name.trim() == payload::PORT_NAME {
                    return Ok(Path::new("/dev").join(entry.file_name()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!(
        "no virtio port named {} in {CLASS} after 2 s (a kernel without CONFIG_VIRTIO_CONSOLE?)",
        payload::PORT_NAME
    ))
}

/// A port that reads 0 bytes while no host is connected: waits and reads again instead of
/// taking that for the end.
struct Patient(std::fs::File);

impl Read for Patient {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Ok(0) if !buf.is_empty() => std::thread::sleep(Duration::from_millis(10)),
                other => return other,
            }
        }
    }
}

fn write_file(entry: &payload::FileEntry, bytes: &[u8]) -> Result<(), String> {
    let path = Path::new(&entry.path);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(entry.mode)
        .open(path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, bytes))
        .map_err(|e| format!("write {}: {e}", entry.path))
}

/// Parses the plan's JSON; the error names the line and column.
pub fn parse(bytes: &[u8]) -> Result<Plan, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kmodlab_protocol::{ModuleLoad, PlannedTest};

    #[test]
    fn a_full_plan_parses() {
        let json = r#"{"tests":[{"id":7,"name":"hello/greets","ktap":true,"settle_ms":50,"timeout_ms":5000,
            "after_unload_ms":300,"reload":true,"modules":[{"name":"hello","path":"/lib/modules/6.12/hello.ko","params":"who=x"}]}]}"#;
        let plan = parse(json.as_bytes()).unwrap();
        assert_eq!(
            plan.tests,
            [PlannedTest {
                id: 7,
                name: "hello/greets".into(),
                modules: vec![ModuleLoad {
                    name: "hello".into(),
                    path: "/lib/modules/6.12/hello.ko".into(),
                    params: "who=x".into()
                }],
                ktap: true,
                settle_ms: 50,
                timeout_ms: 5000,
                run: vec![],
                after_unload_ms: 300,
                reload: true,
            }]
        );
    }

    #[test]
    fn programs_to_run_are_part_of_a_test() {
        let json = r#"{"tests":[{"id":1,"name":"c/t","ktap":false,"settle_ms":0,"timeout_ms":1000,
            "modules":[],"run":[{"name":"p","path":"/kmodlab/bin/c/p","args":["-x"],"timeout_ms":500}]}]}"#;
        let plan = parse(json.as_bytes()).unwrap();
        assert_eq!(
            plan.tests[0].run,
            [kmodlab_protocol::ProgramRun {
                name: "p".into(),
                path: "/kmodlab/bin/c/p".into(),
                args: vec!["-x".into()],
                timeout_ms: 500,
            }]
        );
    }

    #[test]
    fn an_empty_plan_is_valid() {
        assert!(parse(br#"{"tests":[]}"#).unwrap().tests.is_empty());
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = parse(b"{\"tests\":[{\"id\":1}]}").unwrap_err();
        assert!(
            err.contains("missing field") && err.contains("line 1"),
            "{err}"
        );
        let err = parse(b"{\"tests\":\n[").unwrap_err();
        assert!(err.contains("EOF") && err.contains("line 2"), "{err}");
        let err = parse(b"").unwrap_err();
        assert!(err.contains("EOF"), "{err}");
        let err = parse(br#"{"tests":[{"id":-1,"name":"a","modules":[],"ktap":false,"settle_ms":0,"timeout_ms":1}]}"#)
            .unwrap_err();
        assert!(err.contains("invalid value"), "{err}");
    }
}
