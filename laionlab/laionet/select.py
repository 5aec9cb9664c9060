"""Which LAION rows make LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet Look Unlike
LAION", TMLR 2025; public code alishiraliGit/eval-on-laion, ``scripts/createdataset/
label_laion.py``, ``scripts/createdataset/sample_laion_from_most_similars.py``).

The seed's rules, in its order:

1. **single synset** — a caption whose lemmas name more than one ILSVRC synset is dropped
   before any similarity is computed (:func:`single_synset`);
2. **NSFW** — only ``NSFW == "UNLIKELY"`` is kept (the seed since Dec 2024; ``UNSURE``,
   ``NSFW`` and a missing value are dropped);
3. **text in the image** — the seed's optional OCR step drops rows whose image shows the class
   name as text (a boolean column, ``wnid_is_in_recognized_text``; a missing value is kept);
4. **threshold** — caption-to-synset CLIP text similarity strictly above 0.82
   (``similarity > 0.82``; a row at exactly 0.82 or without a similarity is dropped).

:func:`select_laionet` applies all four to one frame and counts what each drops. The 0.82
is calibrated on OpenAI CLIP ViT-B/32's text tower (open_clip ``ViT-B-32`` / ``openai``);
:func:`threshold_warning` says when another text model meets that threshold.

Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from laionlab import validate
from laionlab.laionet.stats import LAIONET_THRESHOLD

__all__ = [
    "DEFAULT_NSFW_KEEP",
    "LAIONET_COLUMNS",
    "PAPER_TEXT_MODEL",
    "TEXT_IN_IMAGE_COLUMN",
    "LaionetSelection",
    "check_threshold",
    "is_paper_text_model",
    "label_map",
    "laionet_table",
    "select_laionet",
    "single_synset",
    "threshold_warning",
]

# The seed keeps NSFW == "UNLIKELY" only (sample_laion_from_most_similars.py since Dec 2024).
DEFAULT_NSFW_KEEP: tuple[str, ...] = ("UNLIKELY",)
# The seed's OCR step's column: True when the class name is written in the image.
TEXT_IN_IMAGE_COLUMN = "wnid_is_in_recognized_text"
# The text model the paper's 0.82 was chosen with: OpenAI CLIP ViT-B/32 (open_clip names).
PAPER_TEXT_MODEL = ("ViT-B-32", "openai")
SIMILARITY_COLUMN = "text_to_name_def_wnid_similarity"
# LAIONet's published columns, in its order (the seed's name_def query names two of them).
LAIONET_COLUMNS = [
    "SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity",
    "name_def_wnid", SIMILARITY_COLUMN, "wnid", "uid",
]  # fmt: skip


def single_synset(matches: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Rows matched to exactly one synset, with that synset as ``wnid``.

    Args:
        matches: a frame with ``wnids`` (list of str: the synsets the caption's lemmas name,
            e.g. ``lemma_matches``); other columns are kept.

    Returns:
        ``(single, dropped)``: the rows with ``len(wnids) == 1`` plus a ``wnid`` column, in
        input order, and the number of rows with two or more synsets (rows with none are
        neither kept nor counted).
    """
    _require(matches, "matches", ["wnids"])
    n = pl.col("wnids").list.len()
    dropped = int(matches.select((n > 1).sum()).item())
    single = matches.filter(n == 1).with_columns(wnid=pl.col("wnids").list.first())
    return single, dropped


@dataclass(frozen=True)
class LaionetSelection:
    """:func:`select_laionet`'s result.

    rows: the LAIONet rows, sorted by ``wnid``, ``uid``.
    eligible: the rows that passed rules 1–3 (the threshold not applied yet): what the
        size-vs-threshold curve sweeps.
    counts: ``candidates``, ``dropped_multi_synset``, ``dropped_nsfw``,
        ``dropped_text_in_image``, ``dropped_at_or_below_threshold`` (a null similarity
        included), ``kept``; each row is counted once, by the first rule that drops it.
    text_in_image_checked: whether the text-in-image column existed (rule 3 applied).
    """

    rows: pl.DataFrame
    eligible: pl.DataFrame
    counts: dict[str, int]
    text_in_image_checked: bool


def select_laionet(
    frame: pl.DataFrame,
    threshold: float = LAIONET_THRESHOLD,
    nsfw_keep: Sequence[str] | None = DEFAULT_NSFW_KEEP,
    text_in_image_column: str | None = TEXT_IN_IMAGE_COLUMN,
    similarity_column: str = SIMILARITY_COLUMN,
) -> LaionetSelection:
    """The seed's LAIONet rules on candidate rows (see the module docstring).

    Args:
        frame: one row per matched caption: ``uid``, ``wnids`` (list of str, every synset the
            caption's lemmas name), ``similarity_column`` (float, null where not scored),
            ``NSFW`` (str or null; needed unless ``nsfw_keep`` is None) and optionally the
            ``text_in_image_column`` (bool or null). Other columns are kept.
        threshold: keep ``similarity > threshold`` (strict), in [-1, 1] (seed: 0.82).
        nsfw_keep: the ``NSFW`` values kept (seed: ``("UNLIKELY",)``; a null NSFW is never
            kept); None keeps every row.
        text_in_image_column: rows where this column is True are dropped when the frame has
            it; None never applies the rule.
        similarity_column: the caption-to-synset similarity column.

    Returns:
        :class:`LaionetSelection`; ``rows`` has a ``wnid`` column (the single synset).

    Raises:
        ValueError: a threshold outside [-1, 1], a missing column, or ``nsfw_keep`` not a
            list of strings.
    """
    threshold = check_threshold(threshold)
    needed = ["uid", "wnids", similarity_column] + (["NSFW"] if nsfw_keep is not None else [])
    _require(frame, "frame", needed)
    counts = {"candidates": frame.height}
    rows, counts["dropped_multi_synset"] = single_synset(frame)
    before = rows.height
    if nsfw_keep is not None:
        keep = _strings("nsfw_keep", nsfw_keep)
        rows = rows.filter(pl.col("NSFW").is_in(keep).fill_null(False))
    counts["dropped_nsfw"] = before - rows.height
    checked = bool(text_in_image_column) and text_in_image_column in rows.columns
    before = rows.height
    if checked:
        rows = rows.filter(~pl.col(text_in_image_column).cast(pl.Boolean).fill_null(False))
    counts["dropped_text_in_image"] = before - rows.height
    kept = rows.filter((pl.col(similarity_column) > threshold).fill_null(False)).sort("wnid", "uid")
    counts["dropped_at_or_below_threshold"] = rows.height - kept.height
    counts["kept"] = kept.height
    return LaionetSelection(kept, rows, counts, checked)


def laionet_table(
    rows: pl.DataFrame, query: str = "name_def", similarity_column: str = SIMILARITY_COLUMN
) -> pl.DataFrame:
    """LAIONet rows with LAIONet's columns (:data:`LAIONET_COLUMNS`, in order), then ``lemmas``
    and ``text_model`` where ``rows`` has them; other columns are dropped.

    Args:
        rows: :func:`select_laionet`'s ``rows`` joined with the LAION metadata: every column of
            :data:`LAIONET_COLUMNS`, except that for a ``query`` other than ``name_def`` the
            query text is ``<query>_wnid`` and the similarity ``similarity_column``.
        query: the synset query kind the similarity was computed with.
        similarity_column: the column holding that similarity.

    Returns:
        The frame, with a non-name_def query's text and similarity also under LAIONet's names
        (``name_def_wnid``, ``text_to_name_def_wnid_similarity``): the names are LAIONet's,
        the query actually used is recorded by the caller.
    """
    if query != "name_def":
        rows = rows.with_columns(
            pl.col(f"{query}_wnid").alias("name_def_wnid"),
            pl.col(similarity_column).alias(SIMILARITY_COLUMN),
        )
    return rows.select(LAIONET_COLUMNS + [c for c in ("lemmas", "text_model") if c in rows.columns])


def label_map(rows: pl.DataFrame) -> dict[str, list[int]]:
    """LAIONet's label file: wnid → row numbers of ``rows`` (0-based), classes in order of
    first appearance (the seed's ``wnid2laionindices``, as JSON-ready lists)."""
    _require(rows, "rows", ["wnid"])
    labels = rows.with_row_index("index").group_by("wnid", maintain_order=True).agg(pl.col("index"))
    return {w: [int(i) for i in idx] for w, idx in zip(labels["wnid"].to_list(), labels["index"].to_list())}


def check_threshold(threshold: float, name: str = "threshold") -> float:
    """A cosine-similarity threshold, in [-1, 1]."""
    value = validate.real(name, threshold)
    if not -1.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} is not a cosine similarity: expected a value in [-1, 1]")
    return value


def is_paper_text_model(model_id: str) -> bool:
    """Whether a model id (``<open_clip name>/<pretrained tag>``, the id stored with every
    score) is OpenAI CLIP ViT-B/32, the model the paper's 0.82 was calibrated on. open_clip
    reads ``ViT-B/32`` as ``ViT-B-32``; a local checkpoint (``ckpt:...``) cannot be told apart
    from any other weights, so it is not the paper's."""
    name, _, weights = str(model_id).rpartition("/")
    name = name.replace("/", "-").removesuffix(
        "-quickgelu"
    )  # open_clip's name for the same OpenAI weights with QuickGELU
    return name == PAPER_TEXT_MODEL[0] and weights.lower() == PAPER_TEXT_MODEL[1]


def threshold_warning(threshold: float, text_models: Iterable[str]) -> str | None:
    """A warning when the paper's threshold (0.82) is applied to similarities of a text model
    other than the paper's (its cosines have another scale), else None."""
    others = sorted({m for m in text_models if not is_paper_text_model(m)})
    if threshold != LAIONET_THRESHOLD or not others:
        return None
    return (
        f"threshold {threshold} is the paper's, calibrated on OpenAI CLIP ViT-B/32's text tower "
        f"({'/'.join(PAPER_TEXT_MODEL)}), but the similarities come from {', '.join(others)}: set "
        "LAIONLAB_LAIONET_TEXT_MODEL=ViT-B-32 LAIONLAB_LAIONET_TEXT_PRETRAINED=openai for the paper's LAIONet, "
        "or choose a threshold for this model (see the size-vs-threshold curve)"
    )


def _require(frame, name: str, columns: list[str]) -> None:
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"{name}: expected a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing} (has {frame.columns})")


def _strings(name: str, values) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise ValueError(f"{name}: expected a list of strings or None, got {values!r}")
    values = list(values)
    if not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name}: expected strings, got {values!r}")
    return values
