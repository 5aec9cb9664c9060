"""FileStore and LanceStore round trips on an object store: moto's S3 server on 127.0.0.1
(skipped without moto and s3fs) and, for the FileStore, fsspec's in-memory filesystem. LanceDB
itself is never mocked: the same writes go to a local database and to the bucket."""

import os

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from laionlab.filter.photo import LinearClassifier
from laionlab.io import files as storage
from laionlab.io.lance import EmptyPartitionError, embeddings_batch, embeddings_schema
from laionlab.neighbours.caption_index import CaptionIndex
from resources import FileStore, LanceStore

DIM = 8


def _roundtrip(store: FileStore) -> None:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({"uid": [f"p:{i:09d}" for i in range(5)], "x": rng.normal(size=5)})
    uri = store.write_parquet(frame, "t", "part.parquet")
    assert uri == f"{store.root}/t/part.parquet" and store.exists("t", "part.parquet")
    assert_frame_equal(store.read_parquet("t", "part.parquet"), frame)
    assert store.read_parquet("t", "part.parquet", columns=["uid"]).columns == ["uid"]
    with pytest.raises(FileNotFoundError, match="materialise the upstream asset"):
        store.read_parquet("t", "none.parquet")

    X = rng.normal(size=(50, DIM)).astype(np.float32)
    store.save_npy(X, "v", "x.npy")
    np.testing.assert_array_equal(store.load_npy("v", "x.npy"), X)
    rows = store.load_npy("v", "x.npy", mmap=True)  # ranged reads on an object store
    assert rows.shape == (50, DIM) and len(rows) == 50 and rows.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(rows[7:31]), X[7:31])
    np.testing.assert_array_equal(rows[49], X[49])
    assert rows[10:10].shape == (0, DIM)

    store.write_json({"a": [1, 2]}, "j", "state.json")
    assert store.read_json("j", "state.json") == {"a": [1, 2]}
    store.write_bytes(b"x", "j", "other.txt")
    assert store.glob("j", pattern="*.json") == [store.path("j", "state.json")]
    assert store.glob("j") == [store.path("j", "other.txt"), store.path("j", "state.json")]

    # a writer that fails half-way leaves the previous object
    def boom(target):
        with open(target, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write(store.path("j", "state.json"), boom)
    assert store.read_json("j", "state.json") == {"a": [1, 2]}

    # versioned folders: a new version is invisible until committed, old ones are removed
    folder = store.path("shards")
    v1 = storage.new_version_dir(folder)
    storage.atomic_write_bytes(storage.join(v1, "00000.tar"), b"one")
    storage.commit_version_dir(folder, v1)
    v2 = storage.new_version_dir(folder)
    storage.atomic_write_bytes(storage.join(v2, "00000.tar"), b"two")
    assert storage.current_version_dir(folder) == v1
    storage.commit_version_dir(folder, v2)
    assert storage.current_version_dir(folder) == v2
    assert [storage.read_bytes(p) for p in storage.list_files(storage.current_version_dir(folder), "*.tar")] == [b"two"]
    assert not storage.exists(storage.join(v1, "00000.tar"))

    # the library's own files: the photo classifier (npz + json) and the faiss caption index
    clf = LinearClassifier(rng.normal(size=DIM), 0.5, input="unit", source="zero-shot", info={"k": 1})
    npz, meta = clf.save(store.path("photo_classifier", "classifier"))
    assert npz.endswith("classifier.npz") and meta.endswith("classifier.json")
    back = LinearClassifier.load(store.path("photo_classifier", "classifier"))
    np.testing.assert_array_equal(back.coef, clf.coef)
    assert (back.intercept, back.input, back.info) == (0.5, "unit", {"k": 1})
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    index = CaptionIndex.build(unit, np.arange(100, 150), "Flat")
    index.save(store.path("caption_index", "index.faiss"))
    loaded = CaptionIndex.load(store.path("caption_index", "index.faiss"))
    assert loaded.ntotal == 50
    np.testing.assert_array_equal(loaded.search(unit[:4], 1)[1][:, 0], np.arange(100, 104))


def test_filestore_round_trips_on_fsspec_memory():
    _roundtrip(FileStore(root="memory://laionlab-storage-test/lab"))


def test_filestore_round_trips_on_s3(s3):
    store = FileStore(root=f"s3://{s3.bucket}/filestore")
    _roundtrip(store)
    assert s3.fs.exists(f"{s3.bucket}/filestore/t/part.parquet")  # really in the bucket


def _batches(part, n, start=0, seed=0, model="m"):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, n, DIM)).astype(np.float32)
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    yield embeddings_batch([f"{part}:{i:09d}" for i in range(start, start + n)], part, model, x[0], x[1])


def _rows(store: LanceStore) -> pl.DataFrame:
    table = store.tables().open("emb").search().limit(None).select(["uid", "part", "model", "image_emb"]).to_arrow()
    return pl.from_arrow(table).sort("uid")


def test_lancestore_replace_part_on_s3_matches_a_local_database(s3, tmp_path):
    schema = embeddings_schema(DIM)
    stores = [
        LanceStore(uri=str(tmp_path / "lance")),
        LanceStore(uri=f"s3://{s3.bucket}/lance", storage_options=s3.lance_options),
    ]
    for store in stores:
        store.replace_part("emb", "a", _batches("a", 30), schema)
        store.replace_part("emb", "b", _batches("b", 20, seed=1), schema)
        before = store.tables().open("emb").version
        # a shrinks to rows 10..24 with new vectors: exactly a's rows change, b's stay
        written = store.replace_part("emb", "a", _batches("a", 15, start=10, seed=2, model="m2"), schema)
        assert (
            written.rows == 15 and written.rewrite and written.version == before + 2
        )  # the merge, then the 15 rows a lacks now
        with pytest.raises(EmptyPartitionError):
            store.replace_part("emb", "b", iter([]), schema)
        assert store.tables().count("emb", "part = 'b'") == 20
    assert s3.fs.isdir(f"{s3.bucket}/lance/emb.lance")
    local, remote = (_rows(s) for s in stores)
    assert remote["uid"].to_list() == [f"a:{i:09d}" for i in range(10, 25)] + [f"b:{i:09d}" for i in range(20)]
    assert set(remote.filter(pl.col("part") == "a")["model"]) == {"m2"}
    assert_frame_equal(local, remote)


@pytest.mark.parametrize("key", ["", ".", "..", "../other", "a/../../b", "/"])
def test_a_path_part_that_is_empty_or_climbs_is_refused(tmp_path, key):
    store = FileStore(root=str(tmp_path))
    with pytest.raises(ValueError, match="empty or leaves its folder"):
        store.path("laion_images", key)
    assert store.path("laion_images", "part-00000") == f"{tmp_path}/laion_images/part-00000"


def test_new_version_commits_on_exit_and_drops_a_failed_one(tmp_path):
    from resources import FileStore, FolderBusyError

    store = FileStore(root=str(tmp_path))
    assert not store.has_version("out", "p1")
    with store.new_version("out", "p1") as v1:
        v1.write_parquet(pl.DataFrame({"a": [1]}), "x.parquet")
        assert not store.has_version("out", "p1")  # not current until the block ends
    assert store.current_version("out", "p1") == v1 and v1.read_parquet("x.parquet")["a"].to_list() == [1]
    with pytest.raises(RuntimeError, match="boom"):
        with store.new_version("out", "p1") as v2:
            v2.write_parquet(pl.DataFrame({"a": [2]}), "x.parquet")
            raise RuntimeError("boom")
    assert store.current_version("out", "p1") == v1 and not os.path.exists(v2.uri)  # the failed one is gone
    with store.new_version("out", "p1") as v3:
        with pytest.raises(FolderBusyError, match="is being written by pid"):
            with store.new_version("out", "p1"):
                pass
        v3.save_npy(np.arange(3), "y.npy")
    assert store.current_version("out", "p1").glob() == [v3.path("y.npy")] and not os.path.exists(v1.uri)
    with pytest.raises(ValueError, match="leaves its folder"):
        v3.path("..", "elsewhere")
    with pytest.raises(FileNotFoundError, match="no committed version"):
        store.current_version("out", "p2")
