"""materialize() tests of the LAIONet assets (seed 001) on the demo."""

import json
import string

import numpy as np
import polars as pl
import pytest

from asset_defs.laionet import (
    LAIONET_COLUMNS,
    ilsvrc_synsets,
    laionet,
    laionet_accuracy,
    laionet_intra_class_similarity,
    lemma_matches,
    synset_similarity,
)
from asset_defs.visual_world import reference_embeddings
from tests.conftest import run

IMAGENET = "demo_imagenet_val"


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


@pytest.fixture(scope="module")
def net(world, demo):
    """ilsvrc_synsets → lemma_matches/synset_similarity per part → laionet at the median
    similarity (the random tiny CLIP's cosines are not the paper's)."""
    from tests.conftest import DATASETS, instance_with_parts

    resources, _ = world
    instance = instance_with_parts(demo.parts)  # its own instance: the session's keeps its datasets
    instance.add_dynamic_partitions("dataset", [*DATASETS, IMAGENET])
    assert run([reference_embeddings], resources, instance, IMAGENET).success
    assert run([ilsvrc_synsets], resources, instance, None).success
    for part in demo.parts:
        assert run([lemma_matches, synset_similarity], resources, instance, part).success
    files = resources["files"]
    scored = pl.concat([files.read_parquet("synset_similarity", f"{p}.parquet") for p in demo.parts])
    threshold = float(np.median(scored["text_to_name_def_wnid_similarity"]))
    assert run([laionet], resources, instance, None, run_config={"ops": {"laionet": {"config": {"threshold": threshold}}}}).success
    return resources, instance, threshold


def test_ilsvrc_synsets_reproduce_the_seed_dictionary(net):
    resources, instance, _ = net
    files = resources["files"]
    lemmas = files.read_parquet("ilsvrc_synsets", "lemma_to_wnid.parquet")
    assert (lemmas.height, lemmas["wnid"].n_unique()) == (1824, 994)
    event = instance.get_latest_materialization_event(ilsvrc_synsets.key).asset_materialization
    table = event.metadata["dictionaries"].value
    assert "| 1825 | 995 |" in table.replace(" ", " ")  # the seed's 999-synset file: its published counts
    assert "crane→n02012849" in event.metadata["lemmas only in the seed-like dictionary"].value
    synsets = files.read_parquet("ilsvrc_synsets", "synsets.parquet")
    cougar = synsets.filter(pl.col("wnid") == "n02125311")["name_def"].item()
    assert cougar == "cougar which is large American feline resembling a lion"


def _seed_rule(caption: str | None, lemma_to_wnid: dict[str, str]) -> list[str]:
    """The seed's label_laion.py loop, for reference."""
    text = " " + (caption or "").translate(str.maketrans(string.punctuation, " " * 32)) + " "
    return sorted({w for lemma, w in lemma_to_wnid.items() if " " + lemma + " " in text})


def test_lemma_matches_equal_the_seed_loop(net, demo):
    resources, _, _ = net
    files = resources["files"]
    table = files.read_parquet("ilsvrc_synsets", "lemma_to_wnid.parquet")
    lemma_to_wnid = dict(zip(table["lemma"], table["wnid"]))
    for part in demo.parts:
        meta = files.read_parquet("laion_metadata", f"{part}.parquet")
        got = dict(zip(*files.read_parquet("lemma_matches", f"{part}.parquet").select("uid", "wnids").to_dict(as_series=False).values()))
        want = {uid: w for uid, text in zip(meta["uid"], meta["TEXT"]) if (w := _seed_rule(text, lemma_to_wnid))}
        assert got == want and len(want) > 5


def test_synset_similarity_is_the_caption_query_cosine_of_single_synset_rows(net, demo):
    from laionlab.embed.encode import encode_texts

    resources, _, _ = net
    files = resources["files"]
    loaded = resources["clip"].load()
    synsets = files.read_parquet("ilsvrc_synsets", "synsets.parquet")
    for part in demo.parts:
        matches = files.read_parquet("lemma_matches", f"{part}.parquet")
        scored = files.read_parquet("synset_similarity", f"{part}.parquet")
        assert set(scored["uid"]) == set(matches.filter(pl.col("wnids").list.len() == 1)["uid"])
        meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
        rows = scored.head(5).join(meta, on="uid").join(synsets.select("wnid", "name_def"), on="wnid")
        assert (rows["name_def_wnid"] == rows["name_def"]).all()
        want = np.einsum("nd,nd->n", encode_texts(loaded, rows["TEXT"].to_list()), encode_texts(loaded, rows["name_def"].to_list()))
        np.testing.assert_allclose(rows["text_to_name_def_wnid_similarity"].to_numpy(), want, atol=1e-5)


def test_laionet_keeps_exactly_confident_safe_single_synset_rows(net, demo):
    resources, _, threshold = net
    files = resources["files"]
    scored = pl.concat([files.read_parquet("synset_similarity", f"{p}.parquet") for p in demo.parts])
    meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet") for p in demo.parts])
    want = scored.join(meta, on="uid").filter((pl.col("text_to_name_def_wnid_similarity") > threshold) & (pl.col("NSFW") == "UNLIKELY"))
    out = files.read_parquet("laionet", "laionet.parquet")
    assert out.columns[: len(LAIONET_COLUMNS)] == LAIONET_COLUMNS
    assert set(out["uid"]) == set(want["uid"]) and out.height == want.height > 0
    labels = json.loads(open(files.path("laionet", "wnid_to_rows.json")).read())
    assert sum(len(v) for v in labels.values()) == out.height
    for wnid, rows in labels.items():
        assert (out[rows]["wnid"] == wnid).all()


def test_intra_class_similarity_matches_brute_force(net):
    from asset_defs.laionet import labelled_reference, laion_vectors_for

    resources, instance, _ = net
    config = {"reference_dataset": IMAGENET, "n_per_class": 1000, "min_pairs": 2}
    assert run([laionet_intra_class_similarity], resources, instance, None, run_config={"ops": {"laionet_intra_class_similarity": {"config": config}}}).success
    per_class = resources["files"].read_parquet("laionet_intra_class_similarity", "per_class.parquet")
    assert per_class.height > 0
    out = resources["files"].read_parquet("laionet", "laionet.parquet")
    ref = labelled_reference(resources["lance"], IMAGENET)
    row = per_class.row(0, named=True)
    uids, X = laion_vectors_for(resources["lance"], out.filter(pl.col("wnid") == row["label"])["uid"].to_list())
    R = np.asarray(ref.filter(pl.col("label") == row["label"])["emb"].to_list(), np.float32)
    brute = lambda E: (E @ E.T)[np.tril_indices(len(E), -1)].mean()  # noqa: E731
    np.testing.assert_allclose([row["mean_a"], row["mean_b"]], [brute(X), brute(R)], rtol=1e-5)
    np.testing.assert_allclose(row["diff"], brute(X) - brute(R), rtol=1e-4, atol=1e-6)


def test_accuracy_weightings_follow_the_per_class_recalls(net):
    resources, instance, _ = net
    config = {"reference_dataset": IMAGENET, "prompts": "simple", "timm_models": [{"name": "test_convnext"}], "top_k": [1, 3]}
    assert run([laionet_accuracy], resources, instance, None, run_config={"ops": {"laionet_accuracy": {"config": config}}}).success
    files = resources["files"]
    summary = files.read_parquet("laionet_accuracy", "summary.parquet")
    per_class = files.read_parquet("laionet_accuracy", "per_class.parquet")
    out = files.read_parquet("laionet", "laionet.parquet")
    counts = dict(out.group_by("wnid").len().iter_rows())
    assert set(summary["model"]) == {"clip-zero-shot", "test_convnext"} and set(summary["dataset"]) == {"LAIONet", IMAGENET}
    for r in summary.iter_rows(named=True):
        pc = per_class.filter((pl.col("model") == r["model"]) & (pl.col("dataset") == r["dataset"]) & (pl.col("k") == r["k"])).drop_nulls("recall")
        if r["weighting"] == "equal":
            want = pc["recall"].mean()
        else:
            w = np.array([counts[c] for c in pc["class"]], float)
            want = float((pc["recall"].to_numpy() * w).sum() / w.sum())
        assert r["accuracy"] == pytest.approx(want)
        assert pc["n"].sum() == r["images"]
    top1 = summary.filter(pl.col("k") == 1).sort("model", "dataset", "weighting")["accuracy"].to_numpy()
    top3 = summary.filter(pl.col("k") == 3).sort("model", "dataset", "weighting")["accuracy"].to_numpy()
    assert (top3 >= top1 - 1e-12).all()


def test_bad_inputs_name_the_problem(net, tmp_path):
    resources, instance, _ = net
    result = run([laionet], resources, instance, None, run_config={"ops": {"laionet": {"config": {"threshold": 1.5}}}}, raise_on_error=False)
    assert not result.success and "[-1, 1]" in _error(result)
    config = {"reference_dataset": "demo_narrow"}
    result = run([laionet_accuracy], resources, instance, None, run_config={"ops": {"laionet_accuracy": {"config": config}}}, raise_on_error=False)
    assert not result.success and "has no labels" in _error(result)
    bad = tmp_path / "synsets.tsv"
    bad.write_text("wnid\tlemmas\tdefinition\nn01440764\ttench, Tinca tinca\tfreshwater fish\nn01443537\tgoldfish\t\n")
    config = {"synsets_file": str(bad)}
    result = run([ilsvrc_synsets], resources, instance, None, run_config={"ops": {"ilsvrc_synsets": {"config": config}}}, raise_on_error=False)
    assert not result.success and "n01443537" in _error(result) and "no definition" in _error(result)


def test_caption_index_appends_parts_and_nearest_captions_are_exact(net, demo):
    from asset_defs.ingest import EMBEDDINGS_TABLE
    from asset_defs.laionet import caption_index, nearest_caption_imagenet
    from laionlab.embed.encode import encode_texts
    from laionlab.io.lance import read_vectors
    from laionlab.io.reference import list_items
    from tests.conftest import instance_with_parts

    resources, instance, _ = net
    first = instance_with_parts(demo.parts[:2])
    assert run([caption_index], resources, first, None).success
    assert run([caption_index], resources, instance, None).success  # the third part is appended
    event = instance.get_latest_materialization_event(caption_index.key).asset_materialization
    assert event.metadata["parts_added"].value == demo.parts[2] and event.metadata["index"].value == "Flat"
    tbl = resources["lance"].tables().open(EMBEDDINGS_TABLE)
    uids, T = read_vectors(tbl.search().limit(None).select(["uid", "text_emb"]).to_batches(), column="text_emb")
    assert event.metadata["vectors"].value == len(uids)

    name = "demo_imagenet_captions"
    instance.add_dynamic_partitions("dataset", [name])
    assert run([reference_embeddings], resources, instance, name).success
    config = {"captions_dataset": name, "min_pairs": 2}
    assert run([nearest_caption_imagenet], resources, instance, None, run_config={"ops": {"nearest_caption_imagenet": {"config": config}}}).success
    found = resources["files"].read_parquet("nearest_caption_imagenet", "recreated.parquet")
    items = list_items(resources["catalog"].get(name))
    Q = encode_texts(resources["clip"].load(), items.captions)
    sims = Q @ T.T
    col = {u: j for j, u in enumerate(uids)}
    got = sims[np.arange(len(Q)), [col[u] for u in found["uid"]]]  # ties (repeated captions) may pick any row
    np.testing.assert_allclose(got, sims.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(found["caption_similarity"].to_numpy(), sims.max(axis=1), rtol=1e-5)
    assert found["wnid"].to_list() == items.labels


def test_caption_index_budget_parsing():
    from dagster import Failure

    from asset_defs.laionet import parse_bytes

    assert parse_bytes("16GB") == 16_000_000_000 and parse_bytes("40MB") == 40_000_000 and parse_bytes("1KiB") == 1024
    with pytest.raises(Failure, match="max_memory"):
        parse_bytes("lots")
