"""materialize() tests of the export assets and takedown_report on the demo: the subsets' files
as their assets write them (laion_dedup's keep flags, datacomp_selection's kept ids, a pruned
pool's version, SWAT's samples), the demo's downloaded images, a takedown list of 10 demo uids."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.exports import pool_export, subset_export, swat_export, takedown_report
from asset_defs.ingest import STATUS_FILE, laion_images, laion_metadata
from laionlab.curation.datacomp import export_frame
from tests.conftest import instance_with_parts, make_resources, run


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory, demo):
    """The demo parts' metadata and images (no embeddings: the exports do not read them), with
    laion_dedup keeping every other row and DataComp's intersection every third."""
    resources = make_resources(tmp_path_factory.mktemp("lab"), str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts)
    for part in demo.parts:
        assert run([laion_metadata, laion_images], resources, instance, part).success
    files = resources["files"]
    uids = []
    for part in demo.parts:
        meta = files.read_parquet("laion_metadata", f"{part}.parquet", columns=["uid"])
        keep = pl.Series([i % 2 == 0 for i in range(meta.height)])
        files.write_parquet(meta.with_columns(part=pl.lit(part), keep=keep), "laion_dedup", f"{part}.parquet")
        uids += meta["uid"].to_list()[::3]
    files.write_parquet(export_frame(pl.DataFrame({"uid": uids})), "datacomp_selection", "intersection.parquet")
    # pruned_pools[demo_pool]: laion_dedup's kept rows minus every fifth; SWAT's picks of demo_swat
    instance.add_dynamic_partitions("dataset", ["demo_pool"])
    instance.add_dynamic_partitions("target", ["demo_swat"])
    with files.new_version("pruned_pools", "demo_pool") as version:
        for part in demo.parts:
            kept = files.read_parquet("laion_dedup", f"{part}.parquet").filter("keep").select("uid")
            version.write_parquet(kept.filter(pl.int_range(pl.len()) % 5 != 0), f"{part}.parquet")
    picks = [
        {"uid": uid, "class": str(i % 3), "score": 0.5, "rank": i, "method": method}
        for method, step in (("Random", 4), ("T2T-rank", 5))
        for i, uid in enumerate(uids[::step])
    ]
    files.write_parquet(pl.DataFrame(picks), "retrieval_samples", "demo_swat.parquet")
    return resources, instance


def _config(asset: str, **values) -> dict:
    return {"ops": {asset: {"config": values}}}


def _takedowns(files, demo, tmp_path) -> tuple[list[str], str]:
    """10 downloaded rows that laion_dedup keeps: 6 named by uid, 2 by URL, 2 by sha256."""
    picked, items = [], []
    for part in demo.parts:
        status = files.current_version("laion_images", part).read_parquet(STATUS_FILE)
        meta = files.read_parquet("laion_metadata", f"{part}.parquet")
        kept = files.read_parquet("laion_dedup", f"{part}.parquet").filter("keep").select("uid")
        ok = status.filter(pl.col("status") == "success").join(kept, on="uid", how="semi").join(meta, on="uid")
        picked += ok["uid"].to_list()[:4]
        items += [*ok["uid"].to_list()[:2], ok["URL"][2], ok["sha256"][3]]
    picked, items = picked[:10], items[:10]
    path = tmp_path / "takedowns.txt"
    path.write_text("\n".join(items) + "\n")
    return picked, str(path)


def test_subset_export_writes_every_format_without_the_takedown_list(downloaded, demo, tmp_path):
    import webdataset as wds

    resources, instance = downloaded
    files = resources["files"]
    picked, listing = _takedowns(files, demo, tmp_path)
    config = _config("subset_export", samples_per_shard=8, removal_list=listing)
    result = run([subset_export], resources, instance, "laion_dedup_kept", run_config=config)
    assert result.success
    meta = result.asset_materializations_for_node("subset_export")[0].metadata
    kept = pl.concat([files.read_parquet("laion_dedup", f"{p}.parquet") for p in demo.parts]).filter("keep")
    assert meta["subset_rows"].value == kept.height
    assert meta["removed_by_takedown_list"].value == 10
    assert meta["exported_img2dataset"].value == meta["exported_datacomp"].value == kept.height - 10
    version = files.current_version("subset_export", "laion_dedup_kept")
    assert set(version.read_parquet("removed.parquet")["uid"]) == set(picked)
    pairs = list(
        wds.WebDataset(meta["train_data"].value, shardshuffle=False)
        .decode("pil")
        .to_tuple("jpg;png;jpeg;webp", "txt", "json")
    )
    assert len(pairs) == meta["exported_webdataset"].value > 0
    in_shards = {info["uid"] for _, _, info in pairs}
    assert not in_shards & set(picked) and in_shards <= set(kept["uid"])
    assert not set(version.read_parquet("img2dataset.parquet")["uid"]) & set(picked)
    assert len(np.load(version.path("datacomp.npy"))) == kept.height - 10


def test_takedown_report_names_the_subsets_and_the_exports_holding_listed_rows(downloaded, demo, tmp_path):
    resources, instance = downloaded
    files = resources["files"]
    picked, listing = _takedowns(files, demo, tmp_path)
    plain = _config("subset_export", formats=["img2dataset"], removal_list=None)
    assert run([subset_export], resources, instance, "datacomp_intersection", run_config=plain).success
    result = run(
        [takedown_report], resources, instance, None, run_config=_config("takedown_report", removal_list=listing)
    )
    assert result.success
    meta = result.asset_materializations_for_node("takedown_report")[0].metadata
    assert meta["rows_listed"].value == 10 and meta["items_found"].value == 10
    assert "export:datacomp_intersection" in meta["subsets"].value and "laion_dedup_kept" in meta["subsets"].value
    assert "datacomp_intersection" in meta["exports_to_rematerialise"].value
    items = files.read_parquet("takedown_report", "items.parquet")
    assert set(items.filter(pl.col("subset") == "laion_dedup_kept")["uid"]) == set(picked)
    intersection = set(files.read_parquet("datacomp_selection", "intersection.parquet")["uid"])
    assert set(items.filter(pl.col("subset") == "datacomp_intersection")["uid"]) == set(picked) & intersection
    assert "laionet" in meta["subsets_not_materialised"].value
    # re-materialising the export with the list drops the rows: the report no longer names it
    again = _config("subset_export", formats=["img2dataset"], removal_list=listing)
    assert run([subset_export], resources, instance, "datacomp_intersection", run_config=again).success
    result = run(
        [takedown_report], resources, instance, None, run_config=_config("takedown_report", removal_list=listing)
    )
    meta = result.asset_materializations_for_node("takedown_report")[0].metadata
    assert "datacomp_intersection" not in meta["exports_to_rematerialise"].value


def test_without_a_list_the_report_says_so_and_a_missing_subset_is_named(downloaded):
    resources, instance = downloaded
    result = run([takedown_report], resources, instance, None, run_config=_config("takedown_report", removal_list=None))
    meta = result.asset_materializations_for_node("takedown_report")[0].metadata
    assert meta["applicable"].value is False
    result = run([subset_export], resources, instance, "laionet", raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "laionet/laionet.parquet does not exist: materialise laionet first" in str(failure.step_failure_data.error)


def _materialised(asset, key: str, resources, instance, **config):
    """The metadata of ``asset[key]`` materialised with ``config``."""
    name = asset.key.to_user_string()
    result = run([asset], resources, instance, key, run_config=_config(name, **config))
    assert result.success
    return result.asset_materializations_for_node(name)[0].metadata


def _pool(files, demo) -> set[str]:
    return {
        u
        for p in demo.parts
        for u in files.current_version("pruned_pools", "demo_pool").read_parquet(f"{p}.parquet")["uid"]
    }


def test_an_exported_pruned_pool_trains_with_open_clips_webdataset_loader(downloaded, demo, monkeypatch):
    """pool_export[dataset] writes the pool's downloaded images as shards that open_clip's own
    training loader (open_clip_train.data.get_wds_dataset) iterates: every exported image once,
    with its caption tokenised.

    open_clip 3.3.0's loader breaks on webdataset >= 0.2.96's end-of-shard marker (KeyError
    'fname': open_clip#935, webdataset#384) whatever the shards; the fix its maintainers gave,
    ``eof_value=None``, is applied here as the README tells trainers to."""
    import functools
    from types import SimpleNamespace

    import open_clip
    import open_clip_train.data
    import webdataset

    monkeypatch.setattr(
        open_clip_train.data,
        "tar_file_expander",
        functools.partial(webdataset.tariterators.tar_file_expander, eof_value=None),
    )
    get_wds_dataset = open_clip_train.data.get_wds_dataset

    resources, instance = downloaded
    files = resources["files"]
    meta = _materialised(pool_export, "demo_pool", resources, instance, samples_per_shard=16)
    pool = _pool(files, demo)
    assert meta["subset_rows"].value == len(pool) == meta["exported_img2dataset"].value
    rows = files.current_version("pool_export", "demo_pool").read_parquet("rows.parquet")
    assert set(rows["uid"]) == pool
    exported = meta["exported_webdataset"].value
    assert exported == rows["key"].drop_nulls().len() > 16  # more than one shard
    args = SimpleNamespace(
        train_data=meta["train_data"].value, val_data=None, train_num_samples=exported, val_num_samples=None,
        train_data_upsampling_factors=None, dataset_resampled=False, seed=0, batch_size=1, workers=0, world_size=1,
    )  # fmt: skip
    preprocess = open_clip.image_transform(32, is_train=False)
    info = get_wds_dataset(args, preprocess, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer("ViT-B-32"))
    seen = 0
    for images, texts in info.dataloader:
        assert images.shape == (1, 3, 32, 32) and texts.shape == (1, 77)
        seen += 1
    assert seen == exported


def test_swat_export_writes_each_method_with_its_classes(downloaded, demo):
    import webdataset as wds

    resources, instance = downloaded
    files = resources["files"]
    meta = _materialised(swat_export, "demo_swat", resources, instance, samples_per_shard=8)
    samples = files.read_parquet("retrieval_samples", "demo_swat.parquet")
    version = files.current_version("swat_export", "demo_swat")
    for method in ("Random", "T2T-rank"):
        mine = samples.filter(pl.col("method") == method)
        rows = version.read_parquet(f"{method}/rows.parquet")
        assert set(rows["uid"]) == set(mine["uid"])
        shards = sorted(Path(version.path(method, "webdataset")).glob("*.tar"))
        got = list(wds.WebDataset([str(p) for p in shards], shardshuffle=False).to_tuple("json", "cls"))
        assert len(got) == rows["key"].drop_nulls().len() > 0
        label = dict(zip(mine["uid"], mine["class"]))
        for info, cls in got:
            uid = json.loads(info)["uid"]
            assert cls.decode() == label[uid]  # each sample carries its SWAT class
    assert "T2T-rank" in meta["methods"].value and "Random" in meta["methods"].value


def test_the_report_covers_pools_swat_samples_and_their_exports(downloaded, demo, tmp_path):
    resources, instance = downloaded
    files = resources["files"]
    picked, listing = _takedowns(files, demo, tmp_path)
    for asset, key in ((pool_export, "demo_pool"), (swat_export, "demo_swat")):
        plain = _config(asset.key.to_user_string(), formats=["img2dataset"], removal_list=None)
        assert run([asset], resources, instance, key, run_config=plain).success
    result = run(
        [takedown_report], resources, instance, None, run_config=_config("takedown_report", removal_list=listing)
    )
    meta = result.asset_materializations_for_node("takedown_report")[0].metadata
    items = files.read_parquet("takedown_report", "items.parquet")
    pool = _pool(files, demo)
    assert set(items.filter(pl.col("subset") == "pruned_pool:demo_pool")["uid"]) == set(picked) & pool
    assert set(items.filter(pl.col("subset") == "export:pruned_pool:demo_pool")["uid"]) == set(picked) & pool
    random = set(files.read_parquet("retrieval_samples", "demo_swat.parquet").filter(method="Random")["uid"])
    assert set(items.filter(pl.col("subset") == "export:swat:demo_swat/Random")["uid"]) == set(picked) & random
    assert "pruned_pool:demo_pool" in meta["exports_to_rematerialise"].value
    # the pool export made with the list holds none of them
    again = _config("pool_export", formats=["img2dataset"], removal_list=listing)
    assert run([pool_export], resources, instance, "demo_pool", run_config=again).success
    rows = files.current_version("pool_export", "demo_pool").read_parquet("rows.parquet")
    assert not set(rows["uid"]) & set(picked) and rows.height == len(pool - set(picked))
