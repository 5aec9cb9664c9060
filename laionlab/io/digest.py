"""What identifies data without keeping it: a digest of a table's rows, a fingerprint of a file
or folder from its listing (size and the filesystem's change markers). Asset data versions and
the parts sensor are built from these (asset_defs/lineage.py)."""

from __future__ import annotations

import hashlib
import json

import polars as pl

from laionlab.io.files import _fs, _missing

__all__ = ["fingerprint", "frame_digest"]


def fingerprint(uri: str) -> str:
    """What identifies the current contents of a file or folder without reading them: for a
    file its size and whichever change marker the filesystem keeps (modification time, ETag,
    checksum, generation); for a folder the same for every file under it, with relative
    paths. Equal fingerprints mean "not changed since"; a different one means "re-read it"."""
    fs, path = _fs(uri)
    fs.invalidate_cache(path)
    if not fs.exists(path):
        raise _missing(uri)

    def marker(info: dict) -> list:
        keys = (
            "size",
            "mtime",
            "ETag",
            "etag",
            "LastModified",
            "last_modified",
            "md5Hash",
            "crc32c",
            "generation",
            "version_id",
        )
        return [[k, str(info[k])] for k in keys if info.get(k) is not None]

    if fs.isdir(path):
        root = path.rstrip("/")
        entries = fs.find(root, detail=True)
        described = [[name[len(root) + 1 :], marker(info)] for name, info in sorted(entries.items())]
    else:
        described = marker(fs.info(path))
    return hashlib.sha1(json.dumps(described).encode()).hexdigest()


def frame_digest(frame: pl.DataFrame) -> str:
    """A digest of a table's schema and rows in order (polars' row hash: stable within one
    polars version, so an upgrade may report a change once, never miss one)."""
    digest = hashlib.sha1(json.dumps([[c, str(t)] for c, t in frame.schema.items()]).encode())
    if frame.height:
        digest.update(frame.hash_rows(seed=0).to_numpy().tobytes())
    return digest.hexdigest()
