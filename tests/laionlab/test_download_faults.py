"""Downloads against a loopback HTTP server started by the test (hardening issue): every
failure is recorded per sample with its reason, the rest succeeds, retries are configurable;
redirects and names into private addresses, drips and decompression bombs are refused (issue 16)."""

import functools
import http.server
import io
import ipaddress
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.io.download import DownloadSettings, download_part
from laionlab.io.url_policy import address_reason, check_url
from tests.laionlab.slow_http import send_drip


def _jpeg(size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@functools.cache
def _megapixels_png(side=20_000) -> bytes:
    """A blank side x side RGB PNG: 5 MB on disk, 1.2 GB decoded."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, rows = zlib.compressobj(1), b"\x00" * (side * 3 + 1) * 200
    idat = b"".join(z.compress(rows) for _ in range(side // 200)) + z.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


GOOD = _jpeg()
HUGE = _jpeg((4000, 3000))
FLAKY = {"count": 0}
TARGET = {}  # the second server, which the first redirects to: host, port, hits


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
        elif path == "/to-self.jpg":
            self._send(302, b"", headers=[("Location", "/good.jpg")])
        elif path == "/to-target.jpg":
            self._send(302, b"", headers=[("Location", f"http://{TARGET['address']}:{TARGET['port']}/good.jpg")])
        elif path == "/to-target-by-name.jpg":
            self._send(302, b"", headers=[("Location", f"http://{TARGET['name']}:{TARGET['port']}/good.jpg")])
        elif path == "/drip.jpg":  # a byte a second for a minute: no single wait reaches the timeout
            send_drip(self, "image/jpeg")
        elif path == "/megapixels.png":
            self._send(200, _megapixels_png(), "image/png")
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
    return pl.DataFrame(
        {"uid": [f"t:{i}" for i in range(len(names))], "URL": [f"{base}/{n}.jpg" for n in names], "TEXT": names}
    )


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
    retried = download_part(
        _meta(server, ["flaky"]), str(tmp_path / "retry"), DownloadSettings(**{**base.__dict__, "retries": 2})
    )
    assert once.status["status"].to_list() == ["failed_to_download"]
    assert retried.status["status"].to_list() == ["success"]


def _local_name():
    """This machine's name and the address it resolves to, when that address is not public and
    the name is not localhost: a stand-in for a public-looking name that DNS points inside."""
    name = socket.gethostname()
    try:
        address = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip(f"this machine's name {name!r} does not resolve")
    if check_url(f"http://{name}/") is not None or address_reason(ipaddress.ip_address(address)) is None:
        pytest.skip(f"this machine's name {name!r} ({address}) is no private name")
    return name, address


@pytest.fixture
def target():
    """A second server, on the address this machine's name resolves to; it records every hit."""
    name, address = _local_name()
    hits = []

    class Target(Handler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

    srv = http.server.ThreadingHTTPServer((address, 0), Target)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    TARGET.update(name=name, address=address, port=srv.server_address[1], hits=hits)
    yield TARGET
    srv.shutdown()


def test_redirects_and_names_into_private_addresses_and_drips_are_refused(server, target, tmp_path):
    """Only the first server is allowed (allowed_hosts): a hop or a name that leads to the second
    is refused, on the URL or at connect time, in img2dataset's workers; a drip ends at the deadline."""
    other = f"{target['name']}:{target['port']}"
    urls = {
        "good": f"{server}/good.jpg",
        "to-self": f"{server}/to-self.jpg",
        "to-target": f"{server}/to-target.jpg",  # checked on the redirect's URL
        "to-target-by-name": f"{server}/to-target-by-name.jpg",  # the name passes; its address not
        "by-name": f"http://{other}/good.jpg",
        "by-address": f"http://{target['address']}:{target['port']}/good.jpg",  # refused before img2dataset
        "drip": f"{server}/drip.jpg",
    }
    meta = pl.DataFrame({"uid": [f"t:{i}" for i in range(len(urls))], "URL": list(urls.values()), "TEXT": list(urls)})
    settings = DownloadSettings(
        processes_count=1,
        thread_count=8,
        image_size=32,
        timeout=2,
        allowed_hosts=(server.removeprefix("http://"),),
        request_deadline_s=3,
    )
    result = download_part(meta, str(tmp_path / "v"), settings)
    status = dict(zip(urls, result.status["status"].to_list()))
    reason = dict(zip(urls, result.status["error_message"].fill_null("").to_list()))
    assert status["good"] == status["to-self"] == "success"
    assert status["to-target"] == "failed_to_download" and "blocked by URL policy: redirect to" in reason["to-target"]
    for name in ("to-target-by-name", "by-name"):
        assert (
            status[name] == "failed_to_download" and f"blocked by URL policy: {target['address']} is a" in reason[name]
        ), reason[name]
    assert status["by-address"] == "blocked_by_policy"
    assert status["drip"] == "failed_to_download" and "request_deadline_s=3 s reached" in reason["drip"]
    assert result.seconds < 30  # the drip would hold the part for a minute
    assert target["hits"] == []


def test_an_image_over_the_pixel_cap_is_refused_before_decoding(server, tmp_path):
    """A 20000 x 20000 PNG (5 MB, 1.2 GB decoded) fails with a reason and without the memory:
    download_part runs in a fresh process, whose children's peak RSS is compared with that of a
    process that only imports img2dataset (about 0.7 GB: it imports torch)."""
    _megapixels_png()
    script = f"""
import json, resource, subprocess, sys, polars as pl
from laionlab.io.download import DownloadSettings, download_part
subprocess.run([sys.executable, "-c", "import img2dataset.downloader, cv2"], check=True, capture_output=True)
baseline = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
meta = pl.DataFrame(
    {{"uid": ["t:0", "t:1"], "URL": ["{server}/megapixels.png", "{server}/good.jpg"], "TEXT": ["big", "good"]}}
)
settings = DownloadSettings(
    processes_count=1, thread_count=2, image_size=32, timeout=10, allowed_hosts=({server.removeprefix("http://")!r},)
)
result = download_part(meta, {str(tmp_path / "v")!r}, settings)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
status, error = result.status["status"].to_list(), result.status["error_message"].to_list()
print(json.dumps({{"status": status, "error": error, "peak": peak, "baseline": baseline}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["status"] == ["failed_to_resize", "success"]
    assert "more than max_image_pixels=89478485 pixels" in got["error"][0]
    assert got["peak"] - got["baseline"] < 600 << 20, got


def test_a_killed_run_takes_img2dataset_and_its_workers_with_it(server, tmp_path):
    """kill -9 of the process that called download_part (a run worker) mid-download: img2dataset
    and its pool workers die with it instead of downloading on for minutes."""
    import os
    import signal

    import psutil

    meta = tmp_path / "meta.parquet"
    pl.DataFrame(
        {"uid": [f"t:{i}" for i in range(4)], "URL": [f"{server}/drip.jpg"] * 4, "TEXT": ["x"] * 4}
    ).write_parquet(meta)
    script = (
        "import sys, polars as pl\n"
        "from laionlab.io.download import DownloadSettings, download_part\n"
        "download_part(pl.read_parquet(sys.argv[1]), sys.argv[2], DownloadSettings(processes_count=2, thread_count=2, "
        "image_size=32, timeout=5, allow_private_hosts=True, request_deadline_s=120))\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script, str(meta), str(tmp_path / "out")])

    def downloaders():
        try:
            return [p for p in psutil.Process(worker.pid).children(recursive=True) if p.is_running()]
        except psutil.NoSuchProcess:
            return []

    deadline = time.monotonic() + 60
    while len(downloaders()) < 3:  # img2dataset and at least two pool workers
        assert worker.poll() is None and time.monotonic() < deadline, "img2dataset never started its workers"
        time.sleep(0.2)
    started = downloaders()
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    # 15 s was once too short in a full-suite run on the 2-core host (three pool workers still
    # sleeping): they are reported with their parent and state if they outlive a minute
    gone, alive = psutil.wait_procs(started, timeout=60)

    def described(p):
        try:
            return (p.pid, p.ppid(), p.status(), p.cmdline()[:3])
        except psutil.Error as err:
            return (p.pid, repr(err))

    assert not alive, f"still running 60 s after the run was killed: {[described(p) for p in alive]}"
