"""Re-downloading only a part's failed samples (issue 20): against a loopback server whose four
"flaky" images fail the first time, the retry requests exactly those four, keeps every earlier
success (shards copied, keys unchanged) and records the attempt per sample."""

import http.server
import io
import threading

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.io.download import DownloadSettings, download_part, lost_by_shard, redownload_failed
from laionlab.io.shards import iter_shard_images

FLAKY = {f"/flaky{i}.jpg" for i in range(4)}
STATE = {"requests": [], "broken": True}


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        STATE["requests"].append(self.path)
        if self.path in FLAKY and STATE["broken"]:
            code, body = 503, b""
        elif self.path.endswith(".jpg") and not self.path.startswith("/gone"):
            code, body = 200, _jpeg(hash(self.path) % 1000)
        else:
            code, body = 404, b""
        self.send_response(code)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_retry_fetches_only_the_failed_samples(server, tmp_path):
    names = [f"ok{i}" for i in range(8)] + [f"flaky{i}" for i in range(4)] + ["gone0"]
    meta = pl.DataFrame(
        {"uid": [f"p:{i:09d}" for i in range(len(names))], "URL": [f"{server}/{n}.jpg" for n in names], "TEXT": names}
    )
    settings = DownloadSettings(processes_count=1, thread_count=4, image_size=32, allow_private_hosts=True)
    STATE.update(requests=[], broken=True)
    first = download_part(meta, str(tmp_path / "v1"), settings)
    assert first.successes == 8

    STATE.update(requests=[], broken=False)  # the flaky host is back; "gone" still 404s
    second = redownload_failed(meta, first.status, first.shards, str(tmp_path / "v2"), settings)
    assert sorted(STATE["requests"]) == sorted([f"/flaky{i}.jpg" for i in range(4)] + ["/gone0.jpg"])
    assert second.successes == 12 and second.status["uid"].to_list() == meta["uid"].to_list()
    attempts = dict(zip(second.status["uid"], second.status["attempts"]))
    assert [attempts[u] for u in meta["uid"]] == [1] * 8 + [2] * 5
    # the earlier successes keep their status rows (keys, sha256) unchanged
    before = first.status.filter(pl.col("status") == "success").drop("attempts", strict=False)
    assert second.status.filter(pl.col("uid").is_in(before["uid"].implode())).select(before.columns).equals(before)
    # every success is in exactly one shard; a retried sample's key names its retry shard
    stored = [s.uid for s in iter_shard_images(second.shards)]
    assert sorted(stored) == sorted(second.status.filter(pl.col("status") == "success")["uid"].to_list())
    names_of = [s.rsplit("/", 1)[-1] for s in second.shards]
    assert any(n.startswith("retry2-") for n in names_of) and "00000.tar" in names_of
    where = lost_by_shard(second.status, second.shards, ["p:000000008", "p:000000000"])
    assert {k.split("-")[0] for k in where} == {"retry2", "00000.tar"}

    STATE.update(requests=[])
    third = redownload_failed(meta, second.status, second.shards, str(tmp_path / "v3"), settings)
    assert STATE["requests"] == ["/gone0.jpg"] and third.successes == 12
    assert dict(zip(third.status["uid"], third.status["attempts"]))["p:000000012"] == 3


def test_a_finished_img2dataset_that_hangs_on_exit_is_killed_and_its_outputs_used(tmp_path, monkeypatch):
    """Seen once under load: img2dataset wrote its shard and stats, then hung in its pool's
    shutdown. Once every shard's stats file is there for STUCK_AFTER_DONE_S, the wait gives up
    (the caller kills the process group); while a shard is missing it keeps waiting."""
    import subprocess
    import sys
    import time

    from laionlab.io import download

    monkeypatch.setattr(download, "STUCK_AFTER_DONE_S", 1.0)
    hang = "import pathlib, sys, time; pathlib.Path(sys.argv[1]).write_text('{}'); time.sleep(120)"
    proc = subprocess.Popen([sys.executable, "-c", hang, str(tmp_path / "00000_stats.json")], start_new_session=True)
    try:
        start = time.monotonic()
        assert download._wait_img2dataset(proc, str(tmp_path), 1, None) is False
        assert time.monotonic() - start < 30
        with pytest.raises(subprocess.TimeoutExpired):  # two shards expected, one written: no early exit
            download._wait_img2dataset(proc, str(tmp_path), 2, 3.0)
    finally:
        download._kill_group(proc.pid)
        proc.wait()
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert download._wait_img2dataset(quick, str(tmp_path / "none"), 1, None) is True
