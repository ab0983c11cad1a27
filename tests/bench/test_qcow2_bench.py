"""bench/qcow2_bench.py: rows run alternately with medians; outputs checked, sparseness too."""

from bench import qcow2_bench
from tests.qcow2.qemu import require_qemu


def test_rows_with_repeats(tmp_path, capsys):
    require_qemu()
    rows = qcow2_bench.rows(str(tmp_path), 8, repeat=3)
    assert [r["what"] for r in rows] == ["import raw -> qcow2", "export qcow2 -> raw",
                                         "read a 3-deep chain (export to raw)"]
    for r in rows:
        assert r["ok"] is True and r["runs"] == 3 and len(r["ratios"]) == 3
        assert min(r["ours_runs"]) <= r["ours_s"] <= max(r["ours_runs"])
        assert sorted(r["ratios"])[1] == r["ratio"]
    assert rows[1]["sparse"] is True and rows[1]["ours_alloc"] == 4 * qcow2_bench.MIB
    assert rows[2]["sparse"] is True
    table = qcow2_bench.table(rows, 8)
    assert "| export qcow2 -> raw |" in table and "| 4 / 4 | same |" in table


def test_main_fails_on_a_denser_output(tmp_path, monkeypatch):
    """Like for like: an export that wrote its zeros would fail the run."""
    require_qemu()
    real = qcow2_bench._allocated
    monkeypatch.setattr(qcow2_bench, "_allocated",
                        lambda path: real(path) + (1 if "ours" in path else 0))
    assert qcow2_bench.main(["--virtual-mib", "8", "--work", str(tmp_path)]) == 1
