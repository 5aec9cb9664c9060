"""materialize() tests of the ingest assets on the demo parts, atomicity, and bad inputs."""

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.ingest import (
    EMBEDDINGS_TABLE,
    laion_embeddings,
    laion_embeddings_import,
    laion_images,
    laion_metadata,
)
from resources import ClipEncoder
from tests.conftest import ROWS_PER_PART, instance_with_parts, make_resources, run, run_scripts_at_once


def table_uids(resources, part=None):
    tables = resources["lance"].tables()
    where = f"part = '{part}'" if part else None
    query = tables.open(EMBEDDINGS_TABLE).search().limit(None).select(["uid"])
    return (query.where(where) if where else query).to_arrow()["uid"].to_pylist()


def test_every_ingest_asset_materialises_for_every_part(ingested, demo):
    resources, instance, results = ingested
    for part, result in results.items():
        assert result.success
        meta = result.asset_materializations_for_node("laion_metadata")[0].metadata
        assert meta["rows"].value == ROWS_PER_PART
        assert meta["nsfw_share"].value == pytest.approx(2 / ROWS_PER_PART)
        images = result.asset_materializations_for_node("laion_images")[0].metadata
        assert images["successes"].value == ROWS_PER_PART - 3  # missing file, non-image, truncated
        assert "Image decoding error" in images["failure_reasons"].value
        emb = result.asset_materializations_for_node("laion_embeddings")[0].metadata
        assert emb["rows"].value == ROWS_PER_PART - 3 and emb["model_id"].value == "laionlab-tiny/random-seed0"
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks == {
            "download_success_rate": True,
            "finite_values": True,
            "unit_norm": True,
            "one_model_one_dim": True,
            "every_download_decoded": True,
        }
    uids = table_uids(resources)
    assert len(uids) == len(set(uids)) == 3 * (ROWS_PER_PART - 3)
    # lineage: every embedded uid is a row of laion_metadata for its part
    for part in demo.parts:
        meta = resources["files"].read_parquet("laion_metadata", f"{part}.parquet")
        assert set(table_uids(resources, part)) <= set(meta["uid"].to_list())


def test_rematerialising_a_part_keeps_rows_and_uids(ingested, demo):
    resources, instance, _ = ingested
    part = demo.parts[1]
    before = sorted(table_uids(resources, part))
    others = sorted(table_uids(resources, demo.parts[0]))
    assert run([laion_embeddings], resources, instance, part).success
    assert sorted(table_uids(resources, part)) == before
    assert sorted(table_uids(resources, demo.parts[0])) == others


def test_failure_mid_write_leaves_previous_rows_readable(ingested, demo, monkeypatch):
    resources, instance, _ = ingested
    part = demo.parts[2]
    tables = resources["lance"].tables()
    old = tables.read_part(EMBEDDINGS_TABLE, part).sort_by("uid")
    import asset_defs.ingest as ingest

    real = ingest.encode_shards

    def one_batch_then_crash(*args, **kwargs):
        gen = real(*args, **kwargs)
        yield next(gen)
        raise RuntimeError("GPU fell off the bus")

    monkeypatch.setattr(ingest, "encode_shards", one_batch_then_crash)
    resources = {**resources, "clip": ClipEncoder(model_name="laionlab-tiny", batch_size=8, num_workers=0, seed=9)}
    result = run([laion_embeddings], resources, instance, part, raise_on_error=False)
    assert not result.success
    assert "GPU fell off the bus" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert tables.read_part(EMBEDDINGS_TABLE, part).sort_by("uid").equals(old)


def test_embedding_dim_mismatch_is_refused_without_losing_rows(ingested, demo, tmp_path):
    resources, instance, _ = ingested
    config = tmp_path / "laionlab-test-wide.json"
    config.write_text(
        json.dumps(
            {
                "embed_dim": 32,
                "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 16},
                "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
            }
        )
    )
    import open_clip

    open_clip.add_model_config(config)
    before = len(table_uids(resources))
    wide = {**resources, "clip": ClipEncoder(model_name="laionlab-test-wide", batch_size=8, num_workers=0)}
    result = run([laion_embeddings], wide, instance, demo.parts[0], raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "dimension 64" in error and "dimension 32" in error and EMBEDDINGS_TABLE in error
    assert len(table_uids(resources)) == before


@pytest.mark.parametrize(
    "clip, match",
    [
        (dict(model_name="ViT-Q-99"), "unknown open_clip model 'ViT-Q-99'"),
        (dict(model_name="laionlab-tiny", checkpoint="/nonexistent/ckpt.pt"), "/nonexistent/ckpt.pt"),
    ],
)
def test_bad_model_config_names_the_input(ingested, demo, clip, match):
    resources, instance, _ = ingested
    before = len(table_uids(resources))
    bad = {**resources, "clip": ClipEncoder(**clip, num_workers=0)}
    result = run([laion_embeddings], bad, instance, demo.parts[0], raise_on_error=False)
    assert not result.success
    assert match in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert len(table_uids(resources)) == before
    # laion_images checks the model before it downloads anything
    from asset_defs.ingest import images_dir

    committed = images_dir(resources["files"], demo.parts[0])
    result = run([laion_images], bad, instance, demo.parts[0], raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert match in error and "before downloading" in error
    assert images_dir(resources["files"], demo.parts[0]) == committed


def _source_with(tmp_path, name, frame):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    frame.write_parquet(src / f"{name}.parquet")
    return src


@pytest.mark.parametrize(
    "frame, match",
    [
        (pl.DataFrame({"URL": ["file:///x.jpg"], "CAPTION_X": ["a"]}), r"missing required column.*TEXT"),
        (pl.DataFrame({"TEXT": ["a"]}), r"missing required column.*URL"),
        (pl.DataFrame(schema={"URL": pl.String, "TEXT": pl.String}), "has no rows"),
    ],
    ids=["no-TEXT", "no-URL", "empty"],
)
def test_bad_metadata_part_fails_with_the_file_named(tmp_path, frame, match):
    good = pl.DataFrame({"URL": ["file:///x.jpg", "file:///y.jpg"], "TEXT": ["a", "b"]})
    src = _source_with(tmp_path, "part-bad", good)
    resources = make_resources(tmp_path / "lab", str(src))
    instance = instance_with_parts(["part-bad"])
    assert run([laion_metadata], resources, instance, "part-bad").success
    _source_with(tmp_path, "part-bad", frame)  # the source file is replaced by a broken one
    result = run([laion_metadata], resources, instance, "part-bad", raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "part-bad" in error and re.search(match, error)
    # the previous good version is still there, unchanged
    kept = resources["files"].read_parquet("laion_metadata", "part-bad.parquet")
    assert kept["URL"].to_list() == good["URL"].to_list()


def test_missing_source_file_is_named(tmp_path, demo):
    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    result = run([laion_metadata], resources, instance_with_parts(["part-00099"]), "part-00099", raise_on_error=False)
    assert not result.success
    assert "part-00099" in str(result.get_step_failure_events()[0].event_specific_data.error)


def test_part_whose_images_all_fail_is_an_error(tmp_path):
    # under the allowed file root (make_resources allows the source's parent), but missing
    frame = pl.DataFrame(
        {"URL": [(tmp_path / "nonexistent" / f"{i}.jpg").as_uri() for i in range(3)], "TEXT": ["a", "b", "c"]}
    )
    src = _source_with(tmp_path, "part-dead", frame)
    resources = make_resources(tmp_path / "lab", str(src))
    result = run(
        [laion_metadata, laion_images], resources, instance_with_parts(["part-dead"]), "part-dead", raise_on_error=False
    )
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "no image of part 'part-dead'" in error and "No such file" in error


def test_low_success_rate_warns_but_succeeds(tmp_path, demo):
    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    part = demo.parts[0]
    config = {"ops": {"laion_images": {"config": {"min_success_rate": 0.99}}}}
    result = run([laion_metadata, laion_images], resources, instance_with_parts([part]), part, run_config=config)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "download_success_rate" and not check.passed
    assert check.severity.value == "WARN"


def test_import_of_precomputed_embeddings(tmp_path, demo):
    part = demo.parts[0]
    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts([part])
    assert run([laion_metadata], resources, instance, part).success
    root = tmp_path / "release"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.save(root / "img_emb" / "img_emb_0000.npy", rng.normal(size=(ROWS_PER_PART, 12)).astype(np.float16))
    np.save(root / "text_emb" / "text_emb_0000.npy", rng.normal(size=(ROWS_PER_PART, 12)).astype(np.float16))
    pl.DataFrame({"url": ["u"] * ROWS_PER_PART}).write_parquet(root / "metadata" / "metadata_0000.parquet")
    config = {"ops": {"laion_embeddings_import": {"config": {"root": str(root), "batch_rows": 16}}}}
    result = run([laion_embeddings_import], resources, instance, part, run_config=config)
    assert result.success
    meta = resources["files"].read_parquet("laion_metadata", f"{part}.parquet")
    assert sorted(table_uids(resources)) == sorted(meta["uid"].to_list())
    # a release file of the wrong length for this part is refused
    np.save(root / "img_emb" / "img_emb_0000.npy", rng.normal(size=(5, 12)).astype(np.float16))
    np.save(root / "text_emb" / "text_emb_0000.npy", rng.normal(size=(5, 12)).astype(np.float16))
    pl.DataFrame({"url": ["u"] * 5}).write_parquet(root / "metadata" / "metadata_0000.parquet")
    bad = run([laion_embeddings_import], resources, instance, part, run_config=config, raise_on_error=False)
    assert not bad.success and "do not belong to this part" in str(
        bad.get_step_failure_events()[0].event_specific_data.error
    )


CONCURRENT = textwrap.dedent(
    """
    import sys
    from dagster import materialize
    from asset_defs.ingest import laion_embeddings
    from tests.conftest import instance_with_parts, make_resources
    data_root, source, part = sys.argv[1:]
    result = materialize([laion_embeddings], resources=make_resources(data_root, source),
                         instance=instance_with_parts([part]), partition_key=part)
    sys.exit(0 if result.success else 1)
    """
)


def test_three_parts_materialised_concurrently_leave_the_union(tmp_path, demo):
    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts)
    for part in demo.parts:
        assert run([laion_metadata, laion_images], resources, instance, part).success
    run_scripts_at_once(
        CONCURRENT, [[str(tmp_path / "lab"), str(Path(demo.root) / "laion_parts"), part] for part in demo.parts]
    )
    expected = set()
    for part in demo.parts:
        status = pl.read_parquet(
            Path(resources["files"].path("laion_images", part)).glob("v-*/status.parquet").__next__()
        )
        expected |= set(status.filter(pl.col("status") == "success")["uid"].to_list())
    uids = table_uids(resources)
    assert len(uids) == len(set(uids)) and set(uids) == expected


def test_a_big_file_is_cut_into_partitions_by_the_sensor_and_each_ingests_its_rows(tmp_path):
    """A 2,500-row file with rows_per_partition=1,000 (small row groups): the sensor registers
    part-00007.000..002 with their ingest runs; laion_metadata and laion_embeddings_import of
    each read only their rows, with uids that keep the file row; together they are the file,
    once. Changing rows_per_partition afterwards is refused, naming the setting."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from dagster import SkipReason, build_sensor_context

    from resources import LaionSource
    from sensors.laion_parts import laion_parts_sensor

    n, dim = 2_500, 8
    src = tmp_path / "parts"
    src.mkdir()
    table = pa.table(
        {"url": [f"http://example.com/{i}.jpg" for i in range(n)], "caption": [f"caption {i}" for i in range(n)]}
    )
    pq.write_table(table, src / "part-00007.parquet", row_group_size=300)
    (src / "._part-00007.parquet").write_bytes(b"\0")  # macOS AppleDouble file: not a part
    root = tmp_path / "release"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    img = rng.normal(size=(n, dim)).astype(np.float16)
    np.save(root / "img_emb" / "img_emb_0007.npy", img)
    np.save(root / "text_emb" / "text_emb_0007.npy", rng.normal(size=(n, dim)).astype(np.float16))
    pq.write_table(table, root / "metadata" / "metadata_0007.parquet")

    resources = make_resources(tmp_path / "lab", str(src))
    resources["source"] = LaionSource(uri=str(src), rows_per_partition=1_000)
    instance = instance_with_parts([])
    result = laion_parts_sensor(build_sensor_context(instance=instance, resources={"source": resources["source"]}))
    keys = ["part-00007.000", "part-00007.001", "part-00007.002"]
    assert (
        list(result.dynamic_partitions_requests[0].partition_keys)
        == keys
        == [r.partition_key for r in result.run_requests]
    )
    instance.add_dynamic_partitions("laion_part", keys)
    config = {"ops": {"laion_embeddings_import": {"config": {"root": str(root), "batch_rows": 128}}}}
    frames = []
    for key in keys:
        assert run([laion_metadata, laion_embeddings_import], resources, instance, key, run_config=config).success
        frames.append(resources["files"].read_parquet("laion_metadata", f"{key}.parquet"))
    assert [f.height for f in frames] == [1_000, 1_000, 500]
    meta = pl.concat(frames)
    assert meta["row"].to_list() == list(range(n)) and meta["TEXT"].to_list() == table["caption"].to_pylist()
    assert meta["uid"][1_234] == "part-00007.001:000001234" and meta["part"][1_234] == "part-00007.001"
    tbl = (
        resources["lance"]
        .tables()
        .open("laion_embeddings")
        .search()
        .limit(None)
        .select(["uid", "image_emb"])
        .to_polars()
    )
    assert sorted(tbl["uid"]) == sorted(meta["uid"])
    row = tbl.filter(pl.col("uid") == "part-00007.002:000002400")["image_emb"][0].to_numpy()
    want = img[2400].astype(np.float32)
    np.testing.assert_allclose(row, want / np.linalg.norm(want), rtol=1e-5)
    # no new file, nothing to register; a setting that would cut the file differently is refused
    again = laion_parts_sensor(build_sensor_context(instance=instance, resources={"source": resources["source"]}))
    assert isinstance(again, SkipReason)
    resources["source"] = LaionSource(uri=str(src), rows_per_partition=600)
    bad = run([laion_metadata], resources, instance, keys[1], raise_on_error=False)
    error = str(bad.get_step_failure_events()[0].event_specific_data.error)
    assert "rows_per_partition" in error and "part-00007" in error


def test_a_second_model_of_the_same_dimension_fails_one_model_one_dim(tmp_path, demo):
    """Part 2 embedded by another model of the same dimension: the check fails for it, naming
    the rows of the other model (counted through the model column's index, not a table scan)."""
    from asset_defs.ingest import laion_embeddings, laion_images, laion_metadata

    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts[:2])
    assert run([laion_metadata, laion_images, laion_embeddings], resources, instance, demo.parts[0]).success
    other = {**resources, "clip": ClipEncoder(model_name="laionlab-tiny", seed=1, batch_size=16, num_workers=0)}
    result = run([laion_metadata, laion_images, laion_embeddings], other, instance, demo.parts[1], raise_on_error=False)
    assert not result.success  # the check is blocking
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "one_model_one_dim"]
    assert not check.passed
    table = check.metadata["models"].value
    assert "laionlab-tiny/random-seed1" in table and f"| (any other) | {ROWS_PER_PART - 3} | other parts |" in table
    assert sorted(i.columns for i in resources["lance"].tables().open(EMBEDDINGS_TABLE).list_indices()) == [
        ["model"],
        ["part"],
        ["uid"],
    ]
    # a later run's reader refuses the mixed table, naming the models and the parts
    from dagster import Failure, materialize

    from asset_defs.train_test_similarity import dedup_centroids

    with pytest.raises(
        Failure,
        match=(
            rf"mixes models: laionlab-tiny/random-seed0: {ROWS_PER_PART - 3} rows; "
            rf"laionlab-tiny/random-seed1: {ROWS_PER_PART - 3} rows in {demo.parts[1]}"
        ),
    ):
        materialize([dedup_centroids], resources=resources, instance=instance)


def test_a_truncated_shard_does_not_shrink_the_part_silently(tmp_path, demo):
    """Re-embedding after a shard was cut in half: the step fails naming the shard and the
    samples lost, and the part keeps every stored row; with allow_shrink the smaller part is
    accepted."""
    from dagster import Failure

    from asset_defs.ingest import images_dir

    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    part = demo.parts[0]
    instance = instance_with_parts([part])
    assert run([laion_metadata, laion_images, laion_embeddings], resources, instance, part).success
    before = sorted(table_uids(resources, part))
    (shard,) = Path(images_dir(resources["files"], part)).glob("*.tar")
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])

    with pytest.raises(Failure, match=rf"lacks \d+ of the {len(before)} rows.*{shard.name}: \d+ \(") as err:
        run([laion_embeddings], resources, instance, part)
    assert "allow_shrink" in str(err.value)
    assert sorted(table_uids(resources, part)) == before  # nothing lost

    result = run(
        [laion_embeddings],
        resources,
        instance,
        part,
        run_config={"ops": {"laion_embeddings": {"config": {"allow_shrink": True}}}},
    )
    assert result.success
    after = table_uids(resources, part)
    assert 0 < len(after) < len(before) and set(after) < set(before)
    (decoded,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "every_download_decoded"]
    assert not decoded.passed and decoded.metadata["undecodable"].value == len(before) - len(after)


def test_a_second_run_downloading_the_same_part_says_another_run_is_writing_it(ingested, demo):
    """Two downloads of one part: the second would delete the first one's version when it
    commits. While one holds the part's writer lock, the other fails naming it."""
    import os

    from asset_defs.ingest import images_dir
    from laionlab.io.files import writer_lock

    resources, instance, _ = ingested
    part = demo.parts[2]
    committed = images_dir(resources["files"], part)
    with writer_lock(resources["files"].path("laion_images", part)):  # what the first run holds
        result = run([laion_images], resources, instance, part, raise_on_error=False)
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "another run is downloading this part" in error and f"pid {os.getpid()}" in error
    assert images_dir(resources["files"], part) == committed
    assert run([laion_images], resources, instance, part).success  # once it is free


def test_retry_failed_keeps_the_successes_and_fetches_only_the_failures(tmp_path, demo):
    """laion_images with retry_failed: the demo's failures (missing/corrupt files) are tried
    again, every earlier success is kept as it was, and the part's rows all have a status."""
    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    part, instance = demo.parts[0], instance_with_parts([demo.parts[0]])
    assert run([laion_metadata, laion_images], resources, instance, part).success
    first = pl.read_parquet(next(Path(resources["files"].path("laion_images", part)).glob("v-*/status.parquet")))
    failed = first.filter(pl.col("status") != "success")["uid"].to_list()
    assert failed  # the demo has undownloadable rows
    config = {"ops": {"laion_images": {"config": {"retry_failed": True}}}}
    result = run([laion_images], resources, instance, part, run_config=config)
    assert result.success
    current = resources["files"].current_version("laion_images", part)
    second = current.read_parquet("status.parquet")
    assert second["uid"].to_list() == first["uid"].to_list()
    attempts = dict(zip(second["uid"], second["attempts"]))
    assert {u for u, a in attempts.items() if a == 2} == set(failed)
    kept = first.filter(pl.col("status") == "success")
    assert second.filter(pl.col("uid").is_in(kept["uid"].implode())).select(kept.columns).equals(kept)
    shards = [Path(s).name for s in current.glob("*.tar")]
    assert set(shards) >= {Path(s).name for s in Path(resources["files"].path("laion_images", part)).glob("v-*/0*.tar")}
    assert result.asset_materializations_for_node("laion_images")[0].metadata["successes"].value >= kept.height
