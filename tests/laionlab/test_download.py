import json
import tarfile
import time
from pathlib import Path

import polars as pl
import pytest

from laionlab.io.download import DownloadSettings, download_part, failure_table, read_status
from laionlab.io.metadata import read_part


def test_download_part_records_every_uid(tmp_path, demo):
    part = demo.parts[0]
    meta = read_part(str(Path(demo.root) / "laion_parts" / f"{part}.parquet"), part)
    settings = DownloadSettings(processes_count=1, thread_count=4, image_size=32, allowed_file_roots=(demo.root,))
    result = download_part(meta, str(tmp_path / "v1"), settings)
    status = result.status
    assert status["uid"].to_list() == meta["uid"].to_list()
    broken = demo.broken_rows[part]
    by_row = dict(zip(meta["row"].to_list(), status["status"].to_list()))
    assert by_row[broken["missing_file"]] == "failed_to_download"
    assert by_row[broken["not_an_image"]] == "failed_to_resize"
    assert by_row[broken["truncated_jpeg"]] == "failed_to_resize"
    assert by_row[broken["empty_caption"]] == "success"
    assert result.successes == meta.height - 3
    # the shards hold exactly the successful uids, each with its caption
    in_tars = {}
    for shard in result.shards:
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    info = json.load(tar.extractfile(m))
                    in_tars[info["uid"]] = info["caption"]
    ok = status.filter(pl.col("status") == "success")["uid"].to_list()
    assert sorted(in_tars) == sorted(ok)
    captions = dict(zip(meta["uid"].to_list(), meta["TEXT"].to_list()))
    assert all(in_tars[u] == captions[u] for u in ok)
    reasons = dict(failure_table(status).rows())
    assert reasons["Image decoding error"] == 2 and sum(reasons.values()) == 3
    assert not (tmp_path / "v1.input").exists()


def test_read_status_marks_unreported_uids(tmp_path):
    pl.DataFrame({"uid": ["a"], "key": ["0"], "status": ["success"], "error_message": [None]}).write_parquet(
        tmp_path / "00000.parquet"
    )
    status = read_status(str(tmp_path), pl.Series(["a", "b"]))
    assert status["status"].to_list() == ["success", "not_attempted"]


def test_settings_are_validated():
    with pytest.raises(ValueError, match="resize_mode"):
        DownloadSettings(resize_mode="stretch")
    with pytest.raises(ValueError, match="distributor"):
        DownloadSettings(distributor="slurm")
    with pytest.raises(ValueError, match="max_image_pixels"):
        DownloadSettings(max_image_pixels=0)
    with pytest.raises(ValueError, match="request_deadline_s"):
        DownloadSettings(request_deadline_s=0)
    with pytest.raises(ValueError, match="allowed_hosts entry 'intranet:80'"):
        DownloadSettings(allowed_hosts=("intranet:80",))


def test_download_needs_uid_url_text(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        download_part(pl.DataFrame({"URL": ["x"]}), str(tmp_path), DownloadSettings())


def test_an_in_process_output_folder_is_refused_by_name():
    meta = pl.DataFrame({"uid": ["p:0"], "URL": ["https://example.com/a.jpg"], "TEXT": ["t"]})
    with pytest.raises(ValueError, match="output_folder 'memory://lab/imgs': img2dataset writes from child processes"):
        download_part(meta, "memory://lab/imgs", DownloadSettings())


def test_url_policy_blocks_before_any_download(tmp_path, demo):
    """A crafted part: local files outside the demo, the cloud metadata address, a loopback
    server (allowed only when the test allows loopback)."""
    import functools
    import http.server
    import threading

    images = Path(demo.root) / "images" / demo.parts[0]
    good = sorted(images.glob("*.png"))[0]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(images))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = f"http://127.0.0.1:{server.server_address[1]}/{good.name}"
        urls = [
            good.as_uri(),
            "file:///etc/passwd",
            "http://169.254.169.254/latest/meta-data/",
            local,
            "ftp://example.com/a.jpg",
        ]
        meta = pl.DataFrame({"uid": [f"p:{i}" for i in range(len(urls))], "URL": urls, "TEXT": ["x"] * len(urls)})
        strict = DownloadSettings(processes_count=1, thread_count=2, image_size=32, allowed_file_roots=(demo.root,))
        result = download_part(meta, str(tmp_path / "strict"), strict)
        assert result.status["uid"].to_list() == meta["uid"].to_list()
        assert result.status["status"].to_list() == [
            "success",
            "blocked_by_policy",
            "blocked_by_policy",
            "blocked_by_policy",
            "blocked_by_policy",
        ]
        reasons = result.status["error_message"].to_list()
        assert (
            "outside the allowed roots" in reasons[1]
            and "link-local" in reasons[2]
            and "loopback" in reasons[3]
            and "ftp" in reasons[4]
        )
        loose = DownloadSettings(
            processes_count=1,
            thread_count=2,
            image_size=32,
            allowed_file_roots=(demo.root,),
            allow_private_hosts=True,
            process_timeout_s=90,
        )
        try:
            result = download_part(meta.slice(3, 1), str(tmp_path / "loose"), loose)
        except TimeoutError:  # seen once under full-suite load: the img2dataset child never returned
            result = download_part(meta.slice(3, 1), str(tmp_path / "loose2"), loose)
        assert result.status["status"].to_list() == ["success"]
    finally:
        server.shutdown()
    payloads = b"".join(p.read_bytes() for p in (tmp_path / "strict").glob("*.tar"))
    assert b"root:x:0:0" not in payloads


def test_a_hung_download_process_is_killed_with_a_clear_error(tmp_path, monkeypatch):
    """img2dataset stand-in that never returns and has a child of its own: both are killed."""
    import os
    import subprocess
    import sys

    real_popen = subprocess.Popen
    marker = tmp_path / "grandchild.pid"
    hang = (
        "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']);"
        f" open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(600)"
    )

    def fake_popen(cmd, **kwargs):
        return real_popen([sys.executable, "-c", hang], **kwargs)

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    meta = pl.DataFrame({"uid": ["a"], "URL": ["https://example.com/a.jpg"], "TEXT": ["x"]})
    with pytest.raises(TimeoutError, match="process_timeout_s"):
        download_part(meta, str(tmp_path / "v"), DownloadSettings(process_timeout_s=5))
    pid = int(marker.read_text())
    time.sleep(0.5)
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/status") as f:
            assert "zombie" in f.read().lower()  # killed, not yet reaped
    except ProcessLookupError:
        pass  # gone
