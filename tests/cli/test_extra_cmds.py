"""`vhdport demo` end to end, and `vhdport plugin install --root`."""

import os

import pytest

from tests.cli.helpers import run, run_script


def test_demo_end_to_end(tmp_path):
    workdir = tmp_path / "demo"
    proc = run_script("demo", "--dir", workdir)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, (out, err)
    assert "demo passed: 7 steps" in out and "FAILED" not in out + err
    for step in ("create VM disk", "snapshot", "upload snapshot", "download",
                 "compare contents", "check chain"):
        assert step in out
    # kept for inspection: two SRs and the store, the downloaded chain in the second SR
    assert sorted(os.listdir(str(workdir))) == ["images", "sr-a", "sr-b"]
    assert len([n for n in os.listdir(str(workdir / "sr-b")) if n.endswith(".vhd")]) == 2


def test_demo_library_reports_a_failing_step(tmp_path, monkeypatch):
    from vhdport import demo

    def broken(self):
        raise RuntimeError("injected")

    monkeypatch.setattr(demo.Scenario, "take_snapshot", broken)
    seen = []
    records = demo.run(str(tmp_path), report=seen.append)
    assert [r["step"] for r in records] == ["create VM disk", "snapshot"]
    assert records[0]["ok"] and not records[1]["ok"]
    assert records[1]["detail"] == "RuntimeError: injected"
    assert seen == records


def test_demo_cli_exits_1_when_a_step_fails(tmp_path, monkeypatch):
    from vhdport import demo

    def broken(self):
        raise RuntimeError("injected")

    monkeypatch.setattr(demo.Scenario, "take_snapshot", broken)
    result = run("demo", "--dir", tmp_path / "d")
    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert "vhdport: error: demo failed at step 'snapshot'" in result.stderr


def test_demo_pattern_is_deterministic_and_distinct():
    from vhdport.demo import pattern

    assert pattern(1000, 1) == pattern(1000, 1)
    assert pattern(1000, 1) != pattern(1000, 2)
    assert len(pattern(12345, 3)) == 12345


def test_plugin_install_into_root(tmp_path):
    result = run("plugin", "install", "--root", tmp_path)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    paths = [line for line in result.stdout.splitlines() if line.strip()]
    assert paths
    for path in paths:
        assert os.path.isfile(path) and path.startswith(str(tmp_path))


def _quick_demo(monkeypatch, tmp_path):
    """A stand-in scenario (one step that writes a file) and a known temp dir."""
    from vhdport import demo

    def fake_run(workdir, report=None):
        with open(os.path.join(workdir, "made"), "w") as f:
            f.write("x")
        return [{"step": "create VM disk", "ok": True, "detail": "", "seconds": 0.0}]

    monkeypatch.setattr(demo, "run", fake_run)
    made = tmp_path / "vhdport-demo-x"
    monkeypatch.setattr("tempfile.mkdtemp", lambda prefix=None: (made.mkdir(), str(made))[1])
    return made


def test_demo_keep_keeps_the_temp_dir_and_says_so(tmp_path, monkeypatch):
    """Was: the demo printed its work dir, then deleted it; there was no way to keep it."""
    made = _quick_demo(monkeypatch, tmp_path)
    result = run("demo", "--keep")
    assert result.exit_code == 0, result.stderr
    assert "demo passed: 1 steps; files kept in {}".format(made) in result.stdout
    assert (made / "made").exists()


def test_demo_without_keep_says_the_dir_is_removed(tmp_path, monkeypatch):
    made = _quick_demo(monkeypatch, tmp_path)
    result = run("demo")
    assert result.exit_code == 0, result.stderr
    assert "work directory removed (--keep keeps it)" in result.stdout
    assert not made.exists()
