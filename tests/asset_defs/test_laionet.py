"""materialize() tests of the LAIONet assets (seed 001) on the demo."""

import json
import string
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from asset_defs.ingest import reference_embeddings
from asset_defs.laionet import (
    LAIONET_COLUMNS,
    ilsvrc_synsets,
    laionet,
    laionet_accuracy,
    laionet_intra_class_similarity,
    laionet_predictions,
    laionet_rows,
    lemma_matches,
    synset_similarity,
)
from tests.conftest import run

IMAGENET = "demo_imagenet_val"


def _error(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


TEXT_MODEL = "laionlab-tiny/random-seed1"


@pytest.fixture(scope="module")
def net(world, demo):
    """ilsvrc_synsets → lemma_matches/synset_similarity per part → laionet at the median
    similarity (the random tiny CLIP's cosines are not the paper's). The caption-to-synset
    text model (laionet_text_clip) is another model than the image model (clip)."""
    from resources import ClipEncoder
    from tests.conftest import DATASETS, instance_with_parts

    resources, _ = world
    resources = {
        **resources,
        "laionet_text_clip": ClipEncoder(model_name="laionlab-tiny", seed=1, batch_size=16, num_workers=0),
    }
    assert resources["laionet_text_clip"].model_id == TEXT_MODEL != resources["clip"].model_id
    instance = instance_with_parts(demo.parts)  # its own instance: the session's keeps its datasets
    instance.add_dynamic_partitions("dataset", [*DATASETS, IMAGENET])
    assert run([reference_embeddings], resources, instance, IMAGENET).success
    assert run([ilsvrc_synsets], resources, instance, None).success
    for part in demo.parts:
        assert run([lemma_matches, synset_similarity], resources, instance, part).success
    files = resources["files"]
    scored = pl.concat([files.read_parquet("synset_similarity", f"{p}.parquet") for p in demo.parts])
    threshold = float(np.median(scored["text_to_name_def_wnid_similarity"]))
    for part in demo.parts:
        assert run(
            [laionet_rows],
            resources,
            instance,
            part,
            run_config={"ops": {"laionet_rows": {"config": {"threshold": threshold}}}},
        ).success
    assert run([laionet], resources, instance, None).success
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
        got = dict(
            zip(
                *files.read_parquet("lemma_matches", f"{part}.parquet")
                .select("uid", "wnids")
                .to_dict(as_series=False)
                .values()
            )
        )
        want = {uid: w for uid, text in zip(meta["uid"], meta["TEXT"]) if (w := _seed_rule(text, lemma_to_wnid))}
        assert got == want and len(want) > 5


def test_synset_similarity_is_the_caption_query_cosine_of_single_synset_rows(net, demo):
    from laionlab.embed.encode import encode_texts

    resources, instance, _ = net
    files = resources["files"]
    loaded = resources["laionet_text_clip"].load()  # the text model, not the image model
    synsets = files.read_parquet("ilsvrc_synsets", "synsets.parquet")
    for part in demo.parts:
        matches = files.read_parquet("lemma_matches", f"{part}.parquet")
        scored = files.read_parquet("synset_similarity", f"{part}.parquet")
        assert set(scored["uid"]) == set(matches.filter(pl.col("wnids").list.len() == 1)["uid"])
        assert set(scored["text_model"]) == {TEXT_MODEL}
        meta = files.read_parquet("laion_metadata", f"{part}.parquet").select("uid", "TEXT")
        rows = scored.head(5).join(meta, on="uid").join(synsets.select("wnid", "name_def"), on="wnid")
        assert (rows["name_def_wnid"] == rows["name_def"]).all()
        want = np.einsum(
            "nd,nd->n", encode_texts(loaded, rows["TEXT"].to_list()), encode_texts(loaded, rows["name_def"].to_list())
        )
        np.testing.assert_allclose(rows["text_to_name_def_wnid_similarity"].to_numpy(), want, atol=1e-5)
    event = instance.get_latest_materialization_event(synset_similarity.key).asset_materialization
    assert event.metadata["text_model"].value == TEXT_MODEL and event.metadata["paper_text_model"].value is False


def test_laionet_keeps_exactly_confident_safe_single_synset_rows(net, demo):
    resources, instance, threshold = net
    files = resources["files"]
    scored = pl.concat([files.read_parquet("synset_similarity", f"{p}.parquet") for p in demo.parts])
    meta = pl.concat([files.read_parquet("laion_metadata", f"{p}.parquet") for p in demo.parts])
    want = scored.join(meta, on="uid").filter(
        (pl.col("text_to_name_def_wnid_similarity") > threshold) & (pl.col("NSFW") == "UNLIKELY")
    )
    out = files.read_parquet("laionet", "laionet.parquet")
    assert out.columns[: len(LAIONET_COLUMNS)] == LAIONET_COLUMNS
    assert set(out["uid"]) == set(want["uid"]) and out.height == want.height > 0
    md = {
        k: v.value
        for k, v in instance.get_latest_materialization_event(laionet.key).asset_materialization.metadata.items()
    }
    unsafe = scored.join(meta, on="uid").filter(pl.col("NSFW") != "UNLIKELY").height
    assert (md["candidates"], md["dropped_nsfw"], md["kept"]) == (
        sum(_matched_rows(files, demo.parts)),
        unsafe,
        out.height,
    ) and unsafe > 0
    assert md["text_models"] == TEXT_MODEL and md["threshold_calibration_warning"] is False  # not the paper's 0.82
    labels = json.loads(open(files.path("laionet", "wnid_to_rows.json")).read())
    assert sum(len(v) for v in labels.values()) == out.height
    for wnid, rows in labels.items():
        assert (out[rows]["wnid"] == wnid).all()


def _matched_rows(files, parts) -> list[int]:
    return [files.read_parquet("lemma_matches", f"{p}.parquet").height for p in parts]


def test_laionet_counts_multi_synset_captions(net, demo, tmp_path):
    """A part whose captions are known: three name two or three synsets; at the paper's 0.82
    the tiny model's similarities raise the calibration warning."""
    from tests.conftest import instance_with_parts, make_resources

    part = demo.parts[0]
    meta = net[0]["files"].read_parquet("laion_metadata", f"{part}.parquet")
    multi = ["a goldfish and a tench", "Tench, goldfish and great white shark", "my goldfish next to a tench!"]
    meta = meta.with_columns(pl.Series("TEXT", multi + meta["TEXT"].to_list()[3:]))
    resources = make_resources(tmp_path / "lab", str(Path(demo.root) / "laion_parts"))
    resources["files"].write_parquet(meta, "laion_metadata", f"{part}.parquet")
    instance = instance_with_parts([part])
    assert run([ilsvrc_synsets], resources, instance, None).success
    assert run([lemma_matches, synset_similarity], resources, instance, part).success
    table = resources["files"].read_parquet("ilsvrc_synsets", "lemma_to_wnid.parquet")
    lemma_to_wnid = dict(zip(table["lemma"], table["wnid"]))
    known = sum(len(_seed_rule(t, lemma_to_wnid)) > 1 for t in meta["TEXT"])
    assert known >= 3
    event = instance.get_latest_materialization_event(synset_similarity.key).asset_materialization
    assert event.metadata["dropped_multi_synset"].value == known
    assert run(
        [laionet_rows], resources, instance, part, run_config={"ops": {"laionet_rows": {"config": {"threshold": 0.82}}}}
    ).success
    result = run([laionet], resources, instance, None)
    assert result.success
    md = {
        k: v.value
        for k, v in instance.get_latest_materialization_event(laionet.key).asset_materialization.metadata.items()
    }
    assert md["dropped_multi_synset"] == known and md["candidates"] == _matched_rows(resources["files"], [part])[0]
    assert md["threshold_calibration_warning"] is True and md["paper_text_model"] is False
    (check,) = result.get_asset_check_evaluations()  # the warning is a yellow check in the UI
    assert check.check_name == "threshold_calibrated" and not check.passed and check.severity.value == "WARN"
    assert md["kept"] == md["rows"] == resources["files"].read_parquet("laionet", "laionet.parquet").height


def test_laionet_text_clip_defaults_to_the_clip_resource(monkeypatch):
    from definitions import build_resources

    for var in ("LAIONLAB_LAIONET_TEXT_MODEL", "LAIONLAB_LAIONET_TEXT_PRETRAINED", "LAIONLAB_LAIONET_TEXT_CHECKPOINT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LAIONLAB_CLIP_MODEL", "ViT-L-14")
    monkeypatch.setenv("LAIONLAB_CLIP_PRETRAINED", "laion2b_s32b_b82k")
    text = build_resources()["laionet_text_clip"]
    assert (text.model_name, text.pretrained) == ("ViT-L-14", "laion2b_s32b_b82k")
    monkeypatch.setenv("LAIONLAB_LAIONET_TEXT_MODEL", "ViT-B-32")
    monkeypatch.setenv("LAIONLAB_LAIONET_TEXT_PRETRAINED", "openai")
    resources = build_resources()
    assert (
        resources["laionet_text_clip"].model_id == "ViT-B-32/openai"
        and resources["clip"].model_id == "ViT-L-14/laion2b_s32b_b82k"
    )


def test_intra_class_similarity_matches_brute_force(net):
    from asset_defs.readers import labelled_reference, laion_vectors_for

    resources, instance, _ = net
    config = {"reference_dataset": IMAGENET, "n_per_class": 1000, "min_pairs": 2}
    assert run(
        [laionet_intra_class_similarity],
        resources,
        instance,
        None,
        run_config={"ops": {"laionet_intra_class_similarity": {"config": config}}},
    ).success
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

    # seed_compat: the first 3 images of each class (in uid order), pairs only from them
    config = {"reference_dataset": IMAGENET, "n_per_class": 3, "min_pairs": 2, "sampling": "seed_compat"}
    assert run(
        [laionet_intra_class_similarity],
        resources,
        instance,
        None,
        run_config={"ops": {"laionet_intra_class_similarity": {"config": config}}},
    ).success
    first3 = resources["files"].read_parquet("laionet_intra_class_similarity", "per_class.parquet")
    assert set(first3["n_pairs_a"]) == {3}
    big = (
        first3.join(out.group_by("wnid").len(), left_on="label", right_on="wnid")
        .filter(pl.col("len") > 3)
        .row(0, named=True)
    )
    uids, X = laion_vectors_for(resources["lance"], out.filter(pl.col("wnid") == big["label"])["uid"].to_list())
    np.testing.assert_allclose(big["mean_a"], brute(X[:3]), rtol=1e-5)
    config["sampling"] = "last"  # refused at launch, naming the field and the choices (a Literal field)
    from dagster import DagsterInvalidConfigError

    with pytest.raises(
        DagsterInvalidConfigError,
        match=r"sampling not in enum type Literal\['random', 'seed_compat', 'first'\] got last",
    ):
        run(
            [laionet_intra_class_similarity],
            resources,
            instance,
            None,
            run_config={"ops": {"laionet_intra_class_similarity": {"config": config}}},
        )


def _predict_parts(resources, instance, config) -> None:
    for part in sorted(instance.get_dynamic_partitions("laion_part")):
        assert run(
            [laionet_predictions],
            resources,
            instance,
            part,
            run_config={"ops": {"laionet_predictions": {"config": config}}},
        ).success


def test_accuracy_weightings_follow_the_per_class_recalls(net):
    resources, instance, _ = net
    _predict_parts(
        resources, instance, {"prompts": "simple", "timm_models": [{"name": "test_convnext"}], "top_k": [1, 3]}
    )
    config = {"reference_dataset": IMAGENET}
    assert run(
        [laionet_accuracy], resources, instance, None, run_config={"ops": {"laionet_accuracy": {"config": config}}}
    ).success
    files = resources["files"]
    summary = files.read_parquet("laionet_accuracy", "summary.parquet")
    per_class = files.read_parquet("laionet_accuracy", "per_class.parquet")
    out = files.read_parquet("laionet", "laionet.parquet")
    counts = dict(out.group_by("wnid").len().iter_rows())
    assert set(summary["model"]) == {"clip-zero-shot", "test_convnext"} and set(summary["dataset"]) == {
        "LAIONet",
        IMAGENET,
    }
    for r in summary.iter_rows(named=True):
        pc = per_class.filter(
            (pl.col("model") == r["model"]) & (pl.col("dataset") == r["dataset"]) & (pl.col("k") == r["k"])
        ).drop_nulls("recall")
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
    # the LAIONet images were classified part by part: every LAIONet row with a usable image once
    predicted = pl.concat(
        [
            files.read_parquet("laionet_predictions", f"{p}.parquet")
            for p in sorted(instance.get_dynamic_partitions("laion_part"))
        ]
    )
    per_model = predicted.group_by("model").agg(pl.col("uid").n_unique().alias("n"), pl.len())
    assert (per_model["n"] == per_model["len"]).all() and set(predicted["uid"]) <= set(out["uid"])
    laion = summary.filter((pl.col("dataset") == "LAIONet") & (pl.col("k") == 1) & (pl.col("weighting") == "equal"))
    assert dict(zip(laion["model"], laion["images"])) == dict(zip(per_model["model"], per_model["n"]))
    # a second summary reuses the reference predictions, and gives the same table
    again = run(
        [laionet_accuracy], resources, instance, None, run_config={"ops": {"laionet_accuracy": {"config": config}}}
    )
    assert files.read_parquet("laionet_accuracy", "summary.parquet").equals(summary)
    logs = [e.user_message for e in instance.all_logs(again.run_id)]
    assert (
        any("predictions reused" in m for m in logs)
        and len(files.glob("laionet_accuracy", "reference", pattern="*.parquet")) == 1
    )


def test_accuracy_refuses_predictions_older_than_the_rows_or_with_other_models(net):
    resources, instance, _ = net
    parts = sorted(instance.get_dynamic_partitions("laion_part"))
    _predict_parts(resources, instance, {"prompts": "simple", "top_k": [1]})
    run(
        [laionet_predictions],
        resources,
        instance,
        parts[0],
        run_config={"ops": {"laionet_predictions": {"config": {"prompts": "openai", "top_k": [1]}}}},
    )
    config = {"ops": {"laionet_accuracy": {"config": {"reference_dataset": IMAGENET}}}}
    result = run([laionet_accuracy], resources, instance, None, run_config=config, raise_on_error=False)
    assert not result.success and "different parameters" in _error(result) and "prompts='openai'" in _error(result)
    run(
        [laionet_predictions],
        resources,
        instance,
        parts[0],
        run_config={"ops": {"laionet_predictions": {"config": {"prompts": "simple", "top_k": [1]}}}},
    )
    assert run([laionet_accuracy], resources, instance, None, run_config=config).success
    # laionet_rows of a part re-made (same parameters) after its predictions: refused, naming the part
    params = (
        instance.fetch_materializations(laionet_rows.key, limit=1)
        .records[0]
        .asset_materialization.metadata["params"]
        .value
    )
    assert run(
        [laionet_rows], resources, instance, parts[1], run_config={"ops": {"laionet_rows": {"config": params}}}
    ).success
    result = run([laionet_accuracy], resources, instance, None, run_config=config, raise_on_error=False)
    assert not result.success and f"older than laionet_rows, for {parts[1]}" in _error(result)
    run(
        [laionet_predictions],
        resources,
        instance,
        parts[1],
        run_config={"ops": {"laionet_predictions": {"config": {"prompts": "simple", "top_k": [1]}}}},
    )
    assert run([laionet_accuracy], resources, instance, None, run_config=config).success


def test_bad_inputs_name_the_problem(net, tmp_path):
    resources, instance, _ = net
    part = instance.get_dynamic_partitions("laion_part")[0]
    result = run(
        [laionet_rows],
        resources,
        instance,
        part,
        run_config={"ops": {"laionet_rows": {"config": {"threshold": 1.5}}}},
        raise_on_error=False,
    )
    assert not result.success and "[-1, 1]" in _error(result)
    config = {"reference_dataset": "demo_narrow"}
    result = run(
        [laionet_accuracy],
        resources,
        instance,
        None,
        run_config={"ops": {"laionet_accuracy": {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success and "has no labels" in _error(result)
    bad = tmp_path / "synsets.tsv"
    bad.write_text("wnid\tlemmas\tdefinition\nn01440764\ttench, Tinca tinca\tfreshwater fish\nn01443537\tgoldfish\t\n")
    config = {"synsets_file": str(bad)}
    result = run(
        [ilsvrc_synsets],
        resources,
        instance,
        None,
        run_config={"ops": {"ilsvrc_synsets": {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success and "n01443537" in _error(result) and "no definition" in _error(result)
    from asset_defs.laionet import caption_index

    result = run(
        [caption_index],
        resources,
        instance,
        None,
        run_config={"ops": {"caption_index": {"config": {"max_memory": "lots"}}}},
        raise_on_error=False,
    )
    assert not result.success and "max_memory: cannot read 'lots'" in _error(result)


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
    result = run(
        [nearest_caption_imagenet],
        resources,
        instance,
        None,
        run_config={"ops": {"nearest_caption_imagenet": {"config": config}}},
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()  # an exact index: every caption has a neighbour
    assert check.check_name == "every_caption_has_a_neighbour" and check.passed
    found = resources["files"].read_parquet("nearest_caption_imagenet", "recreated.parquet")
    items = list_items(resources["catalog"].get(name))
    Q = encode_texts(resources["clip"].load(), items.captions)
    sims = Q @ T.T
    col = {u: j for j, u in enumerate(uids)}
    got = sims[np.arange(len(Q)), [col[u] for u in found["uid"]]]  # ties (repeated captions) may pick any row
    np.testing.assert_allclose(got, sims.max(axis=1), rtol=1e-5)
    np.testing.assert_allclose(found["caption_similarity"].to_numpy(), sims.max(axis=1), rtol=1e-5)
    assert found["wnid"].to_list() == items.labels
    event = instance.get_latest_materialization_event(nearest_caption_imagenet.key).asset_materialization
    assert event.metadata["no_neighbour"].value == 0 and event.metadata["captions"].value == len(items.captions)


def test_a_caption_without_neighbour_is_a_warning_check():
    from dagster import AssetCheckSeverity

    from asset_defs.laionet import _neighbour_check

    check = _neighbour_check(3, 10, 4)
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["no_neighbour"].value == 3 and check.metadata["advice"].value == "raise nprobe"
    assert _neighbour_check(0, 10, None).passed
