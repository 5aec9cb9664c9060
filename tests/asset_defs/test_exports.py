"""materialize() tests of subset_export and takedown_report on the demo: the subsets' files as
their assets write them (laion_dedup's keep flags, datacomp_selection's kept ids), the demo's
downloaded images, a takedown list of 10 demo uids."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.exports import subset_export, takedown_report
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
