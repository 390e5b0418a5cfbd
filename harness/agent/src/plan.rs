//! Getting the test plan.

use kmodlab_protocol::{Plan, PLAN_PATH};

/// The one place the agent gets its plan from.
///
/// Today the host packs it into the initramfs. A VM restored from a snapshot will instead receive the
/// plan (and the module files it names) over the agent channel; that variant belongs here, so the
/// rest of the agent never knows where the plan came from.
pub fn acquire() -> Result<Plan, String> {
    let bytes = std::fs::read(PLAN_PATH).map_err(|e| format!("read {PLAN_PATH}: {e}"))?;
    parse(&bytes).map_err(|e| format!("{PLAN_PATH}: {e}"))
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
