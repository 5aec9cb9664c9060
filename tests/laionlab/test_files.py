import polars as pl
import pytest

from laionlab.io import files


def test_atomic_write_parquet_leaves_no_temp_files(tmp_path):
    target = str(tmp_path / "sub" / "t.parquet")
    files.atomic_write_parquet(pl.DataFrame({"a": [1, 2]}), target)
    files.atomic_write_parquet(pl.DataFrame({"a": [3]}), target)
    assert files.read_parquet(target)["a"].to_list() == [3]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.parquet"]


def test_failed_parquet_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = str(tmp_path / "t.parquet")
    files.atomic_write_parquet(pl.DataFrame({"a": [1]}), target)

    def boom(self, path, *a, **k):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write_parquet(pl.DataFrame({"a": [2]}), target)
    monkeypatch.undo()
    assert files.read_parquet(target)["a"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_version_dirs_switch_atomically_and_clean_up(tmp_path):
    folder = str(tmp_path / "imgs")
    with pytest.raises(FileNotFoundError, match="no committed version"):
        files.current_version_dir(folder)
    v1 = files.new_version_dir(folder)
    files.commit_version_dir(folder, v1)
    assert files.current_version_dir(folder) == v1
    v2 = files.new_version_dir(folder)
    assert files.current_version_dir(folder) == v1  # uncommitted version is invisible
    files.commit_version_dir(folder, v2)
    assert files.current_version_dir(folder) == v2
    assert sorted(p.name for p in (tmp_path / "imgs").iterdir()) == sorted(["CURRENT", v2.rsplit("/", 1)[-1]])
    with pytest.raises(FileNotFoundError, match="upstream"):
        files.read_parquet(str(tmp_path / "none.parquet"))


def test_files_helpers_work_on_an_fsspec_memory_root():
    """The data root may be any fsspec URI: parquet, npy and versioned folders on memory://."""
    import numpy as np
    import polars as pl

    from laionlab.io.files import (
        atomic_save_npy,
        atomic_write_parquet,
        commit_version_dir,
        current_version_dir,
        load_npy,
        new_version_dir,
        read_parquet,
    )

    root = "memory://laionlab-test"
    frame = pl.DataFrame({"uid": ["a", "b"], "x": [1.5, 2.5]})
    atomic_write_parquet(frame, f"{root}/t/part.parquet")
    assert read_parquet(f"{root}/t/part.parquet").equals(frame)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    atomic_save_npy(arr, f"{root}/t/v.npy")
    np.testing.assert_array_equal(load_npy(f"{root}/t/v.npy"), arr)
    first = new_version_dir(f"{root}/shards")
    commit_version_dir(f"{root}/shards", first)
    second = new_version_dir(f"{root}/shards")
    commit_version_dir(f"{root}/shards", second)
    assert current_version_dir(f"{root}/shards") == second
