"""bench/digest_bench.py: its rows run, and the formats of the same contents agree.

Timings are reported by the benchmark, never asserted here."""

from bench import digest_bench
from tests.peers.require import require_qemu_img


class Recorder(object):
    """The part of bench.run.Bench that add_to uses."""

    def __init__(self, work):
        self.work, self.rows, self.checks, self.skipped = work, [], [], []

    def fresh(self, name):
        path = self.work / name
        path.mkdir()
        return str(path)

    def check(self, what, ok, detail=""):
        self.checks.append((what, ok))

    def row(self, **fields):
        self.rows.append(fields)

    def skip(self, note):
        self.skipped.append(note)


def test_rows_agree_across_formats(tmp_path):
    require_qemu_img()
    bench = Recorder(tmp_path)
    digest_bench.add_to(bench)
    assert bench.skipped == []
    assert [r["id"] for r in bench.rows] == ["D1", "D2", "D3", "D4"]
    assert len(bench.checks) == 4 and all(ok for _, ok in bench.checks), bench.checks
    assert all(r["vhdport"].endswith(" s") for r in bench.rows)
    assert not (tmp_path / "digest").exists()
