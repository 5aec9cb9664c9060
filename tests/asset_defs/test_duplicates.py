"""materialize() tests of the exact-duplicate assets: on constructed downloads (webdataset shards
and status tables as laion_images writes them, with the same image bytes under several uids and a
re-encoded copy) and on the demo's real img2dataset download."""

import hashlib
import io
import json
import tarfile

import numpy as np
import polars as pl
import pytest
from dagster import materialize
from PIL import Image

from asset_defs.duplicates import duplicates_gallery, exact_duplicates, image_hashes
from asset_defs.ingest import STATUS_FILE
from resources import FileStore
from tests.conftest import instance_with_parts, run

PARTS = ["part-00000", "part-00001", "part-00002"]


def _jpeg(seed: int, quality: int = 90) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


A, B, C, D = (_jpeg(s) for s in range(4))
C_RECODED = _jpeg(2, quality=60)  # other bytes, same picture
# per part: the bytes of each row (None: the download failed)
CONTENTS = {"part-00000": [A, B, A, None], "part-00001": [A, C, C_RECODED], "part-00002": [B, D]}


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_download(files: FileStore, part: str, contents: list) -> None:
    """What laion_images commits: one shard of the successes and the status of every uid."""
    rows = []
    with files.new_version("laion_images", part) as version:
        with tarfile.open(version.path("00000.tar"), "w") as tar:
            for r, data in enumerate(contents):
                uid, key = f"{part}:{r:09d}", f"00000{r:04d}"
                if data is None:
                    rows.append((uid, None, "failed_to_download", "timeout", None))
                    continue
                _add(tar, f"{key}.jpg", data)
                _add(tar, f"{key}.txt", b"a caption")
                _add(tar, f"{key}.json", json.dumps({"uid": uid, "key": key}).encode())
                rows.append((uid, key, "success", None, hashlib.sha256(data).hexdigest()))
        status = pl.DataFrame(rows, schema=["uid", "key", "status", "error_message", "sha256"], orient="row")
        version.write_parquet(status, STATUS_FILE)


@pytest.fixture
def downloaded(tmp_path):
    files = FileStore(root=str(tmp_path / "lab"))
    for part, contents in CONTENTS.items():
        _write_download(files, part, contents)
    return {"files": files}, instance_with_parts(PARTS)


def _config(**exact) -> dict:
    return {"ops": {"exact_duplicates": {"config": exact}}} if exact else {}


def _materialise_all(resources, instance, **exact) -> dict:
    results = {}
    for part in PARTS:
        assert run([image_hashes], resources, instance, part).success
    for part in PARTS:
        results[part] = run([exact_duplicates], resources, instance, part, run_config=_config(**exact))
        assert results[part].success
    return results


def _pairs(files: FileStore) -> dict[str, str]:
    table = pl.concat([files.read_parquet("exact_duplicates", f"{p}.parquet") for p in PARTS])
    assert table.columns[:3] == ["uid", "part", "duplicate_of"]
    return dict(zip(table["uid"], table["duplicate_of"]))


def test_identical_bytes_in_and_across_parts_point_at_the_first_copy(downloaded):
    resources, instance = downloaded
    results = _materialise_all(resources, instance)
    assert _pairs(resources["files"]) == {
        "part-00000:000000002": "part-00000:000000000",
        "part-00001:000000000": "part-00000:000000000",
        "part-00002:000000000": "part-00000:000000001",
    }
    hashes = resources["files"].read_parquet("image_hashes", "part-00000.parquet")
    assert hashes["uid"].to_list() == [f"part-00000:{r:09d}" for r in range(3)]  # the failed row has no hash
    assert hashes["phash"].null_count() == 0
    index = resources["files"].read_parquet("image_hashes", "part-00000.sha256.parquet")
    assert index["sha256"].is_sorted() and index.height == 2 and sorted(index["copies"]) == [1, 2]
    meta = results["part-00001"].asset_materializations_for_node("exact_duplicates")[0].metadata
    assert meta["rows"].value == 3 and meta["duplicates"].value == 1
    assert list(meta["hashes_read"].value) == ["part-00000", "part-00001"]
    assert "| part-00000 | 1 |" in meta["duplicates_by_part"].value
    assert "part-00000:000000000" in meta["largest_groups"].value
    assert meta["duplicates_plot"].value.startswith("![plot](data:image/png;base64,")
    assert meta["params"].value == {"phash_distance": None, "top_groups": 20}


def test_the_gallery_shows_copies_beside_their_original_seeded_and_bounded(downloaded):
    resources, instance = downloaded
    _materialise_all(resources, instance)

    def gallery(**config):
        result = materialize(
            [duplicates_gallery], resources=resources, instance=instance,
            run_config={"ops": {"duplicates_gallery": {"config": config}}} if config else None,
        )  # fmt: skip
        return result.asset_materializations_for_node("duplicates_gallery")[0].metadata

    meta = gallery()
    assert meta["gallery"].value.startswith("![gallery](data:image/jpeg;base64,")
    assert resources["files"].exists("duplicates_gallery", "duplicates.jpg")
    assert meta["duplicates"].value == 3 and meta["images_shown"].value == 5 and meta["images_missing"].value == 0
    table = meta["pairs_shown"].value
    assert "| part-00002:000000000 | part-00000:000000001 | sha256 |" in table
    two = gallery(pairs=2, seed=3)
    assert len([line for line in two["pairs_shown"].value.splitlines() if line.startswith("| part-")]) == 2
    assert two["pairs_shown"].value == gallery(pairs=2, seed=3)["pairs_shown"].value


def test_the_gallery_says_when_there_is_nothing_to_show(downloaded):
    resources, _ = downloaded
    instance = instance_with_parts(["part-00002"])  # alone, its rows copy nothing earlier
    assert run([image_hashes, exact_duplicates], resources, instance, "part-00002").success
    meta = materialize([duplicates_gallery], resources=resources, instance=instance)
    meta = meta.asset_materializations_for_node("duplicates_gallery")[0].metadata
    assert meta["applicable"].value is False and "no duplicates" in meta["reason"].value


def test_image_hashes_metadata_counts_groups_within_the_part(downloaded):
    resources, instance = downloaded
    meta = run([image_hashes], resources, instance, "part-00000").asset_materializations_for_node("image_hashes")[0]
    meta = meta.metadata
    assert meta["rows_hashed"].value == 3 and meta["distinct_images"].value == 2
    assert meta["duplicate_groups_in_part"].value == 1 and meta["phashes"].value == 3 and meta["undecoded"].value == 0


def test_a_reencoded_copy_is_found_by_its_phash(downloaded):
    resources, instance = downloaded
    _materialise_all(resources, instance, phash_distance=4)
    table = resources["files"].read_parquet("exact_duplicates", "part-00001.parquet")
    recoded = table.filter(pl.col("uid") == "part-00001:000000002").row(0, named=True)
    assert recoded["duplicate_of"] == "part-00001:000000001" and recoded["match"] == "phash"
    assert recoded["distance"] <= 4
    assert _pairs(resources["files"])["part-00002:000000000"] == "part-00000:000000001"  # bytes still match


def test_phash_distance_needs_phashes(downloaded):
    resources, instance = downloaded
    for part in PARTS[:2]:
        config = {"ops": {"image_hashes": {"config": {"phash": False}}}}
        assert run([image_hashes], resources, instance, part, run_config=config).success
    result = run(
        [exact_duplicates], resources, instance, PARTS[1], run_config=_config(phash_distance=0), raise_on_error=False
    )
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "holds no pHash" in message and "phash: false" in message
    assert run([exact_duplicates], resources, instance, PARTS[1]).success  # sha256 alone needs none


def test_waits_for_an_earlier_part_in_flight_and_names_a_missing_one(downloaded, monkeypatch):
    """What a backfill does: exact_duplicates[p] starts while image_hashes of an earlier part is
    still queued -> the step retries and, if that run never comes, fails naming it; an earlier
    part with no hashes and no run on the way fails at once."""
    from dagster import Definitions, define_asset_job

    from asset_defs import lineage
    from asset_defs.partitions import laion_part

    resources, instance = downloaded
    assert run([image_hashes], resources, instance, PARTS[1]).success
    result = run([exact_duplicates], resources, instance, PARTS[1], raise_on_error=False)
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "image_hashes is missing for " + PARTS[0] in message

    monkeypatch.setattr(lineage, "WAIT_SECONDS", 0.05)
    monkeypatch.setattr(lineage, "WAIT_TRIES", 2)
    hash_job = define_asset_job("hash", [image_hashes], partitions_def=laion_part)
    job = Definitions(assets=[image_hashes], jobs=[hash_job], resources=resources).resolve_job_def("hash")
    instance.create_run_for_job(
        job, tags={"dagster/partition": PARTS[0]}, asset_selection=frozenset({image_hashes.key})
    )
    result = run([exact_duplicates], resources, instance, PARTS[1], raise_on_error=False)
    assert len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]) == 2
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert f"image_hashes of {PARTS[0]} still running" in message
    assert run([image_hashes], resources, instance, PARTS[0]).success
    assert run([exact_duplicates], resources, instance, PARTS[1]).success


def test_demo_download_records_sha256_and_hashes_every_success(ingested, demo):
    """On img2dataset's own output: every success has a sha256 (compute_hash="sha256"), every
    shard image decodes to a pHash, and the duplicates are exactly the repeated digests."""
    resources, _, _ = ingested
    instance = instance_with_parts(demo.parts)
    for part in demo.parts:
        result = run([image_hashes, exact_duplicates], resources, instance, part)
        meta = result.asset_materializations_for_node("image_hashes")[0].metadata
        status = resources["files"].current_version("laion_images", part).read_parquet(STATUS_FILE)
        ok = status.filter(pl.col("status") == "success")
        assert meta["rows_hashed"].value == ok.height > 0 and ok["sha256"].null_count() == 0
        assert meta["undecoded"].value == 0
    digests = pl.concat(
        resources["files"].read_parquet("image_hashes", f"{p}.parquet", columns=["uid", "sha256"])
        for p in sorted(demo.parts)
    )
    first = {}
    want = {}
    for uid, sha in digests.iter_rows():
        if sha in first:
            want[uid] = first[sha]
        else:
            first[sha] = uid
    found = pl.concat(resources["files"].read_parquet("exact_duplicates", f"{p}.parquet") for p in sorted(demo.parts))
    assert dict(zip(found["uid"], found["duplicate_of"])) == want
