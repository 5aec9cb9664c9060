"""materialize() tests of the DataComp filtering assets (group curation) on the demo."""

import numpy as np
import polars as pl
import pytest

from asset_defs.curation import datacomp_flags, datacomp_selection
from asset_defs.ingest import EMBEDDINGS_TABLE, STATUS_FILE
from asset_defs.profile import load_profile
from laionlab.curation import FILTERS, UID_DTYPE, datacomp_uids, uid_hex
from tests.conftest import instance_with_parts, run


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


DEMO = load_profile("demo")["assets"]  # the demo profile's values (the tests load the paper profile)


def _ops(name: str, **extra) -> dict:
    return {"ops": {name: {"config": {**DEMO.get(name, {}), **extra}}}}


@pytest.fixture(scope="module")
def curated(ingested, demo):
    """datacomp_flags for every demo part, then datacomp_selection, with the demo profile's values."""
    resources, _, _ = ingested
    instance = instance_with_parts(demo.parts)
    for part in demo.parts:
        assert run([datacomp_flags], resources, instance, part, run_config=_ops("datacomp_flags")).success
    # image_based (the demo profile's image_reference) needs seed 004's clusters: tested on its own below
    config = _ops("datacomp_selection", image_reference=None)
    assert run([datacomp_selection], resources, instance, None, run_config=config).success
    return resources, instance


def _scores(resources, part: str) -> dict[str, float]:
    frame = resources["lance"].tables().part_query(EMBEDDINGS_TABLE, part, ["uid", "clip_score"]).to_polars()
    return dict(zip(frame["uid"], frame["clip_score"]))


def _datacomp_basic(text, width, height, min_side) -> bool:
    """DataComp's load_uids_with_basic_filter_helper for one row (English: the demo has no
    language column, so every row counts as English)."""
    if text is None or width is None or height is None:
        return False
    short, long = min(width, height), max(width, height)
    return len(text.split()) > 2 and len(text) > 5 and short >= min_side and short > 0 and long / short <= 3.0


def test_flags_follow_datacomps_rules(curated, demo):
    resources, instance = curated
    files = resources["files"]
    min_side, threshold = DEMO["datacomp_flags"]["min_image_side"], DEMO["datacomp_flags"]["clip_threshold"]
    for part in demo.parts:
        flags = files.read_parquet("datacomp_flags", f"{part}.parquet")
        meta = files.read_parquet("laion_metadata", f"{part}.parquet")
        status = files.current_version("laion_images", part).read_parquet(STATUS_FILE)
        downloaded = {
            u: (w, h)
            for u, s, w, h in status.select("uid", "status", "original_width", "original_height").iter_rows()
            if s == "success"
        }
        scores = _scores(resources, part)
        assert flags["uid"].to_list() == meta["uid"].to_list()
        want_basic, want_clip = [], []
        for uid, text, w, h in meta.select("uid", "TEXT", "WIDTH", "HEIGHT").iter_rows():
            w, h = downloaded.get(uid, (w, h))  # the size img2dataset saw, else the metadata's
            want_basic.append(uid in scores and _datacomp_basic(text, w, h, min_side))
            want_clip.append(uid in scores and scores[uid] >= threshold)
        assert flags["basic"].to_list() == want_basic and 0 < sum(want_basic) < len(scores)
        assert flags["clip_score_threshold"].to_list() == want_clip and 0 < sum(want_clip) < len(scores)
        assert flags["laion2b"].to_list() == want_clip  # no language column: every row is English
        assert flags["no_filter"].sum() == len(scores)
        assert set(flags.filter(pl.col("size_source") == "download")["uid"]) == set(downloaded)
    meta = instance.get_latest_materialization_event(datacomp_flags.key).asset_materialization.metadata
    assert meta["kept_basic"].value == sum(want_basic) and meta["language_checked"].value is False  # the last part
    assert "](data:image/png;base64," in meta["clip_score_histogram"].value and "| basic |" in meta["kept"].value


def test_top_fraction_threshold_from_merged_histograms(curated, demo):
    resources, instance = curated
    files = resources["files"]
    scores = {u: s for p in demo.parts for u, s in _scores(resources, p).items()}
    merged = sum(files.load_npy("datacomp_flags", f"{p}.hist.npy", mmap=False) for p in demo.parts)
    assert merged.sum() == len(scores)
    meta = instance.get_latest_materialization_event(datacomp_selection.key).asset_materialization.metadata
    t, width = meta["top_fraction_threshold"].value, meta["threshold_resolution (bin width)"].value
    s = np.array(list(scores.values()), np.float64)
    exact = -np.sort(-s)[int(len(s) * 0.3)]  # DataComp's get_threshold
    assert t <= exact < t + width and width == 2.0**-15
    top = set(files.read_parquet("datacomp_selection", "clip_score_top_fraction.parquet")["uid"])
    assert top == {u for u, v in scores.items() if v >= t}
    assert {u for u, v in scores.items() if v >= exact} <= top


def test_exports_round_trip_in_datacomps_format(curated, demo):
    resources, instance = curated
    files = resources["files"]
    flags = pl.concat([files.read_parquet("datacomp_flags", f"{p}.parquet") for p in demo.parts])
    meta = instance.get_latest_materialization_event(datacomp_selection.key).asset_materialization.metadata
    top = set(files.read_parquet("datacomp_selection", "clip_score_top_fraction.parquet")["uid"])
    for name in (*(f for f in FILTERS if f != "image_based"), "intersection"):  # image_based: its own test
        table = files.read_parquet("datacomp_selection", f"{name}.parquet")
        ids = np.load(files.path("datacomp_selection", f"{name}.npy"))
        assert ids.dtype == UID_DTYPE and (np.sort(ids) == ids).all() and len(ids) == table.height
        assert (ids == datacomp_uids(uid_hex(table["uid"]))).all()
        assert table["part"].to_list() == [u.rsplit(":", 1)[0] for u in table["uid"]]
        assert meta[f"kept_{name}"].value == table.height
        if name in flags.columns:
            assert set(table["uid"]) == set(flags.filter(pl.col(name))["uid"])
    assert "](data:image/png;base64," in meta["kept_fraction_plot"].value
    both = set(files.read_parquet("datacomp_selection", "intersection.parquet")["uid"])
    assert both == set(flags.filter("basic")["uid"]) & top and both
    counts = files.read_parquet("datacomp_selection", "counts.parquet")
    assert counts["part"].to_list() == demo.parts and counts["no_filter"].sum() == flags["no_filter"].sum()


def test_selection_refuses_missing_parts_and_mixed_parameters(curated, demo):
    resources, _ = curated
    extra = instance_with_parts([*demo.parts, "part-99999"])
    result = run([datacomp_selection], resources, extra, None, raise_on_error=False)
    assert not result.success and "part-99999" in _error(result)
    mixed = instance_with_parts(demo.parts)
    for part in demo.parts:
        threshold = 0.3 if part == demo.parts[0] else DEMO["datacomp_flags"]["clip_threshold"]
        assert run(
            [datacomp_flags], resources, mixed, part, run_config=_ops("datacomp_flags", clip_threshold=threshold)
        ).success
    result = run([datacomp_selection], resources, mixed, None, raise_on_error=False)
    assert not result.success and "different parameters" in _error(result) and "clip_threshold=0.3" in _error(result)
    # the module's files as the other tests left them
    assert run([datacomp_flags], resources, mixed, demo.parts[0], run_config=_ops("datacomp_flags")).success


def test_agreement_counts_and_jaccard_over_the_parts(curated, demo, monkeypatch):
    """curation_agreement on DataComp's flags plus a constructed method (read from its own
    folder): counts and Jaccard equal set arithmetic over the pool; a method without results
    is left out and named."""
    from asset_defs import curation
    from asset_defs.curation import curation_agreement

    resources, instance = curated
    files = resources["files"]
    monkeypatch.setitem(curation.AGREEMENT_SOURCES, "every_third", ("agreement_test_flags", "keep"))
    kept = {}
    for part in demo.parts:
        flags = files.read_parquet("datacomp_flags", f"{part}.parquet")
        pool = flags.filter(pl.col("no_filter"))
        every_third = pool.select("uid").with_columns((pl.int_range(pl.len()) % 3 == 0).alias("keep"))
        files.write_parquet(every_third, "agreement_test_flags", f"{part}.parquet")
        for name, column in (("basic", "basic"), ("laion2b", "laion2b")):
            kept.setdefault(name, set()).update(pool.filter(pl.col(column))["uid"])
        kept.setdefault("every_third", set()).update(every_third.filter(pl.col("keep"))["uid"])
    config = {
        "ops": {
            "curation_agreement": {
                "config": {"methods": ["datacomp_basic", "datacomp_laion2b", "every_third", "exact_dedup"]}
            }
        }
    }
    result = run([curation_agreement], resources, instance, None, run_config=config)
    assert result.success
    pairs = files.read_parquet("curation_agreement", "pairs.parquet")
    a, b, c = kept["basic"], kept["laion2b"], kept["every_third"]
    expected = {
        ("datacomp_basic", "datacomp_laion2b"): (a, b),
        ("datacomp_basic", "every_third"): (a, c),
        ("datacomp_laion2b", "every_third"): (b, c),
    }
    for row in pairs.iter_rows(named=True):
        x, y = expected[(row["a"], row["b"])]
        assert (row["both"], row["either"]) == (len(x & y), len(x | y))
        assert row["jaccard"] == pytest.approx(len(x & y) / len(x | y), abs=1e-4)
    metadata = result.asset_materializations_for_node("curation_agreement")[0].metadata
    assert "exact_dedup" in metadata["methods_left_out (no results for every part)"].value


def test_the_gallery_shows_kept_and_rejected_rows_of_the_intersection(curated, demo):
    from asset_defs.curation import datacomp_gallery

    resources, instance = curated
    config = {"ops": {"datacomp_gallery": {"config": {"per_verdict": 4, "parts": 1, "seed": 2}}}}
    result = run([datacomp_gallery], resources, instance, None, run_config=config)
    meta = result.asset_materializations_for_node("datacomp_gallery")[0].metadata
    assert meta["gallery"].value.startswith("![gallery](data:image/jpeg;base64,")
    assert resources["files"].exists("datacomp_gallery", "kept_rejected.jpg")
    (part,) = meta["parts_shown"].value.split(", ")
    kept = set(resources["files"].read_parquet("datacomp_selection", "intersection.parquet")["uid"])
    lines = [[cell.strip() for cell in line.split("|")[1:-1]] for line in meta["rows_shown"].value.splitlines()[2:]]
    assert [v for v, *_ in lines] == ["kept"] * 4 + ["rejected"] * 4
    for verdict, uid, _, failed in lines:
        assert (
            uid.startswith(part) and (uid in kept) == (verdict == "kept") and (failed != "") == (verdict == "rejected")
        )
    again = run([datacomp_gallery], resources, instance, None, run_config=config)
    assert again.asset_materializations_for_node("datacomp_gallery")[0].metadata["rows_shown"] == meta["rows_shown"]


def test_image_based_keeps_the_pool_rows_of_the_reference_clusters(curated, demo, monkeypatch):
    """datacomp_selection with image_reference: the target clusters are those the reference
    images are nearest to, and image_based keeps the pool rows of those clusters that pass
    the caption filter (constructed clusters and reference vectors; the lab's own dedup files,
    if any, are put back afterwards)."""
    from pathlib import Path

    from asset_defs import curation

    resources, instance = curated
    files = resources["files"]
    names = [("dedup_centroids", "centroids.npy"), *(("dedup_assignments", f"{p}.parquet") for p in demo.parts)]
    saved = {n: Path(files.path(*n)).read_bytes() for n in names if files.exists(*n)}
    try:
        files.save_npy(np.eye(3, 4, dtype=np.float32), "dedup_centroids", "centroids.npy")
        expected = set()
        for part in demo.parts:
            flags = files.read_parquet("datacomp_flags", f"{part}.parquet").filter(pl.col("no_filter"))
            clusters = flags.select("uid", (pl.int_range(pl.len()) % 3).cast(pl.Int32).alias("cluster"))
            files.write_parquet(clusters, "dedup_assignments", f"{part}.parquet")
            ok = flags.join(clusters, on="uid").filter(pl.col("image_caption") & (pl.col("cluster") == 2))
            expected.update(ok["uid"])
        reference = np.array([[0, 0, 1, 0], [0.1, 0, 0.9, 0]], np.float32)  # both nearest centroid 2
        monkeypatch.setattr(curation, "reference_vectors", lambda lance, name, raw=True: reference)
        config = _ops("datacomp_selection", image_reference="demo_imagenet_val", export=["image_based"])
        result = run([curation.datacomp_selection], resources, instance, None, run_config=config)
        assert result.success
        kept = set(files.read_parquet("datacomp_selection", "image_based.parquet")["uid"])
        assert kept == expected and kept
        meta = result.asset_materializations_for_node("datacomp_selection")[0].metadata
        assert meta["image_based_target_clusters"].value == 1
    finally:
        for name in names:
            if name in saved:
                Path(files.path(*name)).write_bytes(saved[name])
            elif files.exists(*name):
                Path(files.path(*name)).unlink()
        run(
            [curation.datacomp_selection],
            resources,
            instance,
            None,
            run_config=_ops("datacomp_selection", image_reference=None),
        )
