"""The suite's skip policy, as pytest hooks (imported by tests/conftest.py; a plugin with -p).

Under CI=true a skip whose reason is not listed in tests/allowed_skips.py fails: a green CI run
must not hide part of the suite behind a missing file or peer. Every run ends with a one-line
count of skips and the allowed reasons, beside pytest's own -rs summary.
"""

import pytest

from tests.allowed_skips import ALLOWED_SKIPS, is_allowed
from tests.peers.require import under_ci


def _skip_reason(report):
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and under_ci():
        reason = _skip_reason(report)
        if not is_allowed(reason):
            report.outcome = "failed"
            report.longrepr = ("CI=true and this skip is not listed in tests/allowed_skips.py: "
                               "{}".format(reason))


_disallowed_collection_skips = []


def pytest_collectreport(report):
    if report.skipped and under_ci() and not is_allowed(_skip_reason(report)):
        _disallowed_collection_skips.append("{}: {}".format(report.nodeid, _skip_reason(report)))


def pytest_sessionfinish(session, exitstatus):
    if _disallowed_collection_skips:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _disallowed_collection_skips:
        terminalreporter.section("skips not allowed under CI (tests/allowed_skips.py)")
        for line in _disallowed_collection_skips:
            terminalreporter.line(line)
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.line("{} skipped; allowed reasons: {}".format(
            len(skipped), ", ".join(sorted(ALLOWED_SKIPS))))
