"""Hostile-suite fixtures and the reliability report hooks (see tests/hostile/report.py)."""

from tests.hostile.report import (  # noqa: F401  (pytest finds hooks and fixtures by name)
    pytest_configure, pytest_runtest_makereport, pytest_runtest_setup, pytest_sessionfinish,
    reliability_case)
