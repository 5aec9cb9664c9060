"""File-level storage helpers: atomic Parquet writes and versioned folders.

Paths may be local or fsspec URIs. A local write goes to a temporary name in the same folder
and is renamed into place, so a crash never leaves a half-written file under the final name;
an object-store put is atomic by itself.

Folders (the webdataset shards of a part) are written as versions: ``<dir>/v-<id>/`` plus a
``<dir>/CURRENT`` pointer written atomically once the version is complete. Readers follow the
pointer, so they see the old version or the new one, never a half-written mix.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
from fsspec.implementations.local import LocalFileSystem

CURRENT = "CURRENT"


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])


def _fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    return fsspec.core.url_to_fs(uri)


def is_local(uri: str) -> bool:
    return isinstance(_fs(uri)[0], LocalFileSystem)


def _atomic_write(uri: str, write, suffix: str = "") -> None:
    """Run ``write(target)`` so that readers of ``uri`` see the old file or the new one.

    Locally ``target`` is a temporary path in the same folder, renamed into place when
    ``write`` returns and removed when it raises; on an object store it is an open binary
    file (a put is atomic by itself). ``suffix`` ends the temporary name (np.save adds
    ".npy" to a path without it).
    """
    fs, path = _fs(uri)
    fs.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not isinstance(fs, LocalFileSystem):
        with fs.open(path, "wb") as f:
            write(f)
        return
    tmp = f"{path}.tmp-{uuid.uuid4().hex}{suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(uri: str, data: bytes) -> None:
    def write(target) -> None:
        if not isinstance(target, str):
            target.write(data)
            return
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    _atomic_write(uri, write)


def atomic_write_parquet(frame: pl.DataFrame, uri: str) -> None:
    """Write ``frame`` to ``uri`` so that readers see the old file or the new one."""
    _atomic_write(uri, frame.write_parquet)


def atomic_save_npy(array: np.ndarray, uri: str) -> None:
    """``np.save`` to ``uri`` so that readers see the old file or the new one."""
    _atomic_write(uri, lambda target: np.save(target, array), suffix=".npy")


def load_npy(uri: str, mmap: bool = True) -> np.ndarray:
    """An ``.npy`` array, memory-mapped when the file is local (rows are read on use), else
    read whole."""
    fs, path = _fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri} does not exist (materialise the upstream asset first)")
    if isinstance(fs, LocalFileSystem):
        return np.load(path, mmap_mode="r" if mmap else None)
    with fs.open(path, "rb") as f:
        return np.load(f)


def read_parquet(uri: str) -> pl.DataFrame:
    fs, path = _fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(f"{uri} does not exist (materialise the upstream asset first)")
    with fs.open(path, "rb") as f:
        return pl.read_parquet(f)


def new_version_dir(folder: str) -> str:
    """A fresh, empty version folder under ``folder`` (not yet current)."""
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    uri = join(folder, version)
    fs, path = _fs(uri)
    fs.makedirs(path, exist_ok=True)
    return uri


def commit_version_dir(folder: str, version_uri: str, keep_old: int = 0) -> None:
    """Point ``folder/CURRENT`` at ``version_uri`` and delete older versions beyond ``keep_old``."""
    name = version_uri.rstrip("/").rsplit("/", 1)[-1]
    atomic_write_bytes(join(folder, CURRENT), json.dumps({"version": name}).encode())
    fs, path = _fs(folder)
    versions = sorted(p for p in fs.ls(path, detail=False) if Path(p).name.startswith("v-") and Path(p).name != name)
    for old in versions[: max(0, len(versions) - keep_old)]:
        fs.rm(old, recursive=True)


def current_version_dir(folder: str) -> str:
    """The folder of the current version; raises if none was committed yet."""
    fs, path = _fs(join(folder, CURRENT))
    if not fs.exists(path):
        raise FileNotFoundError(f"no committed version under {folder} (materialise the upstream asset first)")
    return join(folder, json.loads(fs.cat_file(path))["version"])
