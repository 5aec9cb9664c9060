"""materialize() tests of the SWAT retrieval assets (seed 003) on the demo."""

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from asset_defs.ingest import reference_embeddings
from asset_defs.retrieval import (
    caption_search_index,
    concept_synonyms,
    retrieval_gallery,
    retrieval_samples,
    retrieved_images,
    search_captions,
    string_matches,
)
from laionlab.io.shards import iter_shard_images
from tests.conftest import instance_with_parts, make_resources, run

TARGET = "demo_target"
FEWSHOT = "demo_imagenet_val"


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


def _with_targets(resources, instance, file_name: str, targets: dict, files: dict | None = None) -> dict:
    """Resources whose catalog is the demo's plus ``targets`` (written next to it, so relative
    paths hold; ``files``: name -> JSON value written there too), the targets registered."""
    from resources import DatasetCatalog

    original = Path(resources["catalog"].path)
    for name, value in (files or {}).items():
        original.with_name(name).write_text(json.dumps(value))
    entries = yaml.safe_load(original.read_text())
    entries["targets"].update(targets)
    catalog = original.with_name(file_name)
    catalog.write_text(yaml.safe_dump(entries))
    instance.add_dynamic_partitions("target", list(targets))
    return {**resources, "catalog": DatasetCatalog(path=str(catalog))}


def _samples_config(**config) -> dict:
    return {"ops": {"retrieval_samples": {"config": {"templates": "simple", **config}}}}


def _metadata(result, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


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
    result = run([concept_synonyms, string_matches, retrieved_images], resources, instance, TARGET)
    # every part was downloaded by laion_images: matched rows without an embedding failed there
    meta = result.asset_materializations_for_node("retrieved_images")[0].metadata
    assert meta["failed_in_ingest"].value > 0 and meta["downloaded"].value == 0 and "requested" not in meta
    config = {"n_per_class": 3, "templates": "simple"}
    assert run(
        [retrieval_samples], resources, instance, TARGET, run_config={"ops": {"retrieval_samples": {"config": config}}}
    ).success
    return resources, instance


def test_string_matches_equal_the_word_rule_over_all_captions(swat, demo):
    resources, instance = swat
    files = resources["files"]
    synonyms = files.read_parquet("concept_synonyms", f"{TARGET}.parquet")
    meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet") for p in demo.parts])
    want = {}
    for uid, text in zip(meta["uid"], meta["TEXT"]):
        classes = sorted(
            c for c, syns in zip(synonyms["class"], synonyms["synonyms"]) if any(_rule(text, s) for s in syns)
        )
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


def test_caption_index_adds_and_removes_parts_incrementally(tmp_path, demo):
    """Part 0 indexed, then part 1 registered: only part 1 is added and its captions are found
    by phrase; part 0 unregistered: its rows leave the index."""
    from asset_defs.ingest import laion_metadata

    resources = make_resources(tmp_path, str(Path(demo.root) / "laion_parts"))
    files, lance = resources["files"], resources["lance"]
    p0, p1 = demo.parts[:2]
    instance = instance_with_parts([p0])
    assert run([laion_metadata], resources, instance, p0).success
    meta = _metadata(run([caption_search_index], resources, instance, None), "caption_search_index")
    instance.add_dynamic_partitions("laion_part", [p1])
    assert run([laion_metadata], resources, instance, p1).success
    captions = {p: files.read_parquet("laion_metadata", f"{p}.parquet") for p in (p0, p1)}
    assert meta["parts_added"] == p0 and meta["rows"] == captions[p0].height

    def only_in(part, other):
        """(uid, caption) of a caption of ``part`` that no caption of ``other`` contains."""
        rows = [
            (u, t)
            for u, t in zip(captions[part]["uid"], captions[part]["TEXT"])
            if t and not any(_rule(o, t) for o in captions[other]["TEXT"])
        ]
        assert rows, f"every caption of {part} occurs in {other}"
        return rows[0]

    uid1, text1 = only_in(p1, p0)
    assert not len(search_captions(lance, text1, limit=None))  # part 1 is registered, not yet indexed
    meta = _metadata(run([caption_search_index], resources, instance, None), "caption_search_index")
    assert (meta["parts_added"], meta["parts_removed"]) == (p1, "none")
    assert meta["rows"] == captions[p0].height + captions[p1].height
    both = pl.concat([captions[p0], captions[p1]])
    assert (
        set(search_captions(lance, text1, limit=None)["uid"])
        == {u for u, t in zip(both["uid"], both["TEXT"]) if _rule(t, text1)}
        >= {uid1}
    )

    uid0, text0 = only_in(p0, p1)
    assert uid0 in set(search_captions(lance, text0, limit=None)["uid"])
    instance.delete_dynamic_partition("laion_part", p0)
    meta = _metadata(run([caption_search_index], resources, instance, None), "caption_search_index")
    assert (meta["parts_added"], meta["parts_removed"], meta["rows"]) == ("none", p0, captions[p1].height)
    assert not len(search_captions(lance, text0, limit=None))
    assert uid1 in set(search_captions(lance, text1, limit=None)["uid"])


def test_t2t_rank_picks_the_captions_closest_to_the_prompt(swat):
    from asset_defs.readers import laion_vectors_for
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
        assert (
            samples.filter(pl.col("method") == method).height <= samples.filter(pl.col("method") == "T2T-rank").height
        )
    listed = read_swat_txt(files.path("retrieval_samples", TARGET, "T2T500.txt".replace("500", "3")))
    assert listed.height == samples.filter(pl.col("method") == "T2T-rank").height
    assert all(Path(p).exists() for p in listed[listed.columns[0]])


def test_the_gallery_shows_every_method_on_the_same_few_classes(swat):
    resources, instance = swat
    config = {"ops": {"retrieval_gallery": {"config": {"classes": 2, "per_class": 1, "seed": 1}}}}
    meta = _metadata(run([retrieval_gallery], resources, instance, TARGET, run_config=config), "retrieval_gallery")
    assert meta["gallery"].startswith("![gallery](data:image/jpeg;base64,")
    assert resources["files"].exists("retrieval_gallery", f"{TARGET}.jpg")
    samples = resources["files"].read_parquet("retrieval_samples", f"{TARGET}.parquet")
    methods = samples["method"].unique(maintain_order=True).to_list()
    lines = [[c.strip() for c in line.split("|")[1:-1]] for line in meta["methods_shown"].splitlines()[2:]]
    assert [line[0] for line in lines] == methods and all(int(line[-1]) <= 2 for line in lines)
    classes = meta["classes_shown"].split(", ")
    assert len(classes) == 2 and set(classes) <= set(samples["class"])
    assert 0 < meta["images_shown"] and meta["images_missing"] == 0  # every picked image is in the shards
    again = _metadata(run([retrieval_gallery], resources, instance, TARGET, run_config=config), "retrieval_gallery")
    assert again["classes_shown"] == meta["classes_shown"]


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
    # the failures are remembered: a second run downloads nothing (no img2dataset start-up)
    # unless asked to try them again
    failed = resources["files"].read_parquet("retrieved_images", f"{TARGET}.failed.parquet")
    assert (
        set(failed["uid"]) == (matched - set(rows)) and failed.height > 0 and failed["error_message"].null_count() == 0
    )
    again = (
        run([retrieved_images], resources, instance, TARGET)
        .asset_materializations_for_node("retrieved_images")[0]
        .metadata
    )
    assert again["downloaded"].value == 0 and again["failed_before"].value == failed.height and "requested" not in again
    retry = {"ops": {"retrieved_images": {"config": {"retry_failed": True}}}}
    again = (
        run([retrieved_images], resources, instance, TARGET, run_config=retry)
        .asset_materializations_for_node("retrieved_images")[0]
        .metadata
    )
    assert again["requested"].value == failed.height and again["failed"].value == failed.height
    # the retry's new version still holds the first run's images
    shards = resources["files"].current_version("retrieved_images", TARGET).glob("*.tar")
    assert {s.uid for s in iter_shard_images(shards, set(rows))} == set(rows)
    assert (
        resources["files"]
        .read_parquet("retrieved_images", f"{TARGET}.failed.parquet")["uid"]
        .sort()
        .equals(failed["uid"].sort())
    )
    config = {
        "n_per_class": 2,
        "templates": "simple",
        "methods": ["Random", "T2T-rank", "T2I-rank"],
        "export_images": False,
    }
    assert run(
        [retrieval_samples], resources, instance, TARGET, run_config={"ops": {"retrieval_samples": {"config": config}}}
    ).success
    samples = resources["files"].read_parquet("retrieval_samples", f"{TARGET}.parquet")
    assert set(samples["uid"]) <= set(rows) and samples.height > 0


def test_swat_lists_label_rows_by_the_metrics_class_ids(swat):
    """A metrics file holding demo classes 1 and 0 as ids "3" and "0" (a gap, not in id order):
    every line's label is its class id, as SWAT writes int(class id)."""
    from laionlab.swat import read_swat_txt

    resources, instance = swat
    demo_metrics = json.loads(Path(resources["catalog"].path).with_name("demo_target_metrics.json").read_text())
    subset = {"3": demo_metrics["1"], "0": demo_metrics["0"]}
    res = _with_targets(
        resources,
        instance,
        "subset_targets.yaml",
        {"subset": {"metrics": "subset_metrics.json"}},
        {"subset_metrics.json": subset},
    )
    config = _samples_config(n_per_class=2, methods=["T2T-rank", "Random"], export_images=False)
    assert run(
        [concept_synonyms, string_matches, retrieval_samples], res, instance, "subset", run_config=config
    ).success
    files = resources["files"]
    samples = files.read_parquet("retrieval_samples", "subset.parquet")
    assert set(samples["class"]) == {"3", "0"}
    for method, name in (("T2T-rank", "T2T2.txt"), ("Random", "Random2.txt")):
        listed = read_swat_txt(files.path("retrieval_samples", "subset", name))
        want = samples.filter(pl.col("method") == method)
        assert sorted(zip(listed["path"], listed["label"])) == sorted(zip(want["uid"], want["class"].cast(pl.Int64)))
        assert listed["label"].to_list() == sorted(listed["label"]) and set(listed["label"]) == {0, 3}


def test_only_the_picked_images_are_exported(swat):
    resources, instance = swat
    res = _with_targets(resources, instance, "picked_targets.yaml", {"picked": {"metrics": "demo_target_metrics.json"}})
    config = _samples_config(n_per_class=1, methods=["T2T-rank", "T2I-rank"])
    result = run([concept_synonyms, string_matches, retrieval_samples], res, instance, "picked", run_config=config)
    files = resources["files"]
    samples = files.read_parquet("retrieval_samples", "picked.parquet")
    exported = {Path(p).name.rsplit(".", 1)[0] for p in files.glob("retrieval_samples", "picked", "images")}
    assert exported == {u.replace(":", "_") for u in samples["uid"]}
    meta = _metadata(result, "retrieval_samples")
    assert meta["images_picked"] == len(exported) < meta["candidates_with_embeddings"]


def test_bad_targets_name_the_problem(swat):
    resources, instance = swat
    bad = _with_targets(
        resources,
        instance,
        "bad_targets.yaml",
        {
            "no_fewshot": {"classes": ["tench", "goldfish"]},
            "empty": {"classes": ["tench", ""]},
            "duplicate": {"classes": ["tench", "Tench"]},
            "no_synonyms": {"metrics": "no_synonyms_metrics.json"},
            "unknown_label": {
                "classes": ["tench", "goldfish"],
                "fewshot_dataset": FEWSHOT,
                "fewshot_labels": {"n01440764": "shark"},
            },
        },
        {
            "no_synonyms_metrics.json": {
                "0": {"name": "tench", "alternates": {"tench": 1}},
                "5": {"name": "eft", "alternates": {}},
            }
        },
    )
    expected = {
        "empty": "target 'empty': names[1]: expected a non-empty str, got ''",
        "duplicate": "target 'duplicate': names: duplicate class name 'Tench' at 0 and 1",
        "no_synonyms": "class '5': synonyms: expected at least one synonym for class 'eft', got none",
    }
    for name, message in expected.items():
        result = run([concept_synonyms], bad, instance, name, raise_on_error=False)
        assert not result.success and message in _error(result), name
    assert run([concept_synonyms, string_matches], bad, instance, "no_fewshot").success
    result = run([retrieval_samples], bad, instance, "no_fewshot", raise_on_error=False)
    assert not result.success and "fewshot_dataset" in _error(result)
    config = {"methods": ["T2T-rank", "Best"]}
    result = run(
        [retrieval_samples],
        bad,
        instance,
        "no_fewshot",
        run_config={"ops": {"retrieval_samples": {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success and "unknown ['Best']" in _error(result)
    # a fewshot_labels value that names no class of the target
    assert run([concept_synonyms, string_matches], bad, instance, "unknown_label").success
    result = run(
        [retrieval_samples],
        bad,
        instance,
        "unknown_label",
        run_config=_samples_config(methods=["I2I-rank"]),
        raise_on_error=False,
    )
    assert not result.success
    assert (
        "label 'n01440764' maps to 'shark', which is no class of the target; known classes: 0 (tench), 1 (goldfish)"
        in _error(result)
    )


def test_string_matches_without_parts_says_so(swat):
    resources, _ = swat
    empty = instance_with_parts([])
    empty.add_dynamic_partitions("target", [TARGET])
    result = run([string_matches], resources, empty, TARGET, raise_on_error=False)
    assert not result.success and "no captions to match (0 laion_part partitions registered" in _error(result)


def test_string_matches_records_the_class_frequency_json(swat):
    resources, instance = swat
    result = run([string_matches], resources, instance, TARGET)
    path = _metadata(result, "string_matches")["class_frequency_json"]
    frequency = json.loads(Path(path).read_text())
    matches = resources["files"].read_parquet("string_matches", f"{TARGET}.parquet")
    assert sum(v["actual_freq"] for v in frequency.values()) == matches["classes"].list.len().sum()
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "every_part_has_captions" and check.passed


def test_string_matches_warns_of_a_part_without_captions(swat, demo):
    """A registered part that caption_search_index has not indexed yet: the matches of the
    others are written, and a yellow check names the part (it used to be a log line only)."""
    resources, _ = swat
    instance = instance_with_parts([*demo.parts, "part-09999"])
    instance.add_dynamic_partitions("target", [TARGET])
    result = run([concept_synonyms, string_matches], resources, instance, TARGET)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["parts_without_captions"].value == "part-09999"


def test_classes_changed_after_string_matches_says_what_to_rematerialise(swat):
    resources, instance = swat
    before = _with_targets(
        resources, instance, "changing_before.yaml", {"changing": {"classes": ["tench", "goldfish"]}}
    )
    assert run([concept_synonyms, string_matches], before, instance, "changing").success
    matched = resources["files"].read_parquet("string_matches", "changing.parquet")
    assert matched["classes"].list.contains("1").any()  # goldfish rows exist, so class 1 is needed below
    after = _with_targets(resources, instance, "changing_after.yaml", {"changing": {"classes": ["tench"]}})
    result = run(
        [retrieval_samples],
        after,
        instance,
        "changing",
        run_config=_samples_config(methods=["T2T-rank"]),
        raise_on_error=False,
    )
    assert not result.success
    assert "retrieval_samples[changing]" in _error(result) and "rematerialise string_matches[changing]" in _error(
        result
    )
    # string_matches keyed by class names (a metrics file), then the target becomes a class list
    named = _with_targets(
        resources,
        instance,
        "named_before.yaml",
        {"renamed": {"metrics": "named_metrics.json"}},
        {"named_metrics.json": {"tench": {"name": "tench", "alternates": {"tench": 1}}}},
    )
    assert run([concept_synonyms, string_matches], named, instance, "renamed").success
    listed = _with_targets(resources, instance, "named_after.yaml", {"renamed": {"classes": ["tench"]}})
    result = run(
        [retrieval_samples],
        listed,
        instance,
        "renamed",
        run_config=_samples_config(methods=["T2T-rank"]),
        raise_on_error=False,
    )
    assert not result.success and "rematerialise string_matches[renamed]" in _error(result)
