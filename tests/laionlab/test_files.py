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


def test_npy_rows_read_row_ranges_and_refuse_what_they_cannot():
    import fsspec
    import numpy as np

    from laionlab.io.files import NpyRows, atomic_save_npy, load_npy

    x = np.arange(60, dtype=np.float16).reshape(10, 3, 2)
    atomic_save_npy(x, "memory://laionlab-npyrows/x.npy")
    rows = load_npy("memory://laionlab-npyrows/x.npy")
    assert isinstance(rows, NpyRows) and (rows.shape, rows.ndim, rows.dtype, len(rows)) == (
        (10, 3, 2),
        3,
        np.float16,
        10,
    )
    np.testing.assert_array_equal(rows[2:5], x[2:5])
    np.testing.assert_array_equal(rows[-1], x[-1])
    np.testing.assert_array_equal(rows[8:100], x[8:])
    np.testing.assert_array_equal(np.asarray(rows), x)
    np.testing.assert_array_equal(load_npy("memory://laionlab-npyrows/x.npy", mmap=False), x)
    with pytest.raises(TypeError, match="only contiguous row slices"):
        rows[::2]
    atomic_save_npy(np.asfortranarray(np.ones((3, 2))), "memory://laionlab-npyrows/f.npy")
    with pytest.raises(ValueError, match="f.npy: rows can only be read from a C-ordered"):
        NpyRows("memory://laionlab-npyrows/f.npy")
    fsspec.filesystem("memory").rm("/laionlab-npyrows", recursive=True)


def test_list_files_spells_paths_as_the_folder_is(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.tar", "a.tar", "x.parquet"):
        (tmp_path / "d" / name).write_bytes(b"")
    (tmp_path / "d" / "sub.tar").mkdir()  # a folder is not a file
    assert files.list_files(str(tmp_path / "d"), "*.tar") == [str(tmp_path / "d" / n) for n in ("a.tar", "b.tar")]
    uri = f"file://{tmp_path}/d"
    assert files.list_files(uri, "*.tar") == [f"{uri}/a.tar", f"{uri}/b.tar"]
    assert files.read_bytes(f"{uri}/a.tar") == b"" and files.local_path(uri) == str(tmp_path / "d")


def test_fsspec_config_is_handed_to_child_processes(monkeypatch):
    import json

    import fsspec.config

    monkeypatch.setitem(
        fsspec.config.conf, "s3", {"endpoint_url": "http://127.0.0.1:9000", "client_kwargs": {"region_name": "x"}}
    )
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": object()})  # not JSON: left to the child's own config
    env = files.fsspec_env()
    assert json.loads(env["FSSPEC_S3"]) == fsspec.config.conf["s3"]
    assert "FSSPEC_GCS" not in env
