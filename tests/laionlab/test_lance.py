import multiprocessing as mp

import numpy as np
import pyarrow as pa
import pytest

from laionlab.io.lance import (
    DimensionMismatchError,
    EmptyPartitionError,
    LanceTables,
    embeddings_batch,
    embeddings_schema,
)

DIM = 8


def _unit(rng, n):
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def batches(part, n, start=0, batch=10, model="m", seed=0, fail_after=None):
    rng = np.random.default_rng(seed)
    for k, s in enumerate(range(start, start + n, batch)):
        if fail_after is not None and k == fail_after:
            raise RuntimeError("injected failure")
        m = min(batch, start + n - s)
        yield embeddings_batch([f"{part}:{i:09d}" for i in range(s, s + m)], part, model, _unit(rng, m), _unit(rng, m))


def uids(tables, part=None):
    tbl = tables.open("emb")
    where = f"part = '{part}'" if part else None
    query = tbl.search().limit(None).select(["uid"])
    return sorted((query.where(where) if where else query).to_arrow()["uid"].to_pylist())


def test_replace_part_replaces_exactly_one_partition(tmp_path):
    t = LanceTables(str(tmp_path / "db"))
    schema = embeddings_schema(DIM)
    t.replace_part("emb", "a", batches("a", 30), schema)
    t.replace_part("emb", "b", batches("b", 20), schema)
    before = t.open("emb").version
    # a shrinks to rows 10..24: rows 0..9 and 25..29 must go, b untouched
    result = t.replace_part("emb", "a", batches("a", 15, start=10, model="m2"), schema)
    # one commit for the new rows, one removing the 15 rows the new data lacks
    assert result.rows == 15 and result.rewrite and result.version == before + 2
    assert uids(t, "a") == [f"a:{i:09d}" for i in range(10, 25)]
    assert uids(t, "b") == [f"b:{i:09d}" for i in range(20)]
    assert set(t.read_part("emb", "a", ["model"])["model"].to_pylist()) == {"m2"}
    all_uids = uids(t)
    assert len(all_uids) == len(set(all_uids)) == 35


def test_a_new_part_is_appended_and_an_existing_one_rewritten(tmp_path):
    """A new partition is one append (nothing of the table is joined), a second write of it
    the merge; the part column carries a BITMAP index; the result is the same either way."""
    t = LanceTables(str(tmp_path / "db"))
    schema = embeddings_schema(DIM)
    first = t.replace_part("emb", "a", batches("a", 30), schema)
    assert not first.rewrite and t.replace_part("emb", "b", batches("b", 20), schema).rewrite is False
    assert sorted(i.columns for i in t.open("emb").list_indices()) == [["model"], ["part"], ["uid"]]
    again = t.replace_part("emb", "a", batches("a", 12), schema)
    assert again.rewrite and uids(t, "a") == [f"a:{i:09d}" for i in range(12)] and t.count("emb") == 32
    # a part whose name another part's starts with is still new
    assert not t.replace_part("emb", "a.001", batches("a.001", 5), schema).rewrite
    assert uids(t, "a") == [f"a:{i:09d}" for i in range(12)] and t.count("emb") == 37


def test_rewrite_same_rows_is_idempotent(tmp_path):
    t = LanceTables(str(tmp_path / "db"))
    schema = embeddings_schema(DIM)
    t.replace_part("emb", "a", batches("a", 25), schema)
    for _ in range(2):
        before = t.open("emb").version
        assert t.replace_part("emb", "a", batches("a", 25), schema).version == before + 1  # one commit: atomic
    assert t.count("emb") == 25 and len(set(uids(t))) == 25


def test_failure_mid_stream_keeps_previous_version(tmp_path):
    t = LanceTables(str(tmp_path / "db"))
    schema = embeddings_schema(DIM)
    t.replace_part("emb", "a", batches("a", 30, seed=1), schema)
    old = t.read_part("emb", "a").sort_by("uid")
    version = t.open("emb").version
    with pytest.raises(RuntimeError, match="^injected failure$"):
        t.replace_part("emb", "a", batches("a", 50, seed=2, model="new", fail_after=2), schema)
    assert t.open("emb").version == version
    assert t.read_part("emb", "a").sort_by("uid").equals(old)


def test_empty_input_is_refused_and_changes_nothing(tmp_path):
    t = LanceTables(str(tmp_path / "db"))
    schema = embeddings_schema(DIM)
    t.replace_part("emb", "a", batches("a", 5), schema)
    with pytest.raises(EmptyPartitionError, match="part 'a'"):
        t.replace_part("emb", "a", iter([]), schema)
    with pytest.raises(EmptyPartitionError):
        t.replace_part("emb", "a", iter([pa.RecordBatch.from_pylist([], schema=schema)]), schema)
    assert t.count("emb", "part = 'a'") == 5


def test_dimension_mismatch_names_table_and_dims(tmp_path):
    t = LanceTables(str(tmp_path / "db"))
    t.replace_part("emb", "a", batches("a", 5), embeddings_schema(DIM))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 16)).astype(np.float32)
    wide = [embeddings_batch(["b:0", "b:1", "b:2"], "b", "m", x, x)]
    with pytest.raises(DimensionMismatchError, match=r"'emb'.*dimension 8.*dimension 16"):
        t.replace_part("emb", "b", wide, embeddings_schema(16))
    assert t.count("emb") == 5


def test_rows_of_another_partition_are_refused(tmp_path):
    t = LanceTables(str(tmp_path / "db"))
    with pytest.raises(ValueError, match="carry part values"):
        t.replace_part("emb", "a", batches("b", 5), embeddings_schema(DIM))


def _write_part(uri, part, n):
    LanceTables(uri).replace_part("emb", part, batches(part, n, batch=50), embeddings_schema(DIM))


def test_concurrent_processes_leave_the_exact_union(tmp_path):
    uri = str(tmp_path / "db")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_part, args=(uri, p, 400)) for p in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    t = LanceTables(uri)
    assert uids(t) == sorted(f"{p}:{i:09d}" for p in "abc" for i in range(400))


def test_embeddings_batch_clip_score_is_rowwise_cosine():
    rng = np.random.default_rng(3)
    a, b = _unit(rng, 4), _unit(rng, 4)
    batch = embeddings_batch(["1", "2", "3", "4"], "p", "m", a, b)
    np.testing.assert_allclose(batch.column("clip_score").to_numpy(), (a * b).sum(1), rtol=1e-6)
    with pytest.raises(ValueError, match="shape mismatch"):
        embeddings_batch(["1"], "p", "m", a, b)


def test_pinned_reads_see_one_version_while_others_write(tmp_path):
    """A run's reads (``pins``) see each table as it was at their first read, whatever other
    writers commit meanwhile; the run's own write moves its pin to the latest version."""
    writer = LanceTables(str(tmp_path / "db"))
    schema = embeddings_schema(DIM)
    writer.replace_part("emb", "a", batches("a", 10), schema)
    pins: dict[str, int] = {}
    run = LanceTables(str(tmp_path / "db"), pins=pins)
    assert run.count("emb") == 10 and pins == {"emb": writer.open("emb").version}
    writer.replace_part("emb", "b", batches("b", 5), schema)  # another run's part
    assert run.count("emb") == 10 and uids(run) == uids(writer, "a")
    assert LanceTables(str(tmp_path / "db"), pins=pins).count("emb", "part = 'b'") == 0  # the same run, another handle
    run.replace_part("emb", "c", batches("c", 3), schema)  # its own write
    assert run.count("emb") == 18 and pins["emb"] == writer.open("emb").version
    run.open_to_write("emb").delete("part = 'c'")
    assert run.count("emb") == 15


def test_embeddings_batches_are_embeddings_batch_of_each_encoded_batch():
    from types import SimpleNamespace

    from laionlab.io.lance import embeddings_batches

    rng = np.random.default_rng(0)
    encoded = [
        SimpleNamespace(
            uid=[f"p:{i}" for i in range(s, s + n)],
            image_emb=_unit(rng, n),
            text_emb=_unit(rng, n),
            image_norm=rng.random(n).astype(np.float32),
            text_norm=rng.random(n).astype(np.float32),
        )
        for s, n in ((0, 3), (3, 2))
    ]
    got = list(embeddings_batches(iter(encoded), "p", "m"))
    want = [embeddings_batch(b.uid, "p", "m", b.image_emb, b.text_emb, b.image_norm, b.text_norm) for b in encoded]
    assert len(got) == 2 and all(g.equals(w) for g, w in zip(got, want))
    assert got[0].column("part").to_pylist() == ["p"] * 3
    with pytest.raises(ValueError, match="part: expected a non-empty partition key"):
        embeddings_batches(encoded, "", "m")


def test_reference_batches_take_each_samples_label_and_source_by_its_uid():
    from types import SimpleNamespace

    from laionlab.io.lance import reference_batch, reference_batches

    rng = np.random.default_rng(1)
    labels, sources = ["cat", None, "dog", "cat"], ["/d/0.jpg", "/d/1.jpg", "/d/2.jpg", "/d/3.jpg"]
    encoded = [
        SimpleNamespace(
            uid=[f"things:{i:09d}" for i in rows],
            image_emb=_unit(rng, len(rows)),
            image_norm=rng.random(len(rows)).astype(np.float32),
        )
        for rows in ([2, 0], [3, 1])  # a loader may yield samples out of order
    ]
    got = list(reference_batches(encoded, "things", "m", labels, sources))
    assert got[0].column("label").to_pylist() == ["dog", "cat"]
    assert got[1].column("source").to_pylist() == ["/d/3.jpg", "/d/1.jpg"]
    # what reference_embeddings built inline before
    index = {f"things:{i:09d}": i for i in range(len(sources))}
    for g, b in zip(got, encoded):
        rows = [index[u] for u in b.uid]
        picked_labels, picked_sources = [labels[i] for i in rows], [sources[i] for i in rows]
        want = reference_batch(b.uid, "things", "m", picked_labels, picked_sources, b.image_emb, b.image_norm)
        assert g.equals(want)
    with pytest.raises(ValueError, match="labels and sources"):
        reference_batches(encoded, "things", "m", labels[:2], sources)
    with pytest.raises(ValueError, match=r"uids \['other:000000000'\] are not samples of 'things'"):
        list(reference_batches([SimpleNamespace(uid=["other:000000000"])], "things", "m", labels, sources))
