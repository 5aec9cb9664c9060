import json
import tarfile
from pathlib import Path

import polars as pl
import pytest

from laionlab.io.download import DownloadSettings, download_part, failure_table, read_status
from laionlab.io.metadata import read_part


def test_download_part_records_every_uid(tmp_path, demo):
    part = demo.parts[0]
    meta = read_part(str(Path(demo.root) / "laion_parts" / f"{part}.parquet"), part)
    result = download_part(meta, str(tmp_path / "v1"), DownloadSettings(processes_count=1, thread_count=4, image_size=32))
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
    pl.DataFrame({"uid": ["a"], "key": ["0"], "status": ["success"], "error_message": [None]}).write_parquet(tmp_path / "00000.parquet")
    status = read_status(str(tmp_path), pl.Series(["a", "b"]))
    assert status["status"].to_list() == ["success", "not_attempted"]


def test_settings_are_validated():
    with pytest.raises(ValueError, match="resize_mode"):
        DownloadSettings(resize_mode="stretch")
    with pytest.raises(ValueError, match="distributor"):
        DownloadSettings(distributor="slurm")


def test_download_needs_uid_url_text(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        download_part(pl.DataFrame({"URL": ["x"]}), str(tmp_path), DownloadSettings())
