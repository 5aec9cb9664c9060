"""materialize() tests of the SWAT retrieval assets (seed 003) on the demo."""

import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from asset_defs.retrieval import (
    caption_search_index,
    concept_synonyms,
    retrieval_samples,
    retrieved_images,
    search_captions,
    string_matches,
)
from asset_defs.visual_world import reference_embeddings
from tests.conftest import instance_with_parts, make_resources, run

TARGET = "demo_target"
FEWSHOT = "demo_imagenet_val"


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


def _rule(text: str | None, synonym: str) -> bool:
    """Whole words, case-insensitive, punctuation as spaces (ASCII captions)."""
    words = lambda t: " " + re.sub(r"[^0-9a-z]+", " ", t.lower().replace("'", "")) + " "  # noqa: E731
    return text is not None and words(synonym).strip() != "" and f" {words(synonym).strip()} " in words(text)


@pytest.fixture(scope="module")
def swat(world, demo):
    resources, _ = world
    instance = instance_with_parts(demo.parts)
    instance.add_dynamic_partitions("target", [TARGET])
    instance.add_dynamic_partitions("dataset", [FEWSHOT])
    assert run([reference_embeddings], resources, instance, FEWSHOT).success
    assert run([caption_search_index], resources, instance, None).success
    assert run([concept_synonyms, string_matches, retrieved_images], resources, instance, TARGET).success
    config = {"n_per_class": 3, "templates": "simple"}
    assert run([retrieval_samples], resources, instance, TARGET, run_config={"ops": {"retrieval_samples": {"config": config}}}).success
    return resources, instance


def test_string_matches_equal_the_word_rule_over_all_captions(swat, demo):
    resources, instance = swat
    files = resources["files"]
    synonyms = files.read_parquet("concept_synonyms", f"{TARGET}.parquet")
    meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet") for p in demo.parts])
    want = {}
    for uid, text in zip(meta["uid"], meta["TEXT"]):
        classes = sorted(c for c, syns in zip(synonyms["class"], synonyms["synonyms"]) if any(_rule(text, s) for s in syns))
        if classes:
            want[uid] = classes
    got = files.read_parquet("string_matches", f"{TARGET}.parquet")
    assert dict(zip(got["uid"], got["classes"].to_list())) == want and len(want) > 20
    # the full-text index finds the same captions for a phrase
    hits = search_captions(resources["lance"], "soccer ball", limit=None)
    assert set(hits["uid"]) == {u for u, t in zip(meta["uid"], meta["TEXT"]) if _rule(t, "soccer ball")}


def test_caption_index_adds_only_new_parts(swat, demo):
    resources, _ = swat
    first = instance_with_parts(demo.parts)
    result = run([caption_search_index], resources, first, None)
    meta = result.asset_materializations_for_node("caption_search_index")[0].metadata
    assert meta["parts_added"].value == "none"


def test_t2t_rank_picks_the_captions_closest_to_the_prompt(swat):
    from asset_defs.laionet import laion_vectors_for
    from laionlab.embed.encode import encode_texts
    from laionlab.swat import read_swat_txt

    resources, _ = swat
    files = resources["files"]
    samples = files.read_parquet("retrieval_samples", f"{TARGET}.parquet")
    matches = files.read_parquet("string_matches", f"{TARGET}.parquet")
    synonyms = files.read_parquet("concept_synonyms", f"{TARGET}.parquet")
    loaded = resources["clip"].load()
    uids, T = laion_vectors_for(resources["lance"], matches["uid"].to_list(), column="text_emb")
    for cls, syns in zip(synonyms["class"], synonyms["synonyms"]):
        prompt = encode_texts(loaded, [f"a photo of a {s}." for s in syns]).mean(axis=0)
        prompt /= np.linalg.norm(prompt)
        members = set(matches.filter(pl.col("classes").list.contains(cls))["uid"])
        scored = sorted(((float(T[i] @ prompt), u) for i, u in enumerate(uids) if u in members), reverse=True)
        got = samples.filter((pl.col("method") == "T2T-rank") & (pl.col("class") == cls)).sort("rank")
        np.testing.assert_allclose(got["score"].to_numpy(), [s for s, _ in scored[:3]], rtol=1e-4)
    for method in ("T2T-rank-T2I-tshd", "T2T-rank-I2I-tshd"):
        assert samples.filter(pl.col("method") == method).height <= samples.filter(pl.col("method") == "T2T-rank").height
    listed = read_swat_txt(files.path("retrieval_samples", TARGET, "T2T500.txt".replace("500", "3")))
    assert listed.height == samples.filter(pl.col("method") == "T2T-rank").height
    assert all(Path(p).exists() for p in listed[listed.columns[0]])


def test_retrieved_images_downloads_only_rows_never_downloaded(tmp_path, demo):
    """A fresh lab with metadata only: the target's matched rows are downloaded and embedded."""
    from asset_defs.ingest import laion_metadata
    from asset_defs.retrieval import RETRIEVED_TABLE

    resources = make_resources(tmp_path, str(Path(demo.root) / "laion_parts"))
    instance = instance_with_parts(demo.parts[:1])
    instance.add_dynamic_partitions("target", [TARGET])
    assert run([laion_metadata], resources, instance, demo.parts[0]).success
    assert run([caption_search_index], resources, instance, None).success
    assert run([concept_synonyms, string_matches, retrieved_images], resources, instance, TARGET).success
    matched = set(resources["files"].read_parquet("string_matches", f"{TARGET}.parquet")["uid"])
    rows = resources["lance"].tables().part_query(RETRIEVED_TABLE, TARGET, ["uid"]).to_arrow()["uid"].to_pylist()
    broken = {f"{demo.parts[0]}:{i:09d}" for i in demo.broken_rows[demo.parts[0]].values()}
    assert set(rows) <= matched and matched - broken <= set(rows) and len(rows) == len(set(rows))
    assert not set(rows) & {f"{demo.parts[0]}:{i:09d}" for i in (0, 1)}  # missing file, not an image
    config = {"n_per_class": 2, "templates": "simple", "methods": ["Random", "T2T-rank", "T2I-rank"], "export_images": False}
    assert run([retrieval_samples], resources, instance, TARGET, run_config={"ops": {"retrieval_samples": {"config": config}}}).success
    samples = resources["files"].read_parquet("retrieval_samples", f"{TARGET}.parquet")
    assert set(samples["uid"]) <= set(rows) and samples.height > 0


def test_bad_targets_name_the_problem(swat):
    from resources import DatasetCatalog

    resources, instance = swat
    original = Path(resources["catalog"].path)
    catalog = original.with_name("bad_targets.yaml")  # next to the demo's, so relative paths hold
    entries = yaml.safe_load(original.read_text())
    entries["targets"].update({"no_fewshot": {"classes": ["tench", "goldfish"]}, "empty": {"classes": ["tench", ""]}})
    catalog.write_text(yaml.safe_dump(entries))
    bad = {**resources, "catalog": DatasetCatalog(path=str(catalog))}
    instance.add_dynamic_partitions("target", ["no_fewshot", "empty"])
    result = run([concept_synonyms], bad, instance, "empty", raise_on_error=False)
    assert not result.success and "empty" in _error(result)
    assert run([concept_synonyms, string_matches], bad, instance, "no_fewshot").success
    result = run([retrieval_samples], bad, instance, "no_fewshot", raise_on_error=False)
    assert not result.success and "fewshot_dataset" in _error(result)
    config = {"methods": ["T2T-rank", "Best"]}
    result = run([retrieval_samples], bad, instance, "no_fewshot", run_config={"ops": {"retrieval_samples": {"config": config}}}, raise_on_error=False)
    assert not result.success and "Best" in _error(result)
