"""Image galleries: a seeded, bounded choice of rows, their thumbnails read back from the
webdataset shards by uid, laid out as one contact sheet (rows of labelled tiles).

What researchers look at first — the images of a LAIONet class, what a filter kept and
dropped, a stimulus set, a duplicate beside the row it copies — drawn from the shards
``laion_images`` wrote, never from all of LAION: ``pick`` bounds the rows (``groups ×
per_group``), ``fetch_thumbnails`` streams only the shards of the parts those rows come from
and keeps only the wanted uids, shrunk to thumbnails as they are read. ``sheet_rows`` lays out
groups (a row each), ``pair_rows`` pairs (a row holds a few left ↔ right pairs), ``pick_cells``
a row × column grid (retrieval methods × classes). ``contact_sheet`` draws the sheet with
matplotlib (JPEG through ``laionlab.figures``).
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from PIL import Image

from laionlab.io.metadata import uid_part
from laionlab.io.shards import iter_shard_images

log = logging.getLogger(__name__)

THUMB = 112


@dataclass(frozen=True)
class Tile:
    """One image of a sheet: ``uid`` and the label printed under it (caption, score...)."""

    uid: str
    label: str = ""


def pick(
    frame: pl.DataFrame,
    group: str,
    groups: int = 8,
    per_group: int = 6,
    seed: int = 0,
    order: Sequence[str] | None = None,
) -> pl.DataFrame:
    """At most ``per_group`` rows of each of at most ``groups`` values of column ``group``.

    Groups: the largest first (ties by value), or those listed in ``order``. Rows within a
    group: a seeded uniform choice, kept in the frame's order. Deterministic for a given
    frame and seed.
    """
    if group not in frame.columns:
        raise ValueError(f"group: {group!r} is not a column of the frame ({frame.columns})")
    if groups < 1 or per_group < 1:
        raise ValueError(f"groups and per_group must be >= 1, got {groups} and {per_group}")
    if frame.height == 0:
        return frame
    if order is None:
        sizes = frame.group_by(group).len().sort(["len", group], descending=[True, False])
        chosen = sizes[group].head(groups).to_list()
    else:
        present = set(frame[group].to_list())
        chosen = [g for g in order if g in present][:groups]
    rng = np.random.default_rng(seed)
    parts = []
    for value in chosen:
        rows = frame.filter(pl.col(group) == value)
        if rows.height > per_group:
            keep = np.sort(rng.choice(rows.height, per_group, replace=False))
            rows = rows[keep.tolist()]
        parts.append(rows)
    return pl.concat(parts)


def sheet_rows(
    shown: pl.DataFrame, group: str, label: str, names: Mapping[str, str] | None = None, uid: str = "uid"
) -> list[tuple[str, list[Tile]]]:
    """``pick``'s frame as ``contact_sheet`` rows: one per value of ``group`` (titled
    ``"<name> (<value>)"`` when ``names`` has it), a tile per row labelled by column ``label``."""
    names = names or {}
    rows = []
    for (value,), members in shown.group_by(group, maintain_order=True):
        title = f"{names[value]} ({value})" if value in names else str(value)
        labels = ["" if v is None else str(v) for v in members[label].to_list()]
        rows.append((title, [Tile(u, text) for u, text in zip(members[uid].to_list(), labels)]))
    return rows


def sample_rows(frame: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """At most ``n`` rows of ``frame``: a seeded uniform choice, kept in the frame's order."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if frame.height <= n:
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(frame.height, n, replace=False))
    return frame[keep.tolist()]


def pick_cells(
    frame: pl.DataFrame,
    row: str,
    column: str,
    columns: int = 3,
    per_cell: int = 2,
    seed: int = 0,
    order: Sequence[str] | None = None,
) -> pl.DataFrame:
    """A grid: for every value of ``row`` (those in ``order``, in that order, or all, sorted),
    at most ``per_cell`` rows of each of ``columns`` values of ``column`` — the same values for
    every row, a seeded choice among all, sorted. Rows come out by row value, then column
    value; within a cell a seeded choice in the frame's order (``pick``)."""
    for name in (row, column):
        if name not in frame.columns:
            raise ValueError(f"{name!r} is not a column of the frame ({frame.columns})")
    if columns < 1 or per_cell < 1:
        raise ValueError(f"columns and per_cell must be >= 1, got {columns} and {per_cell}")
    if frame.height == 0:
        return frame
    values = sorted(frame[column].unique().to_list())
    rng = np.random.default_rng(seed)
    chosen = sorted(values[i] for i in rng.choice(len(values), min(columns, len(values)), replace=False))
    rows = list(order) if order is not None else sorted(frame[row].unique().to_list())
    cell = pl.concat_str(pl.col(row).cast(pl.String), pl.lit("\x1f"), pl.col(column).cast(pl.String))
    framed = frame.filter(pl.col(column).is_in(chosen)).with_columns(cell.alias("_cell"))
    cells = [f"{r}\x1f{c}" for r in rows for c in chosen]
    return pick(framed, "_cell", len(cells), per_cell, seed, order=cells).drop("_cell") if framed.height else framed


def pair_rows(
    pairs: pl.DataFrame,
    left: str,
    right: str,
    left_label: str,
    right_label: str,
    per_row: int = 2,
    title: str = "",
) -> list[tuple[str, list[Tile]]]:
    """``contact_sheet`` rows of pairs: each pair's left tile (uid column ``left``, labelled by
    column ``left_label``) then its right tile (``right``, ``right_label``), ``per_row`` pairs
    a row, every row titled ``title`` (e.g. "copy ↔ kept"). A pair with a null right uid keeps
    its left tile and a blank "missing" one."""
    if per_row < 1:
        raise ValueError(f"per_row must be >= 1, got {per_row}")
    missing = {left, right, left_label, right_label} - set(pairs.columns)
    if missing:
        raise ValueError(f"pairs: missing columns {sorted(missing)} (has {pairs.columns})")
    tiles = []
    for a, b, la, lb in pairs.select(left, right, left_label, right_label).iter_rows():
        tiles.append((Tile(a, "" if la is None else str(la)), Tile(b or "", "" if lb is None else str(lb))))
    return [(title, [tile for pair in tiles[i : i + per_row] for tile in pair]) for i in range(0, len(tiles), per_row)]


def row_uids(rows: Sequence[tuple[str, Sequence[Tile]]]) -> list[str]:
    """The distinct uids of a sheet's tiles, in order (what ``fetch_thumbnails`` reads)."""
    return list(dict.fromkeys(tile.uid for _, tiles in rows for tile in tiles if tile.uid))


def fetch_thumbnails(
    shards_of_part: Callable[[str], Sequence[str]],
    uids: Sequence[str],
    part_of: Callable[[str], str] = uid_part,
    size: int = THUMB,
) -> dict[str, Image.Image]:
    """uid → RGB thumbnail (longer side ``size``) of each uid found in its part's shards.

    ``shards_of_part(part)`` lists a part's tar shards; ``part_of(uid)`` names a uid's part
    (the project's uids are ``<part>:<row>``). Only the parts of ``uids`` are read, each
    shard once, keeping only the wanted samples; a uid not found (a failed download) is
    simply absent — the sheet shows a blank tile for it.
    """
    by_part: dict[str, set[str]] = {}
    for uid in uids:
        by_part.setdefault(part_of(uid), set()).add(uid)
    out: dict[str, Image.Image] = {}
    for part, wanted in by_part.items():
        for sample in iter_shard_images(shards_of_part(part), wanted):
            thumb = sample.image.convert("RGB")
            thumb.thumbnail((size, size))
            out[sample.uid] = thumb
            if len(out) == len(uids):
                return out
    missing = len(set(uids) - set(out))
    if missing:
        log.info("gallery: %d of %d images not in the shards (failed downloads)", missing, len(uids))
    return out


def reference_thumbnails(spec, indices: Sequence[int], size: int = THUMB) -> dict[str, Image.Image]:
    """``"<dataset>:<index>"`` (reference_embeddings' uid) → RGB thumbnail of the samples
    ``indices`` of catalog dataset ``spec`` (a :class:`laionlab.io.reference.DatasetSpec`),
    read through :class:`laionlab.io.reference.ReferenceImages`: only those samples (an
    image file each, or those rows of the HDF5 array)."""
    from laionlab.io.reference import ReferenceImages

    def thumbnail(image: Image.Image) -> Image.Image:
        image.thumbnail((size, size))
        return image

    wanted = sorted({int(i) for i in indices})
    return dict((uid, image) for image, uid in ReferenceImages(spec, thumbnail, chunk=1, indices=wanted))


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[Tile]]],
    images: Mapping[str, Image.Image],
    title: str,
    size: int = THUMB,
    label_chars: int = 24,
):
    """A matplotlib Figure: one row of tiles per ``(row label, tiles)``, the row label at the
    left, each tile's label (wrapped to ``label_chars`` per line, two lines at most) under it;
    a uid without an image is a grey tile marked "missing"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("contact_sheet: no rows to draw")
    columns = max(len(tiles) for _, tiles in rows) or 1
    inch = size / 72
    fig, axes = plt.subplots(
        len(rows),
        columns + 1,
        figsize=(1.6 + columns * inch * 1.1, len(rows) * inch * 1.45 + 0.6),
        gridspec_kw={"width_ratios": [1.6 / inch] + [1] * columns},
        squeeze=False,
    )
    blank = np.full((size, size, 3), 200, np.uint8)
    for r, (row_label, tiles) in enumerate(rows):
        axes[r][0].text(0.95, 0.5, "\n".join(textwrap.wrap(str(row_label), 18)[:4]), ha="right", va="center")
        for c in range(columns + 1):
            axes[r][c].axis("off")
        for c, tile in enumerate(tiles, start=1):
            image = images.get(tile.uid)
            axes[r][c].imshow(np.asarray(image) if image is not None else blank)
            label = tile.label if image is not None else f"missing {tile.label}"
            lines = textwrap.wrap(label, label_chars)[:2]
            axes[r][c].set_title("\n".join(lines), fontsize=6, y=-0.05, va="top")
    height = fig.get_figheight()
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / height)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.45 / height, bottom=0.3 / height, wspace=0.05, hspace=0.45)
    return fig
