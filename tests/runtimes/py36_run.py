"""pytest plugin of ``make test-py36`` (``-p tests.runtimes.py36_run``): the suite under dom0's 3.6.

The run must be complete: every skip is a failure here, and what is left out of the 3.6 run
is deselected by EXCLUDED below -- one list, each entry with its reason.
"""

import sys

import pytest

#: node id prefix -> why the test does not run under Python 3.6 (it still runs under 3.11)
EXCLUDED = {
    "tests/bundle/test_roundtrip.py::test_gnu_tar_extracts_what_we_write[isal]":
        "isal is an optional speedup that dom0 never has (no pip there); dom0's engine, zlib, "
        "runs in the same test's [zlib] case",
    "tests/bundle/test_pgzip.py::test_python_gzip_reads_back_the_input[1-isal]":
        "isal is an optional speedup that dom0 never has; the [zlib] cases run",
    "tests/bundle/test_pgzip.py::test_python_gzip_reads_back_the_input[3-isal]":
        "isal is an optional speedup that dom0 never has; the [zlib] cases run",
    "tests/transfer/test_fixtures.py::test_sequenced_bundle_through_the_cli":
        "drives the `vhdport` CLI, which is not part of the dom0 core (click and rich; the plugin "
        "is dom0's surface, and its tests run here); the same bundle goes through the core in "
        "this module's other tests",
}
#: test modules not even collected under 3.6, and why
IGNORED = {
    "tests/stores/test_keystone_auth.py":
        "keystoneauth1 sessions (the CLI's `openstack` extra, Python >= 3.9); dom0 passes a "
        "static token, which the Glance store tests cover under 3.6",
}
# Test helpers newer than 3.6 were made 3.6-compatible rather than listed (tests/peers/httpd.py).


def pytest_ignore_collect(collection_path, config):
    path = str(collection_path)
    return True if any(path.endswith(name) for name in IGNORED) else None


def pytest_report_header(config):
    return "dom0 runtime: Python {} at {}; excluded under 3.6: {}".format(
        sys.version.split()[0], sys.executable, len(EXCLUDED) + len(IGNORED))


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        (dropped if any(item.nodeid.startswith(p) for p in EXCLUDED) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = "skipped under the dom0 runtime, where nothing may skip: {}".format(
            report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)


def pytest_collectreport(report):
    if report.skipped:
        report.outcome = "failed"
        report.longrepr = "a whole module skipped under the dom0 runtime: {}".format(
            report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
