"""Reads a kmodlab JSON report with Python's own json module, independently of kmodlab's code.

Checks that the run-level counts add up to the verdicts, and prints one line per verdict
(`id OUTCOME reason`) followed by `counts: passed failed skipped`, for the Rust test to compare.
"""
import json
import sys

REQUIRED = ("id", "module", "test", "outcome", "reason", "title", "details", "errno", "duration", "log")


def main(path):
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    for key in ("schema_version", "run_folder", "kernel_release", "vms", "duration", "counts", "verdicts"):
        if key not in report:
            sys.exit(f"json_read: no {key!r} in the report")
    verdicts = report["verdicts"]
    tally = {"PASS": 0, "FAIL": 0, "ERROR": 0, "CRASH": 0, "TIMEOUT": 0, "SKIP": 0}
    for v in verdicts:
        missing = [k for k in REQUIRED if k not in v]
        if missing:
            sys.exit(f"json_read: verdict {v.get('id')} lacks {missing}")
        if v["id"] != f"{v['module']}/{v['test']}":
            sys.exit(f"json_read: id {v['id']} is not module/test")
        if (v["title"] is not None) != (v["outcome"] == "CRASH"):
            sys.exit(f"json_read: {v['id']}: title is for crashes only")
        tally[v["outcome"]] += 1
        print(f"{v['id']} {v['outcome']} {v['reason']}".rstrip())
    counts = report["counts"]
    failed = tally["FAIL"] + tally["ERROR"] + tally["CRASH"] + tally["TIMEOUT"]
    expected = {"total": len(verdicts), "passed": tally["PASS"], "failed": failed,
                "skipped": tally["SKIP"], "crashed": tally["CRASH"],
                "timed_out": tally["TIMEOUT"], "errored": tally["ERROR"]}
    if counts != expected:
        sys.exit(f"json_read: counts {counts} do not match the verdicts {expected}")
    print(f"counts: {counts['passed']} {counts['failed']} {counts['skipped']}")


if __name__ == "__main__":
    main(sys.argv[1])
