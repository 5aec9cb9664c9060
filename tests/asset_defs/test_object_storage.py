"""The data root and LanceDB given as URIs (scale-out issue): the demo's ingest of one part and
a cheap analysis of every pipeline group give the same outputs with plain folders, with
``file:///`` URIs for the data root, the LanceDB database and the LAION source, and on an S3
bucket (moto's server on 127.0.0.1; skipped without moto and s3fs), every file written under
the URI's root."""

import re
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
import pytest
from dagster import MultiPartitionKey
from polars.testing import assert_frame_equal

from asset_defs.ingest import EMBEDDINGS_TABLE, STATUS_FILE, images_dir, laion_embeddings, laion_images, laion_metadata
from asset_defs.laionet import caption_index, ilsvrc_synsets, lemma_matches
from asset_defs.representations import load_similarity, model_features, representation_similarity
from asset_defs.retrieval import caption_search_index, concept_synonyms, retrieval_samples, string_matches
from asset_defs.train_test_similarity import dedup_assignments, dedup_centroids, laion_dedup, read_dedup
from asset_defs.visual_world import laion_natural, laion_natural_clusters, load_photo_classifier, photo_classifier
from laionlab.io.files import list_files, read_bytes, read_parquet
from laionlab.neighbours.index_parts import load_index, read_id_map
from resources import FileStore, LaionSource, LanceStore
from tests.conftest import instance_with_parts, make_resources, run

TARGET = "demo_target"
DATASET = "demo_broad"
MODELS = ["clip_tiny_conv", "clip_tiny_vit"]
CONFIG = {
    "laion_natural": {"threshold": 0.5},
    "laion_natural_clusters": {"k": 2},
    "dedup_centroids": {"k": 2, "duplicate_cosine": 0.999},
    "laion_dedup": {"eps": 0.002},
    "retrieval_samples": {"n_per_class": 2, "templates": "simple", "methods": ["Random", "T2T-rank", "T2I-rank"]},
    "model_features": {"max_samples": 20, "device": "cpu"},
}


def _materialise(resources: dict, part: str) -> None:
    """Ingest ``part``, then per group a cheap analysis, each stage in one run."""
    instance = instance_with_parts([part])
    instance.add_dynamic_partitions("target", [TARGET])
    instance.add_dynamic_partitions("dataset", [DATASET])
    instance.add_dynamic_partitions("model", MODELS)
    stages = [
        ([laion_metadata, laion_images, laion_embeddings], part),
        ([photo_classifier, ilsvrc_synsets, dedup_centroids], None),
        ([laion_natural, lemma_matches, dedup_assignments], part),
        ([laion_dedup], part),
        ([laion_natural_clusters, caption_search_index, caption_index], None),
        ([concept_synonyms, string_matches, retrieval_samples], TARGET),
        *[([model_features], MultiPartitionKey({"dataset": DATASET, "model": m})) for m in MODELS],
        ([representation_similarity], DATASET),
    ]
    for assets, key in stages:
        names = [a.key.to_python_identifier() for a in assets]
        result = run(
            assets,
            resources,
            instance,
            key,
            run_config={"ops": {n: {"config": CONFIG[n]} for n in names if n in CONFIG}},
        )
        assert result.success, [a.key.to_user_string() for a in assets]


def _tree(files: FileStore) -> list[str]:
    """Files under the data root relative to it; version folders as v-*, LanceDB's internals and
    the local writer locks (files.writer_lock; an object store has none) left out."""
    fs, root = fsspec.core.url_to_fs(files.root)
    names = (p[len(root.rstrip("/")) + 1 :] for p in fs.find(root))
    return sorted(
        re.sub(r"/v-[^/]+/", "/v-*/", n)
        for n in names
        if not n.startswith("lance/") and not n.endswith("/.writer.lock")
    )


def _embeddings(lance: LanceStore, part: str) -> pl.DataFrame:
    table = lance.tables().read_part(EMBEDDINGS_TABLE, part, ["uid", "image_emb", "text_emb", "clip_score"])
    return pl.from_arrow(table).sort("uid")


def _resources(root: str, demo) -> dict:
    # img2dataset stores samples in the order its threads finish, and a vector's last bits depend
    # on its batch neighbours: one image per batch makes every run's vectors bit-identical
    return make_resources(root, str(Path(demo.root) / "laion_parts"), batch_size=1)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, demo) -> dict:
    """The reference: everything under a plain local folder."""
    resources = _resources(str(tmp_path_factory.mktemp("plain")), demo)
    _materialise(resources, demo.parts[0])
    return resources


def _assert_same_outputs(plain: dict, other: dict, part: str) -> None:
    a, b = plain["files"], other["files"]
    assert _tree(b) == _tree(a)
    for parts in [
        ("laion_metadata", f"{part}.parquet"),
        ("laion_natural", f"{part}.parquet"),
        ("laion_natural_clusters", "sizes.parquet"),
        ("lemma_matches", f"{part}.parquet"),
        ("dedup_assignments", f"{part}.parquet"),
        ("string_matches", f"{TARGET}.parquet"),
        ("retrieval_samples", f"{TARGET}.parquet"),
    ]:
        assert_frame_equal(a.read_parquet(*parts), b.read_parquet(*parts))
    # ingest: the same download statuses, shards and vectors
    assert images_dir(b, part).startswith(b.path("laion_images", part))
    assert_frame_equal(
        read_parquet(f"{images_dir(a, part)}/{STATUS_FILE}"), read_parquet(f"{images_dir(b, part)}/{STATUS_FILE}")
    )
    shards = [list_files(images_dir(f, part), "*.tar") for f in (a, b)]
    assert len(shards[0]) == len(shards[1]) >= 1
    vectors = _embeddings(plain["lance"], part)
    assert vectors.height > 0
    assert_frame_equal(vectors, _embeddings(other["lance"], part))
    # visual world, train-test similarity, representations: the same arrays
    np.testing.assert_array_equal(load_photo_classifier(a).coef, load_photo_classifier(b).coef)
    for parts in [
        ("dedup_assignments", f"{part}.vectors.npy"),
        *[("model_features", DATASET, f"{m}.npy") for m in MODELS],
    ]:
        np.testing.assert_array_equal(a.load_npy(*parts), b.load_npy(*parts))
    for parts in [("laion_natural_clusters", "centroids.npy"), ("dedup_centroids", "centroids.npy")]:
        # faiss's threaded k-means sums in a varying order: the last bit may differ
        np.testing.assert_allclose(a.load_npy(*parts), b.load_npy(*parts), rtol=1e-6, atol=1e-7)
    states = [f.read_json("caption_index", "state.json") for f in (a, b)]
    assert {**states[0], "build": None} == {**states[1], "build": None}
    assert_frame_equal(read_dedup(a, [part]), read_dedup(b, [part]))
    names, matrices = load_similarity(b, DATASET)
    assert names == MODELS
    for metric, M in load_similarity(a, DATASET)[1].items():
        np.testing.assert_array_equal(M, matrices[metric])
    # laionet's faiss index, read back from the root, finds every caption itself (its ids follow
    # LanceDB's scan order, which differs between two writes of the same rows, and demo captions
    # repeat: compare the vectors found)
    T = np.stack(vectors["text_emb"].to_numpy())
    text_of = dict(zip(vectors["uid"].to_list(), T))
    for f in (a, b):
        index, state = load_index(f.path("caption_index"))
        ids = read_id_map(f.path("caption_index"), state)
        assert sorted(ids["uid"].to_list()) == vectors["uid"].to_list()
        uid_of = dict(zip(ids["id"].to_list(), ids["uid"].to_list()))
        _, hits = index.search(T, 1)
        cosine = np.einsum("nd,nd->n", np.stack([text_of[uid_of[i]] for i in hits[:, 0]]), T)
        assert cosine.min() > 1 - 1e-5
    # retrieval: the SWAT lists name the images exported under each root
    for f in (a, b):
        lists = list_files(f.path("retrieval_samples", TARGET), "*.txt")
        lines = [line for p in lists for line in read_bytes(p).decode().splitlines()]
        assert lines and all(line.split(" ")[0].startswith(f.root) for line in lines)
    assert [p.rsplit("/", 1)[-1] for p in list_files(a.path("retrieval_samples", TARGET, "images"))] == [
        p.rsplit("/", 1)[-1] for p in list_files(b.path("retrieval_samples", TARGET, "images"))
    ]


def test_file_uri_data_root_and_lancedb_give_the_plain_path_outputs(plain, tmp_path, demo, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI mistaken for a relative path would land in ./file:/...
    uri_root = f"file://{tmp_path / 'lab'}"
    by_uri = _resources(uri_root, demo)
    by_uri["source"] = LaionSource(uri=f"file://{Path(demo.root) / 'laion_parts'}")
    assert by_uri["files"].root == uri_root and by_uri["lance"].uri == f"{uri_root}/lance"
    _materialise(by_uri, demo.parts[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab"]  # no ./file:/... folder
    assert (tmp_path / "lab" / "lance" / f"{EMBEDDINGS_TABLE}.lance").is_dir()  # LanceDB wrote under the URI's folder
    _assert_same_outputs(plain, by_uri, demo.parts[0])


def test_s3_data_root_and_lancedb_give_the_plain_path_outputs(plain, s3, demo):
    """The same on an S3 bucket: img2dataset writes the shards there (its child gets the endpoint
    as FSSPEC_S3), webdataset reads them back through fsspec, LanceDB gets the endpoint as
    storage options."""
    root = f"s3://{s3.bucket}/lab"
    on_s3 = _resources(root, demo)
    on_s3["lance"] = LanceStore(uri=f"{root}/lance", storage_options=s3.lance_options)
    _materialise(on_s3, demo.parts[0])
    assert s3.fs.isdir(f"{s3.bucket}/lab/lance/{EMBEDDINGS_TABLE}.lance")
    _assert_same_outputs(plain, on_s3, demo.parts[0])
