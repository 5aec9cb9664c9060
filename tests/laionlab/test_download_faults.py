"""Downloads against a loopback HTTP server started by the test (hardening issue): every
failure is recorded per sample with its reason, the rest succeeds, retries are configurable."""

import http.server
import io
import socket
import threading
import time

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.io.download import DownloadSettings, download_part


def _jpeg(size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


GOOD = _jpeg()
HUGE = _jpeg((4000, 3000))
FLAKY = {"count": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, body=b"", ctype="image/jpeg", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/good.jpg":
            self._send(200, GOOD)
        elif path == "/missing.jpg":
            self._send(404, b"not found", "text/html")
        elif path == "/error.jpg":
            self._send(500, b"boom", "text/html")
        elif path == "/reset.jpg":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
        elif path == "/slow.jpg":
            time.sleep(4)
            self._send(200, GOOD)
        elif path == "/truncated.jpg":
            self._send(200, GOOD[: len(GOOD) // 3])
        elif path == "/huge.jpg":
            self._send(200, HUGE)
        elif path == "/page.jpg":
            self._send(200, b"<html><body>an html page</body></html>", "text/html")
        elif path == "/loop.jpg":
            self._send(302, b"", headers=[("Location", "/loop.jpg")])
        elif path == "/flaky.jpg":
            FLAKY["count"] += 1
            self._send(200, GOOD) if FLAKY["count"] % 2 == 0 else self._send(503, b"busy", "text/html")
        else:
            self._send(404, b"", "text/html")


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


CASES = ["good", "missing", "error", "reset", "slow", "truncated", "huge", "page", "loop"]


def _meta(base, names):
    return pl.DataFrame({"uid": [f"t:{i}" for i in range(len(names))], "URL": [f"{base}/{n}.jpg" for n in names], "TEXT": names})


def test_each_failure_is_recorded_with_its_reason(server, tmp_path):
    settings = DownloadSettings(processes_count=1, thread_count=4, image_size=32, timeout=2, allow_private_hosts=True)
    result = download_part(_meta(server, CASES), str(tmp_path / "v"), settings)
    status = dict(zip(CASES, result.status["status"].to_list()))
    reason = dict(zip(CASES, result.status["error_message"].fill_null("").to_list()))
    assert status["good"] == "success" and status["huge"] == "success"  # resized, not refused
    for name in ("missing", "error", "reset", "slow", "loop"):
        assert status[name] == "failed_to_download" and reason[name], name
    assert "404" in reason["missing"] and "500" in reason["error"]
    assert "timed out" in reason["slow"].lower() or "timeout" in reason["slow"].lower()
    for name in ("truncated", "page"):
        assert status[name] == "failed_to_resize" and reason[name], name
    assert result.successes == 2 and result.success_rate == pytest.approx(2 / len(CASES))


def test_retries_are_configurable(server, tmp_path):
    base = DownloadSettings(processes_count=1, thread_count=1, image_size=32, timeout=2, allow_private_hosts=True)
    FLAKY["count"] = 0
    once = download_part(_meta(server, ["flaky"]), str(tmp_path / "once"), base)
    FLAKY["count"] = 0
    retried = download_part(_meta(server, ["flaky"]), str(tmp_path / "retry"), DownloadSettings(**{**base.__dict__, "retries": 2}))
    assert once.status["status"].to_list() == ["failed_to_download"]
    assert retried.status["status"].to_list() == ["success"]
