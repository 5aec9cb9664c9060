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
    frame = pl.DataFrame({"url": ["http://a/1.jpg", "http://a/2.jpg"], "caption": ["a dog", None], "punsafe": [0.1, 0.9]})
    out = read_part(_write(tmp_path, "part-00003", frame), "part-00003")
    assert out["uid"].to_list() == ["part-00003:000000000", "part-00003:000000001"] == [make_uid("part-00003", i) for i in range(2)]
    assert out.columns[:11] == ["uid", "part", "row", "SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity"]
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
    frame = pl.DataFrame({"URL": ["a", "b", "c", "d"], "TEXT": ["x", "", None, "y"], "NSFW": ["NSFW", "UNLIKELY", "nsfw", None]})
    s = metadata_summary(normalise_metadata(frame.lazy(), "p").collect())
    assert s["rows"] == 4 and s["empty_captions"] == 2
    assert s["nsfw_share"] == pytest.approx(0.5)
    assert s["null_counts"]["TEXT"] == 1 and s["null_counts"]["HEIGHT"] == 4
