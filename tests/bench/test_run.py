"""bench/run.py: --doc is written only from a full run with every row."""

import argparse

from bench import run


def _args(**kw):
    base = dict(quick=False, no_glance=False, doc="docs/benchmarks.md")
    base.update(kw)
    return argparse.Namespace(**base)


def test_a_full_run_may_write_the_doc():
    assert run.doc_refusal(_args()) == []


def test_skipped_rows_refuse_the_doc():
    assert run.doc_refusal(_args(), ["Glance rows skipped: glance-api not found"]) == [
        "Glance rows skipped: glance-api not found"]


def test_quick_and_no_glance_refuse_before_running(tmp_path, capsys):
    doc = tmp_path / "bench.md"
    assert run.main(["--quick", "--doc", str(doc), "--work", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "not writing {}: --quick is a smoke run; --no-glance".format(doc) in err
    assert not doc.exists() and not (tmp_path / "w").exists()
    assert run.main(["--no-glance", "--doc", str(doc)]) == 1
    assert "--no-glance leaves out the Glance rows" in capsys.readouterr().err
    assert not doc.exists()
