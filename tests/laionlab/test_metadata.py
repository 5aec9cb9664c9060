import polars as pl
import pytest

from laionlab.io.metadata import (
    MetadataSchemaError,
    list_parts,
    make_uid,
    metadata_summary,
    normalise_metadata,
    read_part,
)


def _write(tmp_path, name, frame):
    path = tmp_path / f"{name}.parquet"
    frame.write_parquet(path)
    return str(path)


def test_read_part_normalises_and_adds_stable_uids(tmp_path):
    frame = pl.DataFrame(
        {"url": ["http://a/1.jpg", "http://a/2.jpg"], "caption": ["a dog", None], "punsafe": [0.1, 0.9]}
    )
    out = read_part(_write(tmp_path, "part-00003", frame), "part-00003")
    assert (
        out["uid"].to_list()
        == ["part-00003:000000000", "part-00003:000000001"]
        == [make_uid("part-00003", i) for i in range(2)]
    )
    assert out.columns[:11] == [
        "uid",
        "part",
        "row",
        "SAMPLE_ID",
        "URL",
        "TEXT",
        "HEIGHT",
        "WIDTH",
        "LICENSE",
        "NSFW",
        "similarity",
    ]
    assert out["URL"].to_list() == frame["url"].to_list()
    assert out["punsafe"].to_list() == [0.1, 0.9]  # unknown columns are kept
    assert out["SAMPLE_ID"].null_count() == 2


def test_missing_required_column_names_file_and_column(tmp_path):
    path = _write(tmp_path, "part-1", pl.DataFrame({"URL": ["x"], "HEIGHT": [1]}))
    with pytest.raises(MetadataSchemaError, match=r"part-1\.parquet.*missing required column.*TEXT"):
        read_part(path, "part-1")


def test_mistyped_column_names_file_and_type(tmp_path):
    path = _write(tmp_path, "part-2", pl.DataFrame({"URL": [1, 2], "TEXT": ["a", "b"]}))
    with pytest.raises(MetadataSchemaError, match=r"part-2\.parquet.*'URL' has type Int64"):
        read_part(path, "part-2")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        read_part(str(tmp_path / "nope.parquet"), "nope")
    bad = tmp_path / "junk.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(MetadataSchemaError, match="junk.parquet.*not a readable parquet"):
        read_part(str(bad), "junk")


def test_list_parts_and_duplicate_keys(tmp_path):
    for name in ("part-00000", "part-00001"):
        _write(tmp_path, name, pl.DataFrame({"URL": ["u"], "TEXT": ["t"]}))
    (tmp_path / "notes.txt").write_text("x")
    parts = list_parts(str(tmp_path))
    assert sorted(parts) == ["part-00000", "part-00001"]
    (tmp_path / "sub").mkdir()
    pl.DataFrame({"URL": ["u"], "TEXT": ["t"]}).write_parquet(tmp_path / "part-00000.snappy.parquet")
    with pytest.raises(ValueError, match="same part key 'part-00000'"):
        list_parts(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not found"):
        list_parts(str(tmp_path / "missing"))


def test_metadata_summary_counts():
    frame = pl.DataFrame(
        {"URL": ["a", "b", "c", "d"], "TEXT": ["x", "", None, "y"], "NSFW": ["NSFW", "UNLIKELY", "nsfw", None]}
    )
    s = metadata_summary(normalise_metadata(frame.lazy(), "p").collect())
    assert s["rows"] == 4 and s["empty_captions"] == 2
    assert s["nsfw_share"] == pytest.approx(0.5)
    assert s["null_counts"]["TEXT"] == 1 and s["null_counts"]["HEIGHT"] == 4


def test_part_keys_slices_and_files_that_are_not_parts(tmp_path):
    from laionlab.io.metadata import plan_slices, skipped_files, split_part_key

    good = pl.DataFrame({"URL": ["u"], "TEXT": ["t"]})
    for name in [
        "part-00001.parquet",
        "._part-00001.parquet",
        ".hidden.parquet",
        "it's a part.parquet",
        "x y.parquet",
        "..parquet",
    ]:
        good.write_parquet(tmp_path / name)
    assert list(list_parts(str(tmp_path))) == ["part-00001"]
    assert skipped_files(str(tmp_path)) == sorted(
        ["._part-00001.parquet", ".hidden.parquet", "it's a part.parquet", "x y.parquet", "..parquet"]
    )
    assert split_part_key("part-00001") == ("part-00001", None) and split_part_key("part-00001.0042") == (
        "part-00001",
        42,
    )
    for bad in ["", "part.1", "it's", "a/b", "._x", "part-1.00x"]:
        with pytest.raises(ValueError, match="not a LAION part key"):
            split_part_key(bad)
    assert [(s.key, s.start, s.stop) for s in plan_slices("p", "u", 10, 0)] == [("p", 0, 10)]
    assert [(s.key, s.start, s.stop) for s in plan_slices("p", "u", 10, 10)] == [("p", 0, 10)]
    slices = plan_slices("p", "u", 10_001, 10)
    assert len(slices) == 1_001 and slices[0].key == "p.0000" and slices[-1].key == "p.1000" and slices[-1].rows == 1
    assert sum(s.rows for s in slices) == 10_001 and all(a.stop == b.start for a, b in zip(slices, slices[1:]))


def test_read_part_reads_a_row_range(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from laionlab.io.metadata import read_part

    pq.write_table(
        pa.table({"URL": [f"u{i}" for i in range(100)], "TEXT": [str(i) for i in range(100)]}),
        tmp_path / "f.parquet",
        row_group_size=7,
    )
    for start, stop in [(0, 100), (0, 7), (6, 8), (13, 64), (99, 100), (95, 200)]:
        got = read_part(str(tmp_path / "f.parquet"), "f.001", start, stop)
        assert got["row"].to_list() == list(range(start, min(stop, 100))) == [int(t) for t in got["TEXT"]]
        assert got["uid"].to_list() == [f"f.001:{r:09d}" for r in range(start, min(stop, 100))]


def test_uid_part_inverts_make_uid():
    from laionlab.io.metadata import make_uid, uid_part, uid_parts

    assert uid_part(make_uid("part-00001.3", 42)) == "part-00001.3"
    assert uid_part("a:b:7") == "a:b"  # the row is after the last colon
    assert uid_parts(["b:2", "a:1", "b:1"]) == ["a", "b"]
    for bad in ("nocolon", ":7"):
        with pytest.raises(ValueError, match="expected '<part>:<row>'"):
            uid_part(bad)
