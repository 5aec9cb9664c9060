"""Running SWAT's sampling end to end for one target (seed 003: Liu et al., "Few-Shot
Recognition via Stage-Wise Retrieval-Augmented Finetuning", CVPR 2025; public code
tian1327/SWAT, ``retrieval/sample_retrieval.py``): the few-shot images grouped by class, every
requested method run on the same candidates, and the per-class cap on what is downloaded.

* :func:`fewshot_embeddings`: a labelled reference dataset's image embeddings grouped by the
  target's classes (the seed keeps 16 few-shot images per class for I2T/I2I).
* :func:`sample_all_methods`: :func:`~laionlab.swat.rank.rank_samples` for each method, one
  frame; :func:`~laionlab.swat.export.write_swat_lists` then writes one list per method.
* :func:`cap_per_class`: at most N matched rows per class, seeded (the seed's downloader
  samples a class's matches at random when it has more than it downloads).

Nothing here imports Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.swat.rank import (
    _SPECS,
    DEFAULT_N_PER_CLASS,
    I2I_THRESHOLD,
    I2T_THRESHOLD,
    METHODS,
    MIN_RANK_SCORE,
    T2I_THRESHOLD,
    rank_samples,
)
from laionlab.swat.synonyms import ClassKey, ClassSynonyms

__all__ = [
    "cap_per_class",
    "check_methods",
    "fewshot_class",
    "fewshot_embeddings",
    "needs_fewshot",
    "sample_all_methods",
]

# Classes named in an error message before "...".
_SHOWN_CLASSES = 10


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list, checked: a non-empty list of :data:`METHODS` names, none twice."""
    if isinstance(methods, str) or not isinstance(methods, Sequence) or len(methods) == 0:
        raise ValueError(f"methods: expected a non-empty list of {', '.join(METHODS)}, got {methods!r}")
    unknown = [m for m in methods if m not in _SPECS]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; choose from {list(METHODS)}")
    twice = sorted({m for m in methods if list(methods).count(m) > 1})
    if twice:
        raise ValueError(f"methods: {twice} given more than once (each method writes one list)")
    return list(methods)


def needs_fewshot(methods: Sequence[str]) -> bool:
    """Whether any of ``methods`` scores against few-shot images (I2T/I2I ranking or threshold)."""
    return any(kind is not None and kind.startswith("I") for m in check_methods(methods) for kind in _SPECS[m])


def _known(synonyms: Mapping[ClassKey, ClassSynonyms]) -> str:
    shown = [f"{k!r} ({s.name})" for k, s in list(synonyms.items())[:_SHOWN_CLASSES]]
    more = f", ... ({len(synonyms)} classes)" if len(synonyms) > _SHOWN_CLASSES else ""
    return ", ".join(shown) + more


def fewshot_class(
    label: str, synonyms: Mapping[ClassKey, ClassSynonyms], label_map: Mapping[str, ClassKey] | None = None
) -> ClassKey | None:
    """The class a few-shot image's dataset label stands for.

    ``label_map[label]`` when the label is mapped (a target's ``fewshot_labels``): a class key,
    its string form (``"3"`` for class 3) or a class name; a value naming no class raises
    ``ValueError`` naming the label and the known classes. An unmapped label is the class whose
    key (as a string) or name equals it, or None: the image belongs to no class of the target.
    """
    by_key = {str(k): k for k in synonyms}
    by_name: dict[str, ClassKey] = {}
    for k, s in synonyms.items():
        by_name.setdefault(s.name, k)
    if label_map and label in label_map:
        value = label_map[label]
        key = by_key.get(str(value), by_name.get(value) if isinstance(value, str) else None)
        if key is None:
            raise ValueError(
                f"fewshot_labels: label {label!r} maps to {value!r}, which is no class of the target; "
                f"known classes: {_known(synonyms)}"
            )
        return key
    return by_key.get(str(label), by_name.get(label))


def fewshot_embeddings(
    labels: Sequence[str] | pl.Series,
    emb: np.ndarray,
    synonyms: Mapping[ClassKey, ClassSynonyms],
    label_map: Mapping[str, ClassKey] | None = None,
) -> dict[ClassKey, np.ndarray]:
    """The few-shot image embeddings of each class.

    Args:
        labels: ``(m,)`` dataset label of each few-shot image (e.g. a wnid).
        emb: ``(m, d)`` their image embeddings, L2-normalised.
        synonyms: the target's classes (key → :class:`ClassSynonyms`).
        label_map: dataset label → class (:func:`fewshot_class`); labels not in it are matched
            to class keys and names.

    Returns:
        class → ``(m_c, d)`` float32, in the order of ``synonyms``, only classes with images
        (images whose label is no class are dropped). Raises ``ValueError`` when no image
        belongs to any class, or a mapped label names no class.
    """
    labels = list(labels)
    emb = validate.matrix("emb", emb)
    if emb.shape[0] != len(labels):
        raise ValueError(f"emb: expected one row per label ({len(labels)}), got {emb.shape[0]}")
    if not isinstance(synonyms, Mapping) or not synonyms:
        raise ValueError("synonyms: expected a non-empty mapping class -> ClassSynonyms")
    class_of = {label: fewshot_class(label, synonyms, label_map) for label in dict.fromkeys(labels)}
    rows: dict[ClassKey, list[int]] = {}
    for i, label in enumerate(labels):
        if class_of[label] is not None:
            rows.setdefault(class_of[label], []).append(i)
    if not rows:
        seen = ", ".join(repr(x) for x in list(class_of)[:_SHOWN_CLASSES])
        raise ValueError(
            f"labels: no few-shot label ({seen}{', ...' if len(class_of) > _SHOWN_CLASSES else ''}) is a class key or "
            f"name of the target ({_known(synonyms)}); map them with fewshot_labels"
        )
    return {k: np.asarray(emb[rows[k]], np.float32) for k in synonyms if k in rows}


def sample_all_methods(
    methods: Sequence[str],
    classes_of_rows,
    text_emb=None,
    image_emb=None,
    prompt_emb: Mapping[ClassKey, np.ndarray] | None = None,
    fewshot_emb: Mapping[ClassKey, np.ndarray] | None = None,
    n_per_class: int = DEFAULT_N_PER_CLASS,
    *,
    t2i_threshold: float = T2I_THRESHOLD,
    i2t_threshold: float = I2T_THRESHOLD,
    i2i_threshold: float = I2I_THRESHOLD,
    fewshot_filter: Literal["max", "mean"] = "max",
    seed: int = 0,
    min_rank_score: float | None = MIN_RANK_SCORE,
) -> pl.DataFrame:
    """Every method's picks from the same candidates: :func:`~laionlab.swat.rank.rank_samples`
    per method (same arguments; ``methods`` checked by :func:`check_methods`), concatenated in
    the order of ``methods``: ``row``, ``class``, ``score``, ``rank``, ``method``. A row picked
    by several methods appears once per method; ``pick["row"].unique()`` is what to export."""
    frames = [
        rank_samples(
            method,
            classes_of_rows,
            text_emb,
            image_emb,
            prompt_emb,
            fewshot_emb,
            n_per_class,
            t2i_threshold=t2i_threshold,
            i2t_threshold=i2t_threshold,
            i2i_threshold=i2i_threshold,
            fewshot_filter=fewshot_filter,
            seed=seed,
            min_rank_score=min_rank_score,
        )
        for method in check_methods(methods)
    ]
    return pl.concat(frames)


def cap_per_class(matches: pl.DataFrame, max_per_class: int, seed: int = 0) -> pl.DataFrame:
    """Each class draws at most ``max_per_class`` of its rows, uniformly at random (seeded);
    the rows any class drew are kept.

    ``matches``: :func:`~laionlab.swat.match.match_synonyms`-style rows with a unique ``uid``
    and their ``classes`` (a list). A row of several classes is drawn for each class
    independently and kept when any class draws it, so a class can hold more than
    ``max_per_class`` kept rows (rows drawn for another class it also names); the result
    has at most ``max_per_class`` × classes rows. Returns the kept rows in input order.
    """
    if not isinstance(matches, pl.DataFrame) or {"uid", "classes"} - set(matches.columns):
        raise ValueError("matches: expected a DataFrame with columns 'uid' and 'classes'")
    max_per_class = validate.int_at_least("max_per_class", max_per_class, 1)
    seed = validate.int_at_least("seed", seed, 0)
    chosen = (
        matches.select("uid", "classes")
        .explode("classes")
        .drop_nulls("classes")
        .sample(fraction=1.0, shuffle=True, seed=seed)
        .group_by("classes", maintain_order=True)
        .head(max_per_class)["uid"]
    )
    return matches.filter(pl.col("uid").is_in(chosen.implode()))
