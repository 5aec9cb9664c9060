"""The Ray path against the local path on the demo, on a Ray head the test starts on 127.0.0.1
with 2 CPUs (``LocalHead``: `ray start --block` in a session of its own, ended by process id)."""

import json
import os
import re
import secrets
import socket
import tarfile
from pathlib import Path

# Read by Ray at import: with clustering off Ray binds to loopback instead of the machine's
# outward address (the head, its workers and every client stay on 127.0.0.1); token
# authentication (Ray's default for a new head) with a token of the test's own, which the head,
# this driver and download_part's img2dataset child all inherit.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray")

from laionlab.distributed.ray_embed import (  # noqa: E402
    LocalHead,
    check_reachable,
    count_samples,
    ray_download_part,
    ray_download_settings,
    ray_encode_shards,
)
from laionlab.embed.encode import EncodeStats, encode_shards  # noqa: E402
from laionlab.embed.model import ClipSpec, load_clip  # noqa: E402
from laionlab.io.download import DownloadSettings, download_part  # noqa: E402
from laionlab.io.lance import LanceTables, embeddings_batches, embeddings_schema  # noqa: E402
from laionlab.io.metadata import read_part  # noqa: E402
from tests.laionlab.test_encode import write_shard  # noqa: E402

SPEC = ClipSpec("laionlab-tiny", device="cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head on 127.0.0.1 with 2 CPUs; yields its address ('127.0.0.1:PORT')."""
    head = LocalHead(num_cpus=2)
    try:
        yield head.address
    finally:
        ray.shutdown()
        head.stop()


def test_bad_addresses_fail_naming_the_address(tmp_path):
    nobody = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ConnectionError, match=re.escape(nobody)):
        check_reachable(nobody, timeout_s=2)
    shard = write_shard(tmp_path / "0.tar", [])
    # RuntimeError when this process already holds a connection (tests run in another order)
    with pytest.raises((ConnectionError, RuntimeError), match=re.escape(nobody)):
        ray_encode_shards(SPEC, [shard], nobody)
    with pytest.raises(ConnectionError, match=re.escape(nobody)):
        ray_download_part(
            pl.DataFrame({"uid": ["a"], "URL": ["x"], "TEXT": ["t"]}), str(tmp_path / "d"), DownloadSettings(), nobody
        )
    with pytest.raises(ValueError, match="host:port"):
        ray_encode_shards(SPEC, [shard], "127.0.0.1")
    with pytest.raises(ValueError, match="num_gpus_per_actor"):
        ray_encode_shards(ClipSpec("laionlab-tiny", device="cuda"), [shard], nobody)
    with pytest.raises(ValueError, match="unknown open_clip model"):
        ray_encode_shards(ClipSpec("no-such-model"), [shard], nobody)
    assert ray_download_settings(DownloadSettings()).distributor == "ray"


def test_cluster_without_gpus_is_refused(tmp_path, ray_head):
    shard = write_shard(tmp_path / "0.tar", [])
    with pytest.raises(ValueError, match=f"1.0 GPU.*{re.escape(ray_head)}"):
        ray_encode_shards(ClipSpec("laionlab-tiny"), [shard], ray_head, num_gpus_per_actor=1.0)


def test_ray_ingest_writes_the_rows_of_the_local_path(tmp_path, demo, ray_head):
    part = demo.parts[0]
    meta = read_part(str(Path(demo.root) / "laion_parts" / f"{part}.parquet"), part)
    # 10 rows a shard: 4 shards, so both download tasks and both actors get work
    settings = DownloadSettings(
        processes_count=1,
        thread_count=4,
        image_size=64,
        timeout=5,
        number_sample_per_shard=10,
        allowed_file_roots=(demo.root,),
    )
    local = download_part(meta, str(tmp_path / "local"), settings)
    remote = ray_download_part(meta, str(tmp_path / "ray"), settings, ray_head)
    assert len(remote.shards) == 4
    columns = ["uid", "status", "sha256"]
    assert remote.status.select(columns).equals(local.status.select(columns))
    assert remote.successes == local.successes == meta.height - 3

    # one more shard whose samples all fail: a non-image and a sample without uid
    garbage = {"jpg": b"not an image", "txt": b"x", "json": json.dumps({"uid": f"{part}:bad"}).encode()}
    with open(local.shards[0], "rb") as f, tarfile.open(fileobj=f) as tar:
        first = tar.getmembers()[0].name.split(".")[0]
        good_jpg = tar.extractfile(f"{first}.jpg").read()
    no_uid = {"jpg": good_jpg, "txt": b"y", "json": json.dumps({"key": "x"}).encode()}
    bad = write_shard(tmp_path / "bad.tar", [("bad0", garbage), ("bad1", no_uid)])
    assert count_samples(bad) == 2

    clip = load_clip(SPEC)
    expected = {}
    for b in encode_shards(clip, local.shards + [bad], batch_size=16, num_workers=0):
        for i, uid in enumerate(b.uid):
            expected[uid] = (b.image_emb[i], b.text_emb[i], b.image_norm[i], b.text_norm[i])

    stats = EncodeStats()
    encoded = ray_encode_shards(SPEC, remote.shards + [bad], ray_head, batch_size=16, concurrency=2, stats=stats)
    batches = embeddings_batches(encoded, part, SPEC.model_id)
    tables = LanceTables(str(tmp_path / "lance"))
    written = tables.replace_part("laion_embeddings", part, batches, embeddings_schema(clip.embed_dim))
    assert written.rows == len(expected) == meta.height - 3
    assert (stats.samples, stats.skipped) == (len(expected), 2)

    rows = tables.read_part("laion_embeddings", part).to_pylist()
    assert sorted(r["uid"] for r in rows) == sorted(expected)
    for r in rows:
        image, text, image_norm, text_norm = expected[r["uid"]]
        np.testing.assert_allclose(r["image_emb"], image, atol=1e-5)
        np.testing.assert_allclose(r["text_emb"], text, atol=1e-5)
        np.testing.assert_allclose([r["image_norm"], r["text_norm"]], [image_norm, text_norm], rtol=1e-5)
        assert r["model"] == SPEC.model_id


def test_ray_download_tasks_run_the_network_guard(tmp_path, ray_head):
    """img2dataset's tasks on the cluster install the same guard (runtime env setup hook): a
    redirect from the allowed server to another loopback port is refused in the Ray worker, and
    the second server is never hit."""
    import http.server
    import io
    import threading

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (200, 30, 30)).save(buf, format="JPEG")
    jpeg, hits = buf.getvalue(), []

    def serve(redirect_to: str | None):
        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hits.append((self.server.server_address[1], self.path))
                if self.path == "/hop.jpg" and redirect_to:
                    self.send_response(302)
                    self.send_header("Location", redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(jpeg)))
                self.end_headers()
                self.wfile.write(jpeg)

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv

    private = serve(None)
    allowed = serve(f"http://127.0.0.1:{private.server_address[1]}/good.jpg")
    base = f"http://127.0.0.1:{allowed.server_address[1]}"
    try:
        meta = pl.DataFrame({"uid": ["t:0", "t:1"], "URL": [f"{base}/good.jpg", f"{base}/hop.jpg"], "TEXT": ["a", "b"]})
        settings = DownloadSettings(
            processes_count=1, thread_count=2, image_size=32, timeout=5, allowed_hosts=(base.removeprefix("http://"),)
        )
        result = ray_download_part(meta, str(tmp_path / "ray"), settings, ray_head)
    finally:
        allowed.shutdown()
        private.shutdown()
    status = dict(zip(result.status["uid"], result.status["status"]))
    reasons = dict(zip(result.status["uid"], result.status["error_message"]))
    assert status["t:0"] == "success"
    assert status["t:1"] != "success" and "blocked by URL policy" in reasons["t:1"], reasons
    assert [port for port, _ in hits] == [allowed.server_address[1]] * 2  # the private server never saw a request
