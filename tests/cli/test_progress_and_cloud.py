"""Progress reporters (--os-cloud against a real Keystone: test_cloud.py)."""

import io
import json

from vhdport.cli import progress


def test_json_lines_throttle_but_always_end_with_the_final_count():
    out = io.StringIO()
    sink = progress.JsonLines(stream=out, interval=3600)
    for done in range(0, 10 << 20, 1 << 20):
        sink(done, 10 << 20)
    sink(10 << 20, 10 << 20)
    sink.finish()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines == [{"done": 0, "total": 10 << 20}, {"done": 10 << 20, "total": 10 << 20}]


def test_json_lines_unknown_total_and_no_duplicate_final():
    out = io.StringIO()
    sink = progress.JsonLines(stream=out, interval=0)
    sink(5, None)
    sink.finish()
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"done": 5, "total": None}]


def test_reporter_modes(capsys):
    with progress.reporter("none") as cb:
        assert cb is None
    with progress.reporter("auto") as cb:  # pytest's stderr is not a terminal
        assert cb is None
    with progress.reporter("json") as cb:
        cb(1, 2)
    assert json.loads(capsys.readouterr().err) == {"done": 1, "total": 2}


def test_rich_bar_runs_with_known_and_unknown_totals(capsys):
    bar = progress.RichBar("copying-label")
    bar(10, None)
    bar(10, 100)
    bar(100, 100)
    bar.finish()
    drawn = capsys.readouterr()
    assert drawn.out == ""                      # results own stdout; the bar is on stderr
    assert "copying-label" in drawn.err and "100/100 bytes" in drawn.err, drawn.err


def test_rich_bar_speaks_one_unit_system():
    """Was: `5.0/5.0 MiB 232.7 MB/s` (binary sizes beside a decimal speed)."""
    from rich.console import Console

    out = io.StringIO()
    bar = progress.RichBar("download", console=Console(file=out, force_terminal=True, width=120))
    for done in range(0, 5 * progress.MIB + 1, progress.MIB):
        bar(done, 5 * progress.MIB)
    bar.finish()
    text = out.getvalue()
    assert "5.0/5.0 MiB" in text and "MiB/s" in text
    assert " MB/s" not in text and " kB/s" not in text and " GB/s" not in text


def test_mib_speed():
    assert progress.mib_speed(3 * progress.MIB / 2) == "1.5 MiB/s"
    assert progress.mib_speed(None) == "? MiB/s"
