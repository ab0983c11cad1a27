"""The shared store options: missing stores, new stores, --timeout / --retries, fast failures.

Issue #10 part 4: a store that does not exist is an error for reading commands (not an
empty table); a writing command creates a local store only under an existing parent and
says so; an unresolvable host fails at once, a refused connection after a few seconds,
and --timeout / --retries choose the rest.
"""

import socket
import time
from http.server import BaseHTTPRequestHandler

import pytest

from tests.peers.tiny_http import LocalHttpServer
from tests.cli.helpers import assert_failed_cleanly, run, run_script


@pytest.mark.parametrize("form", ["path", "file-url"])
@pytest.mark.parametrize("command", [["image", "ls"], ["image", "show",
                                                       "12345678-1234-1234-1234-1234567890ab"]])
def test_reading_a_store_that_does_not_exist_fails(tmp_path, form, command):
    missing = tmp_path / "nonexistent"
    store = str(missing) if form == "path" else "file://" + str(missing)
    result = run(*(command + ["--store", store]))
    assert_failed_cleanly(result, "no image store there (the directory does not exist)")
    assert result.stdout == ""
    assert not missing.exists()


def test_a_writing_command_creates_a_store_and_says_so(tmp_path):
    data = tmp_path / "disk.raw"
    data.write_bytes(b"\0" * 1024)
    store = tmp_path / "new-store"
    result = run("image", "import", data, "--name", "x", "--store", store, "--progress", "none")
    assert result.exit_code == 0, result.stderr
    assert "created a new image store at {}".format(store) in result.stderr
    again = run("image", "import", data, "--name", "y", "--store", store, "--progress", "none")
    assert again.exit_code == 0 and "created" not in again.stderr
    assert len(run("image", "ls", "--store", store, "--json").stdout.split('"id"')) == 3


def test_a_writing_command_does_not_create_missing_parents(tmp_path):
    data = tmp_path / "disk.raw"
    data.write_bytes(b"\0" * 1024)
    store = tmp_path / "no" / "such" / "store"
    result = run("image", "import", data, "--name", "x", "--store", store, "--progress", "none")
    assert_failed_cleanly(result, "parent directory", "does not exist")
    assert not (tmp_path / "no").exists()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unresolvable_host_fails_at_once():
    started = time.monotonic()
    proc = run_script("image", "ls", "--store", "http://no-such-host.invalid:9292")
    elapsed = time.monotonic() - started
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "cannot resolve host name 'no-such-host.invalid'" in stderr
    assert "WARNING" not in stderr
    assert elapsed < 10, elapsed   # before: ~31 s of retries


def test_a_refused_connection_is_retried_briefly_and_quietly():
    url = "http://127.0.0.1:{}".format(_free_port())
    started = time.monotonic()
    proc = run_script("image", "ls", "--store", url)
    elapsed = time.monotonic() - started
    stderr = proc.stderr.decode()
    assert proc.returncode == 1, stderr
    assert "connection refused" in stderr and "gave up after 4 attempts" in stderr
    assert "WARNING" not in stderr
    assert elapsed < 10, elapsed   # 3 retries, 1 s apart (before: ~31 s)


class _Server(LocalHttpServer):
    """Counts requests; answers 503, or says nothing at all (``silent``)."""

    def __init__(self, silent=False):
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                if silent:
                    time.sleep(5)
                    return
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(Handler)


@pytest.mark.parametrize("retries", [0, 2])
def test_retries_option_sets_the_number_of_attempts(retries):
    with _Server() as server:
        result = run("image", "ls", "--store", server.url, "--retries", retries)
    assert result.exit_code == 1
    assert server.requests == retries + 1
    assert "HTTP 503" in result.stderr


def test_timeout_option_sets_the_socket_timeout():
    with _Server(silent=True) as server:
        started = time.monotonic()
        result = run("image", "ls", "--store", server.url, "--retries", "0", "--timeout", "0.5")
        elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "no answer within 0.5s" in result.stderr
    assert elapsed < 3, elapsed


@pytest.mark.parametrize("option", [["--timeout", "0"], ["--timeout", "-1"], ["--retries", "-1"],
                                    ["--retries", "x"]])
def test_nonsense_timeout_or_retries_is_a_usage_error(option, tmp_path):
    result = run("image", "ls", "--store", "http://127.0.0.1:9", *option)
    assert result.exit_code != 0
    assert "Invalid value for '{}'".format(option[0]) in result.stderr, result.stderr
