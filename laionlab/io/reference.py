"""Reference (evaluation / neuroscience) image datasets described by a YAML catalog.

A catalog lists datasets by name; each has a ``kind``:

- ``image_folder``: files matching ``glob`` under ``path``; the label is the parent folder
  (the THINGS layout ``images/<concept>/*.jpg``).
- ``hdf5``: an array of images in an HDF5 file (NSD's ``nsd_stimuli.hdf5``, dataset
  ``imgBrick``, uint8 N×H×W×3), read in slices so the file is never loaded whole.
- ``parquet``: a table with an image path/URL column and optional label / caption columns.

Example::

    datasets:
      things:
        kind: image_folder
        path: /data/things/images
        glob: "*/*.jpg"
      nsd:
        kind: hdf5
        path: /data/nsd/nsd_stimuli.hdf5
        dataset: imgBrick

Each sample gets ``uid = "<dataset>:<index:09d>"`` (index in the dataset's sorted order).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import fsspec
import numpy as np
import polars as pl
import torch
import yaml
from PIL import Image

KINDS = ("image_folder", "hdf5", "parquet")


class CatalogError(ValueError):
    """A catalog entry is malformed or points at something that is not there."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    path: str
    glob: str = "*/*.jpg"
    dataset: str = "imgBrick"
    image_column: str = "path"
    label_column: str | None = None
    caption_column: str | None = None
    expected_size: tuple[int, int] | None = None  # (H, W): refuse images of another size
    responses: str | None = None  # .npz of neural responses to the images (see load_responses)
    description: str = ""
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Check that the entry points at something readable (cheap: no image decoded)."""
        where = f"catalog dataset {self.name!r}"
        if self.kind not in KINDS:
            raise CatalogError(f"{where}: kind must be one of {KINDS}, got {self.kind!r}")
        if not Path(self.path).exists():
            raise CatalogError(f"{where}: path does not exist: {self.path}")
        if self.kind == "image_folder" and not any(Path(self.path).glob(self.glob)):
            raise CatalogError(f"{where}: no file matches {self.glob!r} under {self.path}")
        if self.kind == "hdf5":
            import h5py

            with h5py.File(self.path, "r") as f:
                if self.dataset not in f:
                    raise CatalogError(
                        f"{where}: HDF5 file {self.path} has no dataset {self.dataset!r} (has {list(f.keys())})"
                    )
                shape, dtype = f[self.dataset].shape, f[self.dataset].dtype
                if len(shape) != 4 or shape[-1] != 3:
                    raise CatalogError(f"{where}: {self.path}:{self.dataset} has shape {shape}, expected N×H×W×3")
                if dtype != np.uint8:  # a cast would make floats in [0, 1] black images
                    raise CatalogError(
                        f"{where}: {self.path}:{self.dataset} holds {dtype}, expected uint8 pixels (0-255); "
                        "convert it, "
                        "e.g. (x * 255).round().astype('uint8') for floats in [0, 1]"
                    )
        if self.responses is not None:
            load_responses(self)
        if self.kind == "parquet":
            columns = pl.read_parquet_schema(self.path)
            for col in (self.image_column, self.label_column, self.caption_column):
                if col is not None and col not in columns:
                    raise CatalogError(f"{where}: {self.path} has no column {col!r} (has {list(columns)})")


def _local(path: str | Path, what: str) -> Path:
    """Reference datasets and their catalog are local files (a plain path or ``file://``); an
    object-store URI is refused by name rather than looked up as a relative path."""
    text = str(path)
    if "://" not in text:
        return Path(text)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    raise CatalogError(
        f"{what} {text} is not on a local filesystem: the catalog and reference datasets are read from local "
        "files (copy or mount them); only the data root and LanceDB may be object-store URIs"
    )


def load_catalog(path: str | Path, validate: bool = True) -> dict[str, DatasetSpec]:
    """Parse a catalog file and (``validate``) check that every entry points at something
    readable; relative paths are relative to the catalog. Without ``validate`` only the file's
    structure is checked, so a caller can check one entry (``DatasetSpec.validate``) and one bad
    entry does not block the others."""
    path = _local(path, "dataset catalog")
    if not path.exists():
        raise CatalogError(f"dataset catalog not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    entries = raw.get("datasets")
    if not isinstance(entries, dict) or not entries:
        raise CatalogError(f"{path}: expected a mapping 'datasets: {{name: {{kind, path, ...}}}}'")
    specs = {}
    known = set(DatasetSpec.__dataclass_fields__) - {"name", "extra"}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or "kind" not in entry or "path" not in entry:
            raise CatalogError(f"{path}: dataset {name!r} needs at least 'kind' and 'path'")
        entry = dict(entry)
        for key in ("path", "responses"):
            if entry.get(key) is not None:
                local = _local(entry[key], f"{path}: dataset {name!r} {key}")
                entry[key] = str(local if local.is_absolute() else (path.parent / local).resolve())
        if entry.get("expected_size") is not None:
            entry["expected_size"] = tuple(entry["expected_size"])
        extra = {k: v for k, v in entry.items() if k not in known}
        spec = DatasetSpec(name=str(name), **{k: v for k, v in entry.items() if k in known}, extra=extra)
        if validate:
            spec.validate()
        specs[str(name)] = spec
    return specs


RESPONSE_KEYS = ("betas", "session", "stimulus_ids")


def load_responses(spec: DatasetSpec) -> dict[str, np.ndarray]:
    """Neural responses of a dataset: an ``.npz`` with ``betas`` (trials, voxels; int16 ×300 as
    NSD stores them, or float), ``session`` (trials,), ``stimulus_ids`` (trials,) = index of the
    shown image in the dataset's order, and optionally ``ncsnr`` (voxels,)."""
    where = f"catalog dataset {spec.name!r}"
    if spec.responses is None:
        raise CatalogError(f"{where} has no responses")
    if not Path(spec.responses).exists():
        raise CatalogError(f"{where}: responses file does not exist: {spec.responses}")
    with np.load(spec.responses, allow_pickle=False) as data:
        missing = [k for k in RESPONSE_KEYS if k not in data]
        if missing:
            raise CatalogError(f"{where}: {spec.responses} lacks arrays {missing} (has {list(data.keys())})")
        out = {k: data[k] for k in data.keys()}
    trials = len(out["betas"])
    if not (len(out["session"]) == len(out["stimulus_ids"]) == trials):
        raise CatalogError(f"{where}: betas, session and stimulus_ids must have one row per trial in {spec.responses}")
    return out


@dataclass
class ReferenceItems:
    """The samples of a dataset, in order: a source string per sample (file path or
    ``file.hdf5[i]``), its label and caption (or None)."""

    sources: list[str]
    labels: list[str | None]
    captions: list[str | None]

    def frame(self, name: str) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "uid": [f"{name}:{i:09d}" for i in range(len(self.sources))],
                "dataset": [name] * len(self.sources),
                "index": np.arange(len(self.sources), dtype=np.int64),
                "source": self.sources,
                "label": self.labels,
                "caption": self.captions,
            },
            schema_overrides={"label": pl.String, "caption": pl.String},
        )


def list_items(spec: DatasetSpec) -> ReferenceItems:
    if spec.kind == "image_folder":
        files = sorted(Path(spec.path).glob(spec.glob))
        return ReferenceItems([str(f) for f in files], [f.parent.name for f in files], [None] * len(files))
    if spec.kind == "hdf5":
        import h5py

        with h5py.File(spec.path, "r") as f:
            n = f[spec.dataset].shape[0]
        return ReferenceItems([f"{spec.path}[{i}]" for i in range(n)], [None] * n, [None] * n)
    table = pl.read_parquet(spec.path)
    n = table.height
    labels = table[spec.label_column].cast(pl.String).to_list() if spec.label_column else [None] * n
    captions = table[spec.caption_column].cast(pl.String).to_list() if spec.caption_column else [None] * n
    return ReferenceItems(table[spec.image_column].cast(pl.String).to_list(), labels, captions)


class ReferenceImages(torch.utils.data.IterableDataset):
    """Yields ``(preprocessed image, uid)`` for every sample of a dataset, split across
    DataLoader workers by index; HDF5 images are read ``chunk`` rows at a time."""

    def __init__(self, spec: DatasetSpec, preprocess, chunk: int = 256, indices=None):
        """``indices``: only these samples (ascending dataset indices), e.g. a seeded subsample."""
        self.spec, self.preprocess, self.chunk = spec, preprocess, chunk
        self.n = len(list_items(spec).sources)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.n):
            raise ValueError(f"dataset {spec.name!r}: indices out of range 0..{self.n - 1}")

    def _check_size(self, img: Image.Image, source: str) -> None:
        if self.spec.expected_size is not None and (img.height, img.width) != tuple(self.spec.expected_size):
            raise ValueError(
                f"dataset {self.spec.name!r}: image {source} is {img.height}×{img.width}, "
                f"expected {self.spec.expected_size[0]}×{self.spec.expected_size[1]} (expected_size in the catalog)"
            )

    def _images(self, lo: int, hi: int, step: int) -> Iterator[tuple[int, Image.Image, str]]:
        if self.spec.kind == "hdf5":
            import h5py

            with h5py.File(self.spec.path, "r") as f:
                data = f[self.spec.dataset]
                for start in range(lo, hi, self.chunk * step):
                    block = data[start : min(start + self.chunk * step, hi)]
                    for j in range(0, len(block), step):
                        yield (
                            start + j,
                            Image.fromarray(np.asarray(block[j], dtype=np.uint8)),
                            f"{self.spec.path}[{start + j}]",
                        )
            return
        sources = list_items(self.spec).sources
        for i in range(lo, hi, step):
            with fsspec.open(sources[i], "rb") as fh:
                data = fh.read()
            try:
                img = Image.open(io.BytesIO(data))
                img.load()
            except Exception as exc:
                raise ValueError(f"dataset {self.spec.name!r}: cannot decode image {sources[i]}: {exc}") from exc
            yield i, img, sources[i]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if self.indices is None:
            samples = self._images(wid, self.n, nw)
        else:
            samples = (s for i in self.indices[wid::nw] for s in self._images(int(i), int(i) + 1, 1))
        for i, img, source in samples:
            self._check_size(img, source)
            yield self.preprocess(img.convert("RGB")), f"{self.spec.name}:{i:09d}"
