"""Record every hostile-suite case and its result; write docs/reliability.md.

Usage (any test under tests/hostile/):

    # 1. as a fixture -- call it once per case, anywhere in the test body:
    def test_traversal(reliability_case, ...):
        case = reliability_case("R1", "member ../evil", "refused naming the member")
        ...
        case.detail = str(err)          # optional one-line detail shown for a pass

    # 2. as a marker -- also recorded when the test is skipped before its body runs
    #    (e.g. a fixture calls pytest.skip because there is no root / no Glance):
    @pytest.mark.reliability("R6", "download on a full fs", "NoSpaceError, SR unchanged")
    def test_full(...): ...

    # parametrized tests: pytest.param(..., marks=pytest.mark.reliability(...)) or call the
    # fixture with the parameter in the case name.

The result of a case is the outcome of its test: pass / fail / skip / xfail, plus a one-line
detail (``case.detail`` for a pass, the skip reason, or the first line of the failure).  A test
may record several cases; they all share its outcome.

Writing the document: only when the environment has VHDPORT_WRITE_RELIABILITY=1 (set by
``make test-hostile``), so ordinary ``make test`` runs never rewrite it.  The hooks live here
and are imported by tests/hostile/conftest.py.  The document is written only from a complete
run: every suite file collected, no -k / -m filter or node id, nothing deselected, every test
run to its end, no case skipped or left unrun.  Otherwise nothing is written, the reasons are
printed and the run exits non-zero -- a partial run would publish a table of fewer cases (or
old rows beside new ones) as if it were the whole suite.  Text between ``<!-- static -->`` and
``<!-- /static -->`` is preserved.
"""

import glob
import os
import platform
import re
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC_PATH = os.path.join(REPO, "docs", "reliability.md")
ENV_VAR = "VHDPORT_WRITE_RELIABILITY"

SUITES = {
    "R1": "Hostile bundles (full download path: local store -> transfer.download -> SR)",
    "R2": "VHD fuzzing (open / info / check / read / export of mutated VHDs)",
    "R3": "Network faults (real Glance through a fault-injecting proxy)",
    "R4": "Crash consistency (kill -9 at many points)",
    "R5": "Concurrency (parallel downloads while GC runs)",
    "R6": "Disk full (small tmpfs under SR, staging and kernel dir)",
    "R7": "Security properties (kernel dir, tokens, TLS, unsafe APIs)",
    "R8": "Declared-size bombs (VHD metadata that declares more than the file holds)",
    "R9": "Paths outside the SR or store (symlinks, journals, records, lock files)",
    "R10": "Secrets and replies (tokens in every representation, plugin replies always XML)",
    "R11": "Server resource bounds (huge bodies, trickling servers, endless pagination, parser bombs)",
    "R12": "Self-reference and ambiguity (self-parent, cycles, duplicate uuids, writes past the end)",
    "R13": "Hostile QCOW2 (refusal classes and bombs)",
    "R14": "Hostile QCOW2 store images through download (backing / data file / encryption, bombs)",
}

_STATIC_DEFAULT = """\
How to read the tables: *pass* means the property in the expectation column held; the
detail column shows the error the user got (for refusals) or what was measured.

What "the SR is unchanged" means (R1, R6, and the fault suites): `tree_digest` in
tests/hostile/conftest.py walks the whole SR directory, hidden entries included
(`.vhdport-staging/`, lock files), never following symlinks, and records for each path its
type, permission bits, and for regular files the size and SHA-256 of the contents; for
symlinks the target.  Two things are deliberately left out: directory mtimes (creating and
removing a staging dir moves them) and the *contents* of the lock files `.vhdport.lock` and
`.vhdport-staging/.root.lock` (they hold the pid of the last process that took the lock);
those files must still exist exactly as before, with the same mode.  The SR under test is a
copy of one that already holds a downloaded chain (hidden base + leaf), its lock files and
its staging root, so a hostile download has something to damage.  After each refusal the
staging root must hold only `.root.lock`, an 'outside' canary directory and the store must
be unchanged, and the absolute and traversal targets the hostile members name must not
exist.

Long fuzzing runs (atheris, `make fuzz`, not in CI): executions and findings are recorded in
[fuzzing.md](fuzzing.md).
"""


class Case(object):
    """One recorded case: suite, name, expectation, and later its outcome and detail."""

    def __init__(self, suite, name, expectation, nodeid):
        if suite not in SUITES:
            raise ValueError("unknown reliability suite {!r}".format(suite))
        self.suite = suite
        self.name = name
        self.expectation = expectation
        self.nodeid = nodeid
        self.outcome = "not run"
        self.detail = ""
        self.seconds = 0.0


# nodeid -> [Case]; filled by the fixture/marker, finished by the report hook
_cases_by_node = {}
_order = []
# what this session ran, to tell a complete run from a partial one
_finished_nodes = set()
_deselected = []


def _register(item, suite, name, expectation):
    case = Case(suite, name, expectation, item.nodeid)
    _cases_by_node.setdefault(item.nodeid, []).append(case)
    _order.append(case)
    return case


@pytest.fixture
def reliability_case(request):
    """Callable ``(suite, case, expectation) -> Case`` recording a case for this test."""
    def record(suite, name, expectation):
        return _register(request.node, suite, name, expectation)
    return record


def one_line(text, limit=200):
    """First non-empty line of ``text``, shortened, with table pipes escaped."""
    text = str(text)
    line = ""
    for candidate in text.splitlines():
        if candidate.strip():
            line = candidate.strip()
            break
    if len(line) > limit:
        line = line[:limit - 3] + "..."
    return line.replace("|", "\\|")


def _failure_line(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    return str(report.longrepr)


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).replace("Skipped: ", "")
    return str(longrepr)


# --- hooks (imported by tests/hostile/conftest.py) --------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "reliability(suite, case, expectation): record a case for docs/reliability.md")


def pytest_runtest_setup(item):
    for mark in item.iter_markers(name="reliability"):
        if item.nodeid not in _cases_by_node or not any(
                c.name == mark.args[1] for c in _cases_by_node[item.nodeid]):
            _register(item, *mark.args[:3])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown":
        _finished_nodes.add(item.nodeid)
    cases = _cases_by_node.get(item.nodeid)
    if not cases:
        return
    new = None
    detail = None
    if report.when == "call":
        if report.passed:
            new = "xpass" if hasattr(report, "wasxfail") else "pass"
        elif report.skipped:
            if hasattr(report, "wasxfail"):
                new, detail = "xfail", report.wasxfail
            else:
                new, detail = "skip", _skip_reason(report)
        else:
            new, detail = "FAIL", _failure_line(report)
        for case in cases:
            case.seconds = report.duration
    elif report.when == "setup" and not report.passed:
        if report.skipped:
            new, detail = "skip", _skip_reason(report)
        else:
            new, detail = "FAIL", "setup: " + _failure_line(report)
    elif report.when == "teardown" and report.failed:
        new, detail = "FAIL", "teardown: " + _failure_line(report)
    if new is None:
        return
    for case in cases:
        case.outcome = new
        if detail is not None:
            case.detail = detail


def pytest_deselected(items):
    _deselected.extend(items)


def incomplete_reasons(session, cases, suite_files=None):
    """Why this session cannot regenerate the document (an empty list when it can)."""
    config = session.config
    reasons = []
    if config.getoption("keyword", ""):
        reasons.append("a -k filter was given ({!r})".format(config.getoption("keyword")))
    if config.getoption("markexpr", ""):
        reasons.append("a -m filter was given ({!r})".format(config.getoption("markexpr")))
    if any("::" in str(arg) for arg in config.args):
        reasons.append("single tests were named on the command line")
    if _deselected:
        reasons.append("{} tests were deselected".format(len(_deselected)))
    if suite_files is None:
        suite_files = glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_*.py"))
    collected = {os.path.abspath(str(item.fspath)) for item in getattr(session, "items", [])}
    missing_files = sorted(os.path.basename(f) for f in suite_files
                           if os.path.abspath(f) not in collected)
    if missing_files:
        reasons.append("suite files not run: {}".format(", ".join(missing_files)))
    if session.testsfailed and session.shouldstop:
        reasons.append("the run stopped early (-x / --maxfail)")
    unfinished = [item.nodeid for item in getattr(session, "items", [])
                  if item.nodeid not in _finished_nodes]
    if unfinished:
        reasons.append("{} tests did not run to the end (first: {})".format(
            len(unfinished), unfinished[0]))
    missing_suites = sorted(set(SUITES) - {case.suite for case in cases})
    if missing_suites:
        reasons.append("suites with no case: {}".format(", ".join(missing_suites)))
    for outcome in ("skip", "not run"):
        hit = [case for case in cases if case.outcome == outcome]
        if hit:
            reasons.append("{} case(s) {} (first: {} {}: {})".format(
                len(hit), "skipped" if outcome == "skip" else "not run", hit[0].suite,
                hit[0].name, one_line(hit[0].detail, 120)))
    return reasons


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get(ENV_VAR) != "1":
        return
    reasons = incomplete_reasons(session, _order)
    if reasons:
        sys.stderr.write("\nreliability: NOT writing {}: this run is not complete:\n  - {}\n"
                         "Run `make test-hostile` (all of tests/hostile, no filter) where every "
                         "case can run.\n".format(DOC_PATH, "\n  - ".join(reasons)))
        if session.exitstatus == 0:
            session.exitstatus = 1
        return
    write_document(DOC_PATH, _order)


# --- the document --------------------------------------------------------


def _sections(text):
    """{suite: section text} and the static block from a previous document."""
    sections = {}
    for match in re.finditer(r"<!-- suite:(R\d+) -->\n(.*?)<!-- /suite:\1 -->\n", text, re.S):
        sections[match.group(1)] = match.group(0)
    static = re.search(r"<!-- static -->\n(.*?)<!-- /static -->\n", text, re.S)
    return sections, (static.group(1) if static else None)


def _suite_section(suite, cases):
    counts = {}
    for case in cases:
        counts[case.outcome] = counts.get(case.outcome, 0) + 1
    summary = ", ".join("{} {}".format(n, k) for k, n in sorted(counts.items()))
    lines = [
        "<!-- suite:{} -->".format(suite),
        "## {} -- {}".format(suite, SUITES[suite]),
        "",
        "{} cases: {}. Last run {} (Python {}, {}).".format(
            len(cases), summary, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            platform.python_version(), platform.system()),
        "",
        "| # | case | expectation | result | detail |",
        "|---|---|---|---|---|",
    ]
    for number, case in enumerate(cases, 1):
        lines.append("| {} | {} | {} | {} | {} |".format(
            number, one_line(case.name), one_line(case.expectation), case.outcome,
            one_line(case.detail)))
    lines.append("")
    lines.append("<!-- /suite:{} -->".format(suite))
    return "\n".join(lines) + "\n"


def render(cases, previous_text=""):
    """The whole document from one complete run (only the static block of the old one is kept)."""
    _, static = _sections(previous_text)
    by_suite = {}
    for case in cases:
        by_suite.setdefault(case.suite, []).append(case)
    out = [
        "# Reliability: hostile input and faults",
        "",
        "GENERATED by the hostile test suite (`make test-hostile`, tests/hostile/); do not edit",
        "the tables by hand -- rerun the suite. Each row is one test case and its last result.",
        "Suites R1, R2, R6, R7: tests/hostile/test_r1_bundles.py, test_r2_vhd_fuzz.py,",
        "test_r6_disk_full.py, test_r7_security.py; R3-R5: test_r3_network.py, test_r4_crash.py,",
        "test_r5_concurrency.py; R9-R11: test_r9_paths.py, test_r10_secrets.py,",
        "test_r11_bounds.py.",
        "",
        "<!-- static -->",
        (static if static is not None else _STATIC_DEFAULT).rstrip("\n") + "\n",
        "<!-- /static -->",
        "",
    ]
    body = "\n".join(out) + "\n"
    for suite in sorted(SUITES, key=lambda name: int(name[1:])):   # R9 before R10
        if suite not in by_suite:
            raise ValueError("suite {} has no case; the document needs a complete run".format(suite))
        body += _suite_section(suite, by_suite[suite]) + "\n"
    return body.rstrip("\n") + "\n"


def write_document(path, cases):
    previous = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = f.read()
    text = render(cases, previous)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = "{}.{}.tmp".format(path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    sys.stderr.write("\nreliability: wrote {} ({} cases)\n".format(path, len(cases)))
