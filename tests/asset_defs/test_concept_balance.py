"""materialize() tests of MetaCLIP's per-concept cap (group concept_balance) on constructed
laion_metadata parts: the stored matches, counts and keep flags are the library's on the parts'
captions, the counts are the sum over parts, and stale or mixed inputs fail naming the problem."""

import numpy as np
import polars as pl
import pytest

from asset_defs.concept_balance import concept_balanced, concept_counts, concept_matches
from laionlab.curation import keep_rows, match_concepts, sum_counts
from resources import FileStore
from tests.conftest import instance_with_parts, run

PARTS = ["part-00000", "part-00001", "part-00002"]
CONCEPTS = ["dog", "cat", "hot dog", "red fox", "tulip"]
TEMPLATES = ["a dog", "my cat, asleep", "hot dog stand", "a dog and a cat", "red fox. snow", "a lamp", "Dog"]


def _captions(part: int) -> list[str | None]:
    rng = np.random.default_rng(part)
    return [TEMPLATES[i] for i in rng.integers(0, len(TEMPLATES), 60)] + [None, ""]


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


@pytest.fixture
def pool(tmp_path):
    files = FileStore(root=str(tmp_path / "lab"))
    for i, part in enumerate(PARTS):
        captions = _captions(i)
        uids = [f"{part}:{r:09d}" for r in range(len(captions))]
        files.write_parquet(pl.DataFrame({"uid": uids, "TEXT": captions}), "laion_metadata", f"{part}.parquet")
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("\n".join(CONCEPTS) + "\n")
    return {"files": files}, instance_with_parts(PARTS), str(concepts)


def _config(concepts_file: str | None, t: int = 10, seed: int = 0, **match) -> dict:
    """Run config per asset: ``config["concept_matches"]`` and ``config["concept_balanced"]``."""
    if concepts_file:
        match = {"concept_source": "file", "concepts_file": concepts_file, **match}
    return {
        "concept_matches": {"ops": {"concept_matches": {"config": match}}},
        "concept_balanced": {"ops": {"concept_balanced": {"config": {"t": t, "seed": seed}}}},
    }


def _materialise(resources, instance, config, parts=PARTS) -> dict:
    results = {}
    for part in parts:
        assert run([concept_matches], resources, instance, part, run_config=config["concept_matches"]).success
    assert run([concept_counts], resources, instance, None).success
    for part in parts:
        results[part] = run([concept_balanced], resources, instance, part, run_config=config["concept_balanced"])
        assert results[part].success
    return results


def test_matches_counts_and_flags_are_the_librarys(pool):
    resources, instance, concepts_file = pool
    results = _materialise(resources, instance, _config(concepts_file, t=10, seed=4))
    files = resources["files"]
    per_part = []
    for i, part in enumerate(PARTS):
        stored = files.read_parquet("concept_matches", f"{part}.parquet")
        want = match_concepts(_captions(i), CONCEPTS)["concept_ids"]
        assert stored["concept_ids"].to_list() == want.to_list()
        assert stored["uid"].to_list() == [f"{part}:{r:09d}" for r in range(len(want))]
        per_part.append(files.read_parquet("concept_matches", f"{part}.counts.parquet")["count"].to_numpy())
    counts = files.read_parquet("concept_counts", "counts.parquet")
    assert counts["concept"].to_list() == CONCEPTS
    assert counts["count"].to_list() == sum_counts(per_part).tolist()
    assert counts["count"][4] == 0 and counts["count"][0] > 10  # tulip never matched, dog capped
    for part in PARTS:
        flags = files.read_parquet("concept_balanced", f"{part}.parquet")
        matches = files.read_parquet("concept_matches", f"{part}.parquet")
        want = keep_rows(matches, counts["count"].to_numpy(), CONCEPTS, t=10, seed=4)
        assert flags.equals(want)
        assert not flags.filter(pl.col("n_concepts") == 0)["keep"].any()  # unmatched rows are dropped
        meta = results[part].asset_materializations_for_node("concept_balanced")[0].metadata
        assert meta["kept_rows"].value == int(flags["keep"].sum())
        assert meta["kept_share"].value == round(flags["keep"].sum() / flags.height, 4)
        assert "| dog |" in meta["kept_vs_matched"].value
    meta = instance.fetch_materializations(concept_counts.key, limit=1).records[0].asset_materialization.metadata
    assert meta["parts_seen"].value == ", ".join(PARTS) and meta["concepts_matched"].value == 4
    assert "| dog |" in meta["top_concepts"].value


def test_ilsvrc_lemmas_are_the_default_concepts(pool):
    resources, instance, _ = pool
    files = resources["files"]
    part = PARTS[0]
    result = run([concept_matches], resources, instance, part, raise_on_error=False)
    assert not result.success and "ilsvrc_synsets has not been materialised" in _error(result)
    lemmas = pl.DataFrame({"lemma": ["cat", "red fox", "Dog"], "wnid": ["n1", "n2", "n3"]})
    files.write_parquet(lemmas, "ilsvrc_synsets", "lemma_to_wnid.parquet")  # as ilsvrc_synsets writes it
    assert run([concept_matches], resources, instance, part).success
    stored = files.read_parquet("concept_matches", f"{part}.parquet")["concept_ids"].to_list()
    assert stored == match_concepts(_captions(0), ["cat", "red fox", "Dog"])["concept_ids"].to_list()


def test_stale_or_mixed_inputs_fail_naming_the_problem(pool, tmp_path):
    resources, instance, concepts_file = pool
    config = _config(concepts_file)
    for part in PARTS[:2]:
        assert run([concept_matches], resources, instance, part, run_config=config["concept_matches"]).success
    result = run([concept_counts], resources, instance, None, raise_on_error=False)
    assert not result.success and "missing for parts ['part-00002']" in _error(result)
    result = run(
        [concept_balanced], resources, instance, PARTS[0], run_config=config["concept_balanced"], raise_on_error=False
    )
    assert not result.success and "concept_counts has not been materialised" in _error(result)

    # the same file, edited between parts: the parameters agree, the concept lists do not
    (tmp_path / "concepts.txt").write_text("dog\ncat\n")
    assert run([concept_matches], resources, instance, PARTS[2], run_config=config["concept_matches"]).success
    result = run([concept_counts], resources, instance, None, raise_on_error=False)
    assert not result.success and "different concept lists" in _error(result)

    (tmp_path / "concepts.txt").write_text("\n".join(CONCEPTS) + "\n")
    assert run([concept_matches], resources, instance, PARTS[2], run_config=config["concept_matches"]).success
    assert run([concept_counts], resources, instance, None).success
    instance.add_dynamic_partitions("laion_part", ["part-00003"])  # a part added after the counts
    files = resources["files"]
    files.write_parquet(
        pl.DataFrame({"uid": ["part-00003:000000000"], "TEXT": ["a dog"]}), "laion_metadata", "part-00003.parquet"
    )
    assert run([concept_matches], resources, instance, "part-00003", run_config=config["concept_matches"]).success
    result = run(
        [concept_balanced],
        resources,
        instance,
        "part-00003",
        run_config=config["concept_balanced"],
        raise_on_error=False,
    )
    assert not result.success and "does not include concept_matches[part-00003]" in _error(result)

    other = _config(concepts_file, rule="swat")["concept_matches"]
    assert run([concept_matches], resources, instance, PARTS[0], run_config=other).success
    result = run([concept_counts], resources, instance, None, raise_on_error=False)
    assert not result.success and "different parameters" in _error(result) and "rule" in _error(result)
