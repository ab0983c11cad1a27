"""The repository's own files a new user meets first: Makefile, pyproject.toml, README."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
        return f.read()


def test_every_phony_target_exists():
    """Was: .PHONY named test-fast, which no rule defines."""
    text = _read("Makefile")
    phony = set()
    for line in re.findall(r"^\.PHONY:(.*)$", text, re.M):
        phony.update(line.split())
    defined = set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))
    assert phony and phony <= defined, phony - defined


def test_license_is_an_spdx_string():
    """The TOML-table form made pip install -e . print a deprecation warning."""
    text = _read("pyproject.toml")
    assert re.search(r'^license = "Apache-2\.0"$', text, re.M)
    assert 'requires = ["setuptools>=77"]' in text


def test_readme_has_prerequisites_and_no_dangling_reference():
    text = _read("README.md")
    assert "## Prerequisites" in text and "python3-venv" in text
    assert "(see above)" not in text
    assert "../shared" not in text


def test_fixtures_are_vendored_and_no_test_reads_outside_the_repo():
    assert os.path.isfile(os.path.join(REPO, "tests", "data", "vhd-util-fixtures.tgz"))
    proc = subprocess.run(["git", "grep", "-n", "-e", "shared/fixtures", "-e", "\"shared\"", "--",
                           "tests", "bench", "Makefile"],
                          cwd=REPO, stdout=subprocess.PIPE, universal_newlines=True)
    hits = [line for line in proc.stdout.splitlines() if not line.startswith("tests/test_repo.py")]
    assert hits == [], hits
