"""laionlab.query: the image index rule, text/image/vector queries on a generated LanceDB
table (planted near-duplicates, captions embedded by laionlab-tiny), recall of the index
against exact search, the errors, and the command line on a demo-like data root."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.io.lance import LanceTables, embeddings_batch, embeddings_schema
from laionlab.query import (
    EXACT_MAX_ROWS,
    build_image_index,
    clip_for,
    evaluate_index,
    index_plan,
    query,
)

ROOT = Path(__file__).resolve().parents[2]
D = 32
CAPTIONS = [
    "a red bird on a branch",
    "a blue car in the city",
    "a bowl of green apples",
    "a dog running on the beach",
    "a mountain lake at sunset",
    "an old wooden chair",
]


def unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def write(root, parts: dict[str, np.ndarray], model: str = "m/x", text: dict | None = None) -> LanceTables:
    tables = LanceTables(str(root))
    for part, X in parts.items():
        uids = [f"{part}:{i:09d}" for i in range(len(X))]
        T = X if text is None else text[part]
        batch = embeddings_batch(uids, part, model, X, T)
        tables.replace_part("laion_embeddings", part, [batch], embeddings_schema(X.shape[1]))
    return tables


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Two parts of clustered unit vectors; part-b rows 100..104 are near-duplicates of the
    query (cosine > 0.99), nothing else is close."""
    rng = np.random.default_rng(0)
    centres = unit(rng.normal(size=(40, D)))
    parts = {}
    for j, part in enumerate(("part-a", "part-b")):
        c = rng.integers(0, len(centres), 1500)
        parts[part] = unit(centres[c] + 0.35 * rng.normal(size=(1500, D)) / np.sqrt(D))
    q = unit(rng.normal(size=D))
    parts["part-b"][100:105] = unit(q + 0.01 * rng.normal(size=(5, D)))
    tables = write(tmp_path_factory.mktemp("planted"), parts)
    return tables, q, parts


@pytest.fixture(scope="module")
def tiny():
    from laionlab.embed.model import ClipSpec, load_clip

    return load_clip(ClipSpec("laionlab-tiny", device="cpu"))


@pytest.fixture(scope="module")
def captioned(tmp_path_factory, tiny):
    """A demo-like data root: laion_embeddings written by laionlab-tiny (image vectors = the
    caption vectors, so a caption finds its own row first) and laion_metadata parquet files."""
    from laionlab.embed.encode import encode_texts

    root = tmp_path_factory.mktemp("lab")
    texts = {"part-00000": CAPTIONS[:3], "part-00001": CAPTIONS[3:]}
    emb = {part: encode_texts(tiny, t) for part, t in texts.items()}
    write(root / "lance", emb, model=tiny.model_id, text=emb)
    (root / "laion_metadata").mkdir()
    for part, t in texts.items():
        pl.DataFrame(
            {
                "uid": [f"{part}:{i:09d}" for i in range(len(t))],
                "TEXT": t,
                "URL": [f"https://example.com/{part}/{i}.jpg" for i in range(len(t))],
            }
        ).write_parquet(root / "laion_metadata" / f"{part}.parquet")
    return root


def test_the_index_rule_follows_the_row_count():
    assert index_plan(EXACT_MAX_ROWS - 1, 512).kind == "none"
    plan = index_plan(1_000_000, 512)
    assert (plan.kind, plan.num_partitions, plan.num_sub_vectors, plan.num_bits) == ("IVF_PQ", 1000, 32, 8)
    assert index_plan(250_000, 768).num_sub_vectors == 48
    assert index_plan(250_000, 520).num_sub_vectors == 65  # 16 does not divide 520: d / 8
    hnsw = index_plan(1_000_000, 512, kind="IVF_HNSW_SQ")
    assert hnsw.kind == "IVF_HNSW_SQ" and hnsw.num_partitions == 1000 and hnsw.num_sub_vectors is None
    assert index_plan(3000, 64, kind="IVF_PQ").num_partitions == 55
    with pytest.raises(ValueError, match="kind: expected"):
        index_plan(10, 8, kind="FLAT")
    with pytest.raises(ValueError, match="at least 256 rows"):
        index_plan(100, 8, kind="IVF_PQ")


def test_a_vector_query_finds_the_planted_near_duplicates(planted):
    tables, q, parts = planted
    found = query(tables, vector=q, k=5)
    assert found.columns == ["rank", "uid", "part", "row", "score", "model"]
    assert found["rank"].to_list() == [1, 2, 3, 4, 5]
    assert sorted(found["uid"].to_list()) == [f"part-b:{i:09d}" for i in range(100, 105)]
    assert sorted(found["row"].to_list()) == list(range(100, 105))
    exact = parts["part-b"][found["row"].to_numpy()] @ q
    np.testing.assert_allclose(found["score"].to_numpy(), exact, atol=1e-5)
    assert (found["score"].to_numpy() > 0.99).all() and found["score"].is_sorted(descending=True)
    assert set(found["model"]) == {"m/x"}


def test_no_index_below_the_threshold_is_exact(planted):
    tables, _, _ = planted
    report = build_image_index(tables)
    assert report.plan.kind == "none" and report.plan.rows == 3000
    quality = evaluate_index(tables, sample=30, k=10)
    assert quality["kind"] == "none" and quality["recall"] == 1.0 and quality["queries"] == 30
    assert len(quality["latency_ms"]) == 30 and quality["median_latency_ms"] > 0


def test_an_ivf_pq_index_keeps_recall_and_the_planted_rows(tmp_path, planted):
    _, q, parts = planted
    tables = write(tmp_path, parts)
    report = build_image_index(tables, kind="IVF_PQ", accelerator=None)
    assert report.plan.kind == "IVF_PQ" and report.indices
    assert report.plan.num_partitions == 55 and report.plan.num_sub_vectors == 2
    quality = evaluate_index(tables, sample=50, k=10, nprobes=20, refine_factor=10)
    assert quality["kind"] == "IvfPq" and quality["recall"] >= 0.9, quality["recall"]
    found = query(tables, vector=q, k=5, nprobes=20, refine_factor=10)
    assert sorted(found["row"].to_list()) == list(range(100, 105))
    # back under the threshold: the index is dropped, queries are exact again
    again = build_image_index(tables, kind="auto")
    assert again.plan.kind == "none" and again.dropped
    assert evaluate_index(tables, sample=20, k=10)["recall"] == 1.0


def test_new_rows_are_folded_into_the_index_until_the_table_grows_by_a_quarter(tmp_path, planted):
    """With retrain_growth 0.25, a rebuild after a small new part updates the index in place
    (no retraining: every row indexed, the new part's planted rows found); a large one, or the
    default retrain_growth 0, retrains."""
    _, q, parts = planted
    tables = write(tmp_path, {"part-a": parts["part-a"]})  # 1,500 rows
    first = build_image_index(tables, kind="IVF_PQ", accelerator=None)
    assert not first.updated
    rng = np.random.default_rng(1)
    small = parts["part-b"][:300]  # +20%: holds the planted rows 100..104
    write(tmp_path, {"part-b": small})
    tbl = tables.open_to_write("laion_embeddings")
    assert tbl.index_stats(first.indices[0]).num_unindexed_rows == 300
    again = build_image_index(tables, kind="IVF_PQ", accelerator=None, retrain_growth=0.25)
    assert again.updated and again.rows_added == 300
    stats = tables.open("laion_embeddings").index_stats(first.indices[0])
    assert stats.num_indexed_rows == 1800 and stats.num_unindexed_rows == 0
    found = query(tables, vector=q, k=5, nprobes=20, refine_factor=10)
    assert sorted(found["row"].to_list()) == list(range(100, 105))
    write(tmp_path, {"part-c": unit(rng.normal(size=(600, D)))})  # +33% of 1,800: retrained
    third = build_image_index(tables, kind="IVF_PQ", accelerator=None, retrain_growth=0.25)
    assert not third.updated and third.plan.num_partitions == round(2400**0.5)
    assert not build_image_index(tables, kind="IVF_PQ", accelerator=None).updated  # the default retrains
    with pytest.raises(ValueError, match="retrain_growth"):
        build_image_index(tables, kind="IVF_PQ", retrain_growth=-1)


def test_a_text_query_uses_the_tables_model_and_returns_captions(captioned, tiny):
    meta = lambda part: str(captioned / "laion_metadata" / f"{part}.parquet")  # noqa: E731
    found = query(str(captioned / "lance"), text=CAPTIONS[4], k=3, clip=tiny, metadata=meta)
    assert found["uid"][0] == "part-00001:000000001" and found["score"][0] == pytest.approx(1.0, abs=1e-5)
    assert found["caption"][0] == CAPTIONS[4] and found["url"][0] == "https://example.com/part-00001/1.jpg"
    assert found["model"][0] == tiny.model_id
    # a part without metadata keeps its rows, with no caption
    found = query(str(captioned / "lance"), text=CAPTIONS[0], k=6, clip=tiny, metadata=lambda part: None)
    assert found.height == 6 and found["caption"].null_count() == 6


def test_an_image_query_embeds_a_path_or_a_pil_image(tmp_path, tiny):
    import torch

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(8)]
    with torch.inference_mode():
        pixels = torch.stack([tiny.preprocess(im) for im in images])
        emb = unit(tiny.model.encode_image(pixels).float().numpy())
    tables = write(tmp_path / "lance", {"part-00000": emb}, model=tiny.model_id)
    assert query(tables, image=images[3], k=1, clip=tiny)["row"].to_list() == [3]
    images[5].save(tmp_path / "five.png")
    found = query(tables, image=tmp_path / "five.png", k=2, clip=tiny)
    assert found["row"][0] == 5 and found["score"][0] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(FileNotFoundError, match="no file"):
        query(tables, image=tmp_path / "missing.png", clip=tiny)


def test_errors_name_the_problem(tmp_path, planted, tiny):
    tables, q, _ = planted
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        query(tables, vector=q, k=0)
    with pytest.raises(ValueError, match="dimension 16, the table's image_emb has dimension 32"):
        query(tables, vector=np.ones(16), k=3)
    with pytest.raises(ValueError, match="exactly one of text, image, vector"):
        query(tables, text="a", vector=q)
    with pytest.raises(ValueError, match="'m/x'.*'laionlab-tiny/random-seed0'"):
        query(tables, text="a red bird", clip=tiny)
    with pytest.raises(ValueError, match="needs clip="):
        query(tables, text="a red bird")
    empty = LanceTables(str(tmp_path / "empty"))
    empty.ensure("laion_embeddings", embeddings_schema(D))
    with pytest.raises(ValueError, match="has no rows"):
        query(empty, vector=q)
    with pytest.raises(ValueError, match="has no rows"):
        build_image_index(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        query(str(tmp_path / "nothing"), vector=q)
    two = write(tmp_path / "two", {"p1": unit(np.ones((3, D)))}, model="a/1")
    write(tmp_path / "two", {"p2": unit(np.ones((3, D)))}, model="b/2")
    with pytest.raises(ValueError, match="two models: 'a/1' and 'b/2'"):
        query(two, vector=q)
    with pytest.raises(ValueError, match="unknown open_clip model 'no-such-model'"):
        clip_for("no-such-model/random-seed0", {"device": "cpu"})


def test_the_command_line_prints_the_top_rows(captioned):
    env = {**os.environ, "LAIONLAB_DATA_ROOT": str(captioned), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("LAIONLAB_CLIP_MODEL", None)
    env.pop("LAIONLAB_LANCE_URI", None)
    out = subprocess.run(
        [sys.executable, "-m", "laionlab.query", CAPTIONS[2], "-k", "2", "--nprobes", "8"],
        cwd=ROOT,
        env={**env, "LAIONLAB_DEVICE": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "laionlab-tiny/random-seed0, none index, top 2" in out.stdout
    assert "part-00000:000000002" in out.stdout and CAPTIONS[2] in out.stdout
    assert "https://example.com/part-00000/2.jpg" in out.stdout
    # another model than the table's: a clear error, exit status 2
    bad = subprocess.run(
        [sys.executable, "-m", "laionlab.query", "x", "--lance-uri", str(captioned / "lance")],
        cwd=ROOT,
        env={**env, "LAIONLAB_CLIP_MODEL": "laionlab-tiny-conv", "LAIONLAB_DEVICE": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "laionlab-tiny/random-seed0" in bad.stderr and "laionlab-tiny-conv" in bad.stderr
