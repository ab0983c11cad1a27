"""Progress reporters, and --os-cloud through a stand-in openstacksdk module."""

import io
import json
import sys
import types
import uuid

import pytest

from tests.cli.helpers import assert_failed_cleanly, run
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


def test_rich_bar_runs_with_known_and_unknown_totals():
    bar = progress.RichBar("test")
    bar(10, None)
    bar(10, 100)
    bar(100, 100)
    bar.finish()


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


@pytest.fixture
def fake_openstack(monkeypatch):
    """A stand-in for openstacksdk: connect(cloud=...) with a token and an image endpoint."""
    calls = {}

    def install(endpoint, token, verify=True, fail=None):
        def connect(cloud=None):
            calls["cloud"] = cloud
            if fail:
                raise fail
            session = types.SimpleNamespace(verify=verify)
            return types.SimpleNamespace(
                auth_token=token, session=session,
                endpoint_for=lambda service: endpoint if service == "image" else None)
        monkeypatch.setitem(sys.modules, "openstack", types.SimpleNamespace(connect=connect))
        return calls

    return install


def test_os_cloud_takes_token_and_endpoint_from_the_catalog(glance_401, fake_openstack):
    secret = "cloud-" + uuid.uuid4().hex
    calls = fake_openstack(glance_401.url, secret)
    result = run("image", "ls", "--os-cloud", "prod")
    assert_failed_cleanly(result, "401")
    assert calls["cloud"] == "prod"
    assert glance_401.tokens == [secret]
    assert secret not in result.stdout + result.stderr


def test_os_cloud_auth_failure_is_one_line(fake_openstack):
    fake_openstack(None, None, fail=RuntimeError("bad password"))
    assert_failed_cleanly(run("image", "ls", "--os-cloud", "prod"),
                          "keystone authentication failed", "bad password")


def test_os_cloud_without_image_endpoint(fake_openstack):
    fake_openstack(None, "t")
    assert_failed_cleanly(run("image", "ls", "--os-cloud", "prod"), "no image (Glance) endpoint")
