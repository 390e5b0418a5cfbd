"""Reads a kmodlab JUnit XML report the way CI services do, independently of kmodlab's code.

Checks the shape the common JUnit schema (Jenkins' junit-10.xsd, which GitLab and the GitHub
test-report actions follow) asks for: element order, required attributes, counts that add up.
Prints, as JSON, one entry per testcase: id (classname/name), outcome, message, body, system-out,
and the same read again by junitparser when that package is installed (else null).
Exits 1 with the reason when the document is not well-formed or not in that shape.
"""
import json
import sys
import xml.etree.ElementTree as ET

OUTCOME_ELEMENTS = ("failure", "error", "skipped")


def fail(message):
    print(f"junit_read: {message}", file=sys.stderr)
    sys.exit(1)


def number(element, name, kind=int):
    value = element.get(name)
    if value is None:
        fail(f"<{element.tag}> lacks {name}")
    try:
        return kind(value)
    except ValueError:
        fail(f"<{element.tag} {name}={value!r}> is not a number")


def order_ok(tags, allowed):
    """True when tags appear in the order of `allowed` (each may repeat or be absent)."""
    rank = {t: i for i, t in enumerate(allowed)}
    last = -1
    for tag in tags:
        if tag not in rank or rank[tag] < last:
            return False
        last = rank[tag]
    return True


def main(path):
    root = ET.parse(path).getroot()
    if root.tag != "testsuites":
        fail(f"root is <{root.tag}>, not <testsuites>")
    cases = []
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in root:
        if suite.tag != "testsuite":
            fail(f"<testsuites> holds <{suite.tag}>")
        if not suite.get("name"):
            fail("a <testsuite> has no name")
        if not order_ok([c.tag for c in suite], ["properties", "testcase", "system-out", "system-err"]):
            fail(f"suite {suite.get('name')}: children out of order: {[c.tag for c in suite]}")
        counted = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for case in suite.iter("testcase"):
            for attribute in ("classname", "name"):
                if case.get(attribute) is None:
                    fail(f"a <testcase> lacks {attribute}")
            if number(case, "time", float) < 0:
                fail("negative time")
            children = [c.tag for c in case]
            if not order_ok(children, ["skipped", "error", "failure", "system-out", "system-err"]):
                fail(f"testcase {case.get('name')}: children out of order: {children}")
            results = [c for c in case if c.tag in OUTCOME_ELEMENTS]
            if len(results) > 1:
                fail(f"testcase {case.get('name')} has {len(results)} results")
            outcome, message, body = "PASS", None, None
            if results:
                result = results[0]
                message, body = result.get("message"), result.text
                if result.tag == "skipped":
                    outcome = "SKIP"
                    counted["skipped"] += 1
                else:
                    if result.get("type") is None or message is None:
                        fail(f"<{result.tag}> of {case.get('name')} lacks type or message")
                    outcome = "ERROR" if result.tag == "error" else result.get("type")
                    counted["errors" if result.tag == "error" else "failures"] += 1
            counted["tests"] += 1
            out = case.find("system-out")
            cases.append({
                "id": f"{case.get('classname')}/{case.get('name')}",
                "outcome": outcome,
                "message": message,
                "body": body,
                "system_out": None if out is None else out.text,
                "time": float(case.get("time")),
            })
        for key, value in counted.items():
            if number(suite, key) != value:
                fail(f"suite {suite.get('name')}: {key}={suite.get(key)} but it holds {value}")
            totals[key] += value
    for key, value in totals.items():
        if number(root, key) != value:
            fail(f"<testsuites {key}={root.get(key)}> but the suites hold {value}")
    print(json.dumps({"cases": cases, "totals": totals, "junitparser": with_junitparser(path)}))


def with_junitparser(path):
    try:
        from junitparser import JUnitXml, Error, Failure, Skipped
    except ImportError:
        return None
    read = []
    for suite in JUnitXml.fromfile(path):
        for case in suite:
            outcome, message = "PASS", None
            for result in case.result:
                message = result.message
                if isinstance(result, Skipped):
                    outcome = "SKIP"
                elif isinstance(result, Error):
                    outcome = "ERROR"
                elif isinstance(result, Failure):
                    outcome = result.type
            read.append({"id": f"{case.classname}/{case.name}", "outcome": outcome, "message": message})
    return read


if __name__ == "__main__":
    main(sys.argv[1])
