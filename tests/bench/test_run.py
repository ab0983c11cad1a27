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


def _results(load="9.5", met=False):
    row = {"id": "P2", "mode": "stdlib", "codec": "zlib", "what": "upload to nginx (PUT), x",
           "vhdport": "10.00 s (15.0 CPU-s)", "baseline": "20.00 s (16.0 CPU-s)", "ratio": 2.0,
           "target": ">= 1.8x", "met": met, "measured": [10.0, 15.0, 20.0, 16.0]}
    return {"machine": {"cores": 2, "usable_cores": 2, "cpu": "x", "python": "3.6.8",
                        "kernel": "k", "date": "d", "load_at_start": load, "load_at_end": "1.0"},
            "quick": False, "no_glance": False, "codecs": {"fast": "isal", "stdlib": "zlib"},
            "codec_versions": {"isal": "1.9", "zlib": "1.2.13"}, "threads": 2,
            "sizes": {"virtual_mib": 2048, "small_virtual_mib": 512, "written_mib": 1,
                      "files_mib": 1},
            "rows": [row], "checks": [{"what": "c", "ok": True, "detail": ""}],
            "run_notes": [], "skipped": [], "elapsed_s": 1.0, "args": "--doc x"}


def test_from_json_renders_codecs_threads_python_and_the_missed_rows_cause(tmp_path):
    import json
    saved, doc = tmp_path / "r.json", tmp_path / "b.md"
    saved.write_text(json.dumps(_results()))
    assert run.main(["--from-json", str(saved), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "Python 3.6.8 with 2 compression threads" in text
    assert "**fast** = `isal` 1.9" in text and "**stdlib** = `zlib` 1.2.13" in text
    assert "| P2 | zlib (stdlib) |" in text
    assert run.BOTTLENECKS["P2", "stdlib"] in text
    assert "vhdport 15.0 CPU-s in 10.00 s (1.50 of 2 cores busy on average)" in text
    assert "**Busy machine:** the load average reached 9.5 on 2 cores" in text


def test_a_quiet_run_has_no_busy_warning_and_a_met_row_no_bottleneck(tmp_path):
    import json
    saved, doc = tmp_path / "r.json", tmp_path / "b.md"
    saved.write_text(json.dumps(_results(load="0.5", met=True)))
    assert run.main(["--from-json", str(saved), "--doc", str(doc)]) == 0
    text = doc.read_text()
    assert "Busy machine" not in text and "bottleneck" not in text


def test_a_saved_partial_run_still_refuses_the_doc(tmp_path):
    import json
    saved, doc = tmp_path / "r.json", tmp_path / "b.md"
    partial = _results()
    partial["skipped"] = ["Glance rows skipped: no glance-api"]
    saved.write_text(json.dumps(partial))
    assert run.main(["--from-json", str(saved), "--doc", str(doc)]) == 1
    assert not doc.exists()
