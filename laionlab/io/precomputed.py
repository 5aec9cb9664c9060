"""Import of precomputed embeddings in the clip-retrieval / LAION release layout.

The layout (clip-retrieval's ``clip_inference`` output, and the LAION-400M / LAION-5B
embedding releases)::

    <root>/img_emb/img_emb_0017.npy        (n, d) float16/float32
    <root>/text_emb/text_emb_0017.npy      (n, d), optional
    <root>/metadata/metadata_0017.parquet  n rows, same order (url, caption, ...)

Row i of the three files is the same sample. A part key maps to its files by its trailing
integer (``part-00017`` and ``metadata_0017`` both → 17); rows get the uid
``<part>:<row>`` exactly as laion_metadata assigns it, so the import joins with the
metadata of the same part when the metadata folder is the LaionSource.

``root`` may be a local folder or an fsspec URI (``s3://.../laion5b-embeddings``): the arrays
are read in row blocks (memory-mapped locally, ranged reads on an object store), never whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from laionlab.io import files as storage
from laionlab.io.lance import embeddings_batch
from laionlab.io.metadata import make_uid


@dataclass(frozen=True)
class PrecomputedFiles:
    image: str
    text: str | None
    metadata: str

    @property
    def rows(self) -> int:
        return int(storage.load_npy(self.image, mmap=True).shape[0])


def part_index(part: str) -> int:
    match = re.search(r"(\d+)$", part)
    if match is None:
        raise ValueError(f"part key {part!r} has no trailing number to find its img_emb_XXXX.npy by")
    return int(match.group(1))


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _by_index(folder: str, prefix: str, suffix: str, index: int) -> str | None:
    found = storage.list_files(folder, f"{prefix}*{suffix}") if storage.exists(folder) else []
    hits = [p for p in found if re.fullmatch(rf"{prefix}0*{index}{re.escape(suffix)}", _name(p))]
    if len(hits) > 1:
        raise ValueError(f"several files in {folder} for index {index}: {[_name(h) for h in hits]}")
    return hits[0] if hits else None


def find_precomputed(root: str, part: str) -> PrecomputedFiles:
    """The three files of ``part`` under ``root`` (local or fsspec URI); errors name what is missing."""
    root = str(root)
    index = part_index(part)
    image = _by_index(storage.join(root, "img_emb"), "img_emb_", ".npy", index)
    text = _by_index(storage.join(root, "text_emb"), "text_emb_", ".npy", index)
    meta = _by_index(storage.join(root, "metadata"), "metadata_", ".parquet", index)
    if image is None or meta is None:
        raise FileNotFoundError(
            f"precomputed embeddings for part {part!r} (index {index}) not found under {root}: "
            f"need img_emb/img_emb_{index:04d}.npy and metadata/metadata_{index:04d}.parquet "
            f"(found image={image}, metadata={meta})"
        )
    files = PrecomputedFiles(image, text, meta)
    n_img = files.rows
    with storage.open_read(meta) as f:
        n_meta = pq.ParquetFile(f).metadata.num_rows
    if n_meta != n_img:
        raise ValueError(f"{image} has {n_img} rows but {meta} has {n_meta}: files are not aligned")
    if text is not None:
        n_text = storage.load_npy(text, mmap=True).shape
        if n_text[0] != n_img:
            raise ValueError(f"{text} has {n_text[0]} rows but {image} has {n_img}")
    return files


def _unit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float32)
    norm = np.linalg.norm(x, axis=1)
    return x / np.maximum(norm, 1e-12)[:, None], norm


def iter_precomputed(
    files: PrecomputedFiles, part: str, model: str, batch_rows: int = 65_536, start: int = 0, stop: int | None = None
) -> Iterator[pa.RecordBatch]:
    """Stream rows ``start..stop-1`` of the files (default: all; a partition cut from a big
    file) as embeddings-table batches (memory-mapped, ``batch_rows`` at a time), with uids
    ``<part>:<file row>``. Vectors are re-normalised in float32; a part without text embeddings gets NaN-free zero
    text vectors is not allowed, so text_emb is required for the table (clip_score needs it)."""
    # row blocks read into memory one batch at a time (ranged reads, local or remote), not a
    # memory map, whose touched pages of a 13M-row release file would count in the step's RSS
    image = storage.NpyRows(files.image)
    if files.text is None:
        raise FileNotFoundError(f"text embeddings missing for {files.image} (text_emb/ folder); clip_score needs them")
    text = storage.NpyRows(files.text)
    if image.shape[1] != text.shape[1]:
        raise ValueError(f"image dim {image.shape[1]} != text dim {text.shape[1]} in {files.image} / {files.text}")
    end = image.shape[0] if stop is None else min(stop, image.shape[0])
    for a in range(start, end, batch_rows):
        b = min(a + batch_rows, end)
        img, img_norm = _unit(np.asarray(image[a:b]))
        txt, txt_norm = _unit(np.asarray(text[a:b]))
        uids = [make_uid(part, row) for row in range(a, b)]
        yield embeddings_batch(uids, part, model, img, txt, img_norm, txt_norm)
