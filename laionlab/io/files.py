"""File-level storage helpers: the one way assets read and write files under the data root.

Every path may be a local path, a ``file://`` URI or any fsspec URI (``s3://``, ``gs://``,
``az://``, ``memory://``); nothing here turns a URI into a local ``Path``. Filesystem options
(endpoint, credentials) come from fsspec's own configuration: ``FSSPEC_S3='{"endpoint_url":
...}'`` or ``~/.config/fsspec/s3.json`` (read by every process, img2dataset's workers too), or
the provider's usual variables (``AWS_*``).

Atomic writes (``atomic_write``), one rule per kind of filesystem:
- local (plain path or ``file://``): the data goes to a temporary name in the same folder and
  is renamed into place, so a crash never leaves a half-written file under the final name;
- object store (any other fsspec filesystem): the data goes to a temporary file in the local
  temp folder, uploaded with one ``put`` once complete (a single object put, or a multipart
  upload that completes in one step). Readers see the old object or the new one; a writer
  that fails uploads nothing.
Outputs of several files are written data first, then the file that says they are complete
(the commit marker): folders (the webdataset shards of a part) as versions, ``<dir>/v-<id>/``
plus a ``<dir>/CURRENT`` pointer written once the version is complete (readers follow the
pointer and see the old version or the new one, never a mix); ``dedup_assignments`` writes
its vectors file before the table that laion_dedup checks it against.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import fsspec
import fsspec.config
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


def local_path(uri: str) -> str | None:
    """The local filesystem path of ``uri`` (a plain path or ``file://`` URI), else None."""
    fs, path = _fs(uri)
    return path if isinstance(fs, LocalFileSystem) else None


def protocol(uri: str) -> str:
    """The URI scheme fsspec resolves ``uri`` to ("file" for local paths)."""
    fs, _ = _fs(uri)
    return fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]


def _missing(uri: str) -> FileNotFoundError:
    return FileNotFoundError(f"{uri} does not exist (materialise the upstream asset first)")


def makedirs(uri: str) -> None:
    fs, path = _fs(uri)
    fs.makedirs(path, exist_ok=True)


def exists(uri: str) -> bool:
    fs, path = _fs(uri)
    return fs.exists(path)


@contextmanager
def open_read(uri: str) -> Iterator[Any]:
    """``uri`` opened for binary reading; a missing file names the upstream asset to run."""
    fs, path = _fs(uri)
    if not fs.exists(path):
        raise _missing(uri)
    with fs.open(path, "rb") as f:
        yield f


def read_bytes(uri: str) -> bytes:
    fs, path = _fs(uri)
    if not fs.exists(path):
        raise _missing(uri)
    return fs.cat_file(path)


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def atomic_write(uri: str, write: Callable[[str], None], suffix: str = "") -> None:
    """Run ``write(target)`` with a local temporary path ``target`` so that readers of ``uri``
    see the old file or the new one.

    Locally the temporary file sits in the target's folder and is renamed into place when
    ``write`` returns; for any other filesystem it sits in the local temp folder (``TMPDIR``)
    and is uploaded with one ``put`` (a single object put or a completed multipart upload) when
    ``write`` returns. Either way it is removed, and ``uri`` left as it was, when ``write``
    raises. ``suffix`` ends the temporary name (np.save adds ".npy" to a path without it).
    """
    fs, path = _fs(uri)
    folder = os.path.dirname(path) or "."
    fs.makedirs(folder, exist_ok=True)
    local = isinstance(fs, LocalFileSystem)
    tmp = os.path.join(
        folder if local else tempfile.gettempdir(), f"{os.path.basename(path)}.tmp-{uuid.uuid4().hex}{suffix}"
    )
    try:
        write(tmp)
        if local:
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)
            fs.invalidate_cache(folder)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(uri: str, data: bytes) -> None:
    def write(target: str) -> None:
        with open(target, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(uri, write)


def atomic_write_json(uri: str, value: Any, indent: int | None = None) -> None:
    atomic_write_bytes(uri, json.dumps(value, indent=indent).encode())


def atomic_write_parquet(frame: pl.DataFrame, uri: str) -> None:
    """Write ``frame`` to ``uri`` so that readers see the old file or the new one."""
    atomic_write(uri, frame.write_parquet)


def atomic_save_npy(array: np.ndarray, uri: str) -> None:
    """``np.save`` to ``uri`` so that readers see the old file or the new one."""
    atomic_write(uri, lambda target: np.save(target, array), suffix=".npy")


def read_parquet(uri: str, columns: list[str] | None = None) -> pl.DataFrame:
    with open_read(uri) as f:
        return pl.read_parquet(f, columns=columns)


def iter_parquet(uri: str, columns: list[str] | None = None) -> Iterator[pl.DataFrame]:
    """A parquet file's ``columns`` a batch at a time (at most a row group: pyarrow's
    ``iter_batches``), never the whole file in memory."""
    import pyarrow.parquet as pq

    with open_read(uri) as f:
        for batch in pq.ParquetFile(f).iter_batches(columns=columns):
            yield pl.from_arrow(batch)


class NpyRows:
    """Rows of an ``.npy`` file on a remote filesystem, read on use: ``x[a:b]`` is one ranged
    read of rows a..b. The object-store counterpart of ``np.load(path, mmap_mode="r")`` for
    code that reads contiguous row blocks (shape, dtype, len, slices, np.asarray)."""

    def __init__(self, uri: str):
        fs, path = _fs(uri)
        with fs.open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        if fortran or dtype.hasobject or not shape:
            raise ValueError(f"{uri}: rows can only be read from a C-ordered numeric array with at least one dimension")
        self.uri, self._fs, self._path, self._offset = uri, fs, path, offset
        self.shape, self.dtype = tuple(shape), dtype
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            row = int(key) + (len(self) if key < 0 else 0)
            return self[row : row + 1][0]
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"{self.uri}: only contiguous row slices x[a:b] are read from an object store, got {key!r}")
        start, stop, _ = key.indices(len(self))
        stop = max(start, stop)
        if stop == start:
            return np.empty((0, *self.shape[1:]), self.dtype)
        begin = self._offset + start * self._row_bytes
        data = self._fs.cat_file(self._path, start=begin, end=begin + (stop - start) * self._row_bytes)
        return np.frombuffer(data, self.dtype).reshape(stop - start, *self.shape[1:])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


def load_npy(uri: str, mmap: bool = True) -> np.ndarray | NpyRows:
    """An ``.npy`` array. With ``mmap`` rows are read on use: memory-mapped when the file is
    local, :class:`NpyRows` (ranged reads) on a remote filesystem; else read whole."""
    fs, path = _fs(uri)
    if not fs.exists(path):
        raise _missing(uri)
    if isinstance(fs, LocalFileSystem):
        return np.load(path, mmap_mode="r" if mmap else None)
    if mmap:
        return NpyRows(uri)
    with fs.open(path, "rb") as f:
        return np.load(f)


def load_npz(uri: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file (no pickles)."""
    with open_read(uri) as f, np.load(f, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def list_files(folder: str, pattern: str = "*") -> list[str]:
    """Files directly under ``folder`` matching the glob ``pattern``, sorted, spelled as
    ``folder`` is (a local path, ``file://`` or ``s3://...`` URI: what the other helpers and
    fsspec open)."""
    fs, path = _fs(folder)
    fs.invalidate_cache(path)  # another process (img2dataset) may have written there since
    path = path.rstrip("/")
    found = sorted(p for p in fs.glob(f"{path}/{pattern}") if fs.isfile(p))
    return [join(folder, p[len(path) + 1 :]) for p in found]


def list_entries(folder: str, pattern: str = "*") -> list[str]:
    """Files and folders directly under ``folder`` matching ``pattern``, sorted, spelled as
    ``folder`` is; [] when ``folder`` does not exist."""
    fs, path = _fs(folder)
    fs.invalidate_cache(path)
    path = path.rstrip("/")
    return [join(folder, p.rstrip("/")[len(path) + 1 :]) for p in sorted(fs.glob(f"{path}/{pattern}"))]


def remove(uri: str) -> None:
    """Delete a file, or a folder with everything under it; nothing when it is absent."""
    fs, path = _fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def copy(src: str, dst: str) -> None:
    """Copy the file ``src`` to ``dst`` (same filesystem: a server-side copy on object stores)."""
    fs, path = _fs(src)
    fs.copy(path, _fs(dst)[1])


def move(src: str, dst: str) -> None:
    """Rename the file ``src`` to ``dst`` (same filesystem)."""
    fs, path = _fs(src)
    fs.mv(path, _fs(dst)[1])


def size(uri: str) -> int:
    """The size of a file in bytes."""
    fs, path = _fs(uri)
    return int(fs.size(path))


def fsspec_env() -> dict[str, str]:
    """fsspec's configuration of this process (``fsspec.config.conf``: endpoints, credentials)
    as ``FSSPEC_<PROTOCOL>`` variables, for child processes that open the same URIs."""
    out = {}
    for proto, options in fsspec.config.conf.items():
        try:
            out[f"FSSPEC_{proto.upper()}"] = json.dumps(options)
        except TypeError:  # an option that is not JSON (a credentials object): set it in the child's own config
            continue
    return out


class FolderBusyError(RuntimeError):
    """Another process is writing the same versioned folder."""


@contextmanager
def writer_lock(folder: str) -> Iterator[None]:
    """Hold the one writer's lock of a versioned folder (``<folder>/.writer.lock``), or raise
    FolderBusyError at once naming the holder: a second writer's commit would delete the first
    one's version while it is being written. Local folders only (an object store has no lock:
    there one run per partition at a time is dagster.yaml's ``tag_concurrency_limits``)."""
    import fcntl

    root = local_path(folder)
    if root is None:
        yield
        return
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, ".writer.lock")
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise FolderBusyError(
                f"{folder} is being written by {holder}; wait for it to finish (or cancel it), then run again"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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
    fs.invalidate_cache(path)
    names = {p: p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)}
    versions = sorted(p for p, n in names.items() if n.startswith("v-") and n != name)
    for old in versions[: max(0, len(versions) - keep_old)]:
        fs.rm(old, recursive=True)


def current_version_dir(folder: str) -> str:
    """The folder of the current version; raises if none was committed yet."""
    fs, path = _fs(join(folder, CURRENT))
    if not fs.exists(path):
        raise FileNotFoundError(f"no committed version under {folder} (materialise the upstream asset first)")
    return join(folder, json.loads(fs.cat_file(path))["version"])
