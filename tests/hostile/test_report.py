"""tests/hostile/report.py: docs/reliability.md is written only from a complete run."""

import os
import subprocess
import sys

import pytest

from tests.hostile import report
from tests.hostile.report import Case, incomplete_reasons, render

REPO = report.REPO
#: suites in the order the document lists them (R9 before R10)
ORDER = sorted(report.SUITES, key=lambda name: int(name[1:]))


class _Config(object):
    def __init__(self, keyword="", markexpr="", args=("tests/hostile",)):
        self._options = {"keyword": keyword, "markexpr": markexpr}
        self.args = list(args)

    def getoption(self, name, default=None):
        return self._options.get(name, default)


class _Item(object):
    def __init__(self, path, name):
        self.fspath = path
        self.nodeid = "{}::{}".format(os.path.basename(path), name)


class _Session(object):
    def __init__(self, items, **config):
        self.config = _Config(**config)
        self.items = items
        self.testsfailed = 0
        self.shouldstop = False


def _complete(tmp_path):
    """(session, cases, suite files) of a run where every suite had one passing case."""
    files = [str(tmp_path / "test_{}.py".format(s.lower())) for s in ORDER]
    items = [_Item(f, "test_one") for f in files]
    cases = []
    for suite in ORDER:
        case = Case(suite, "case of " + suite, "holds", "x")
        case.outcome = "pass"
        cases.append(case)
    report._finished_nodes.update(item.nodeid for item in items)
    return _Session(items), cases, files


def test_a_complete_run_may_write(tmp_path):
    session, cases, files = _complete(tmp_path)
    assert incomplete_reasons(session, cases, files) == []
    text = render(cases)
    assert all("<!-- suite:{} -->".format(s) in text for s in report.SUITES)


def test_a_skipped_case_refuses(tmp_path):
    session, cases, files = _complete(tmp_path)
    cases[ORDER.index("R6")].outcome, cases[ORDER.index("R6")].detail = "skip", "allowed skip [tmpfs]: not root"
    reasons = incomplete_reasons(session, cases, files)
    assert reasons == ["1 case(s) skipped (first: R6 case of R6: allowed skip [tmpfs]: not root)"]


def test_a_filter_or_a_missing_suite_refuses(tmp_path):
    session, cases, files = _complete(tmp_path)
    session.config = _Config(keyword="tls")
    last = ORDER[-1]
    session.items = session.items[:-1]
    reasons = incomplete_reasons(session, cases[:-1], files)
    assert "a -k filter was given ('tls')" in reasons
    assert "suite files not run: test_{}.py".format(last.lower()) in reasons
    assert "suites with no case: {}".format(last) in reasons


def test_render_refuses_a_document_without_every_suite():
    case = Case("R1", "only", "holds", "x")
    case.outcome = "pass"
    with pytest.raises(ValueError, match="suite R2 has no case"):
        render([case])


def test_a_partial_hostile_run_writes_nothing_and_says_why():
    """The real hook, end to end: one R7 test alone, with the writing switch on."""
    doc = report.DOC_PATH
    before = os.stat(doc).st_mtime_ns if os.path.exists(doc) else None
    env = dict(os.environ, VHDPORT_WRITE_RELIABILITY="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/hostile/test_r7_security.py::test_tls_verified_by_default_without_glance"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=300)
    assert proc.returncode == 1, proc.stdout
    assert "reliability: NOT writing" in proc.stdout
    assert "single tests were named on the command line" in proc.stdout
    missing = [line for line in proc.stdout.splitlines() if "suite files not run:" in line]
    assert missing and "test_r1_bundles.py" in missing[0], proc.stdout
    assert (os.stat(doc).st_mtime_ns if os.path.exists(doc) else None) == before
