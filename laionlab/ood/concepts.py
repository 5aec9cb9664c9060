"""Concept distributions of image sets (seed 000: Roth & Hebart, "How to sample the world
for understanding the visual system", CCN 2025, section "concept distribution").

The seed asked Gemini for keywords per image and compared the keyword distribution of each
sampling strategy's subset with that of the pool; here the keywords of an image are whatever
the caller supplies, e.g. the wnids or lemmas that :mod:`laionlab.laionet.match` finds in its
caption. An image counts once per distinct keyword, so a concept's count is the number of
images that mention it; the distribution is those counts normalised to sum to one.

:func:`caption_concepts` gives each image the names of the ILSVRC synsets its caption names
(LAIONet's lemma matching), and :func:`strategy_concept_table` compares each stimulus set's
concepts with the pool's, one row per sampling strategy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from laionlab.validate import int_at_least, real

__all__ = [
    "caption_concepts",
    "compare_distributions",
    "concept_counts",
    "concept_distribution",
    "strategy_concept_table",
]

# Added to every probability (then renormalised) before KL and log ratios, so a concept the
# pool lacks does not make KL(subset || pool) infinite.
DEFAULT_SMOOTHING = 1e-6


def _keyword_series(name: str, keyword_lists) -> pl.Series:
    if isinstance(keyword_lists, pl.Series):
        if keyword_lists.dtype != pl.List(pl.String):
            raise ValueError(f"{name}: expected a List(String) series, got dtype {keyword_lists.dtype}")
        return keyword_lists
    if isinstance(keyword_lists, (str, bytes)) or not isinstance(keyword_lists, Sequence):
        raise ValueError(f"{name}: expected a list of keyword lists, got {type(keyword_lists).__name__}")
    if any(isinstance(kws, (str, bytes)) for kws in keyword_lists):
        raise ValueError(f"{name}: expected a list of keyword lists, got a string where a list belongs")
    try:
        return pl.Series(name, keyword_lists, dtype=pl.List(pl.String), strict=True)
    except (TypeError, pl.exceptions.PolarsError) as err:
        raise ValueError(f"{name}: expected lists of str ({err})") from None


def _counts(name: str, keyword_lists) -> tuple[pl.DataFrame, int]:
    """(concept, count) sorted by count desc then concept, and the number of images.
    A null image or null keyword counts as no keyword."""
    series = _keyword_series(name, keyword_lists)
    counts = (
        pl.DataFrame({"concept": series})
        .with_row_index("image")
        .explode("concept")
        .drop_nulls("concept")
        .unique(["image", "concept"])
        .group_by("concept")
        .agg(pl.len().cast(pl.Int64).alias("count"))
        .sort(["count", "concept"], descending=[True, False])
    )
    return counts, series.len()


def concept_counts(keyword_lists: Sequence[Sequence[str]] | pl.Series) -> dict[str, int]:
    """Number of images whose keyword list holds each concept (duplicates within an image
    count once), most frequent first. Divide by ``len(keyword_lists)`` for the share of
    images per concept."""
    counts, _ = _counts("keyword_lists", keyword_lists)
    return dict(zip(counts["concept"].to_list(), counts["count"].to_list()))


def concept_distribution(keyword_lists: Sequence[Sequence[str]] | pl.Series) -> dict[str, float]:
    """The concept distribution: :func:`concept_counts` normalised to sum to one, most
    frequent first. Empty if no image has a keyword."""
    counts, _ = _counts("keyword_lists", keyword_lists)
    total = counts["count"].sum()
    return {c: n / total for c, n in zip(counts["concept"].to_list(), counts["count"].to_list())}


def _entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log2(nz)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


def _kl_bits(p: np.ndarray, q: np.ndarray) -> float:
    nz = p > 0
    with np.errstate(divide="ignore"):
        return float((p[nz] * (np.log2(p[nz]) - np.log2(q[nz]))).sum())


def compare_distributions(
    subset: Sequence[Sequence[str]] | pl.Series,
    pool: Sequence[Sequence[str]] | pl.Series,
    smoothing: float = DEFAULT_SMOOTHING,
    *,
    top: int = 10,
) -> dict:
    """How the concept distribution of ``subset`` differs from that of ``pool``.

    ``subset``, ``pool``: keyword lists, one per image. Both distributions live on the union
    of their concepts. Entropies and the Jensen-Shannon distance use the observed
    distributions; KL and log ratios use ``(p + smoothing) / (1 + K * smoothing)`` over the
    K concepts of the union (``smoothing=0`` gives KL = inf when the subset has a concept the
    pool lacks). All logarithms are base 2, so entropy is in bits and the JS distance
    (``sqrt`` of the JS divergence, as ``scipy.spatial.distance.jensenshannon(base=2)``) is
    in [0, 1]: 0 for identical, 1 for disjoint distributions.

    Returns a dict with ``n_images_subset``, ``n_images_pool``, ``n_concepts_subset``,
    ``n_concepts_pool``, ``n_pool_concepts_covered`` (pool concepts present in the subset),
    ``pool_coverage`` (their share of the pool's concepts), ``entropy_subset_bits``,
    ``entropy_pool_bits``, ``kl_subset_pool_bits`` (KL(subset || pool)), ``js_distance``,
    and ``over_represented`` / ``under_represented``: up to ``top`` concepts with the largest
    / smallest ``log2_ratio`` = log2(p_subset / p_pool) (smoothed; ties by name), each a dict
    with ``concept``, ``log2_ratio``, ``p_subset``, ``p_pool`` (observed). Over-represented
    concepts have ratio > 0, under-represented ones < 0.
    """
    smoothing = real("smoothing", smoothing, lo=0.0)
    top = int_at_least("top", top, 0)
    sub_counts, n_sub = _counts("subset", subset)
    pool_counts, n_pool = _counts("pool", pool)
    if sub_counts.height == 0:
        raise ValueError("subset: expected at least one image with a keyword")
    if pool_counts.height == 0:
        raise ValueError("pool: expected at least one image with a keyword")

    table = (
        pool_counts.rename({"count": "n_pool"})
        .join(sub_counts.rename({"count": "n_subset"}), on="concept", how="full", coalesce=True)
        .with_columns(pl.col("n_pool", "n_subset").fill_null(0))
        .sort("concept")
    )
    p = table["n_subset"].to_numpy().astype(np.float64)
    q = table["n_pool"].to_numpy().astype(np.float64)
    p /= p.sum()
    q /= q.sum()
    k = len(p)
    ps = (p + smoothing) / (1.0 + k * smoothing)
    qs = (q + smoothing) / (1.0 + k * smoothing)

    m = 0.5 * (p + q)
    js_div = 0.5 * _kl_bits(p, m) + 0.5 * _kl_bits(q, m)
    with np.errstate(divide="ignore"):
        log_ratio = np.log2(ps) - np.log2(qs)

    concepts = table["concept"].to_list()

    def ranked(order: np.ndarray, keep) -> list[dict]:
        rows = [i for i in order if keep(log_ratio[i])][:top]
        return [
            {
                "concept": concepts[i],
                "log2_ratio": float(log_ratio[i]),
                "p_subset": float(p[i]),
                "p_pool": float(q[i]),
            }
            for i in rows
        ]

    # Stable sort over name-sorted rows: ties keep alphabetical order.
    over = np.argsort(-log_ratio, kind="stable")
    under = np.argsort(log_ratio, kind="stable")
    n_covered = int(((p > 0) & (q > 0)).sum())
    return {
        "n_images_subset": n_sub,
        "n_images_pool": n_pool,
        "n_concepts_subset": sub_counts.height,
        "n_concepts_pool": pool_counts.height,
        "n_pool_concepts_covered": n_covered,
        "pool_coverage": n_covered / pool_counts.height,
        "entropy_subset_bits": _entropy_bits(p),
        "entropy_pool_bits": _entropy_bits(q),
        "kl_subset_pool_bits": _kl_bits(ps, qs),
        "js_distance": float(np.sqrt(min(max(js_div, 0.0), 1.0))),
        "over_represented": ranked(over, lambda r: r > 0),
        "under_represented": ranked(under, lambda r: r < 0),
    }


def caption_concepts(pool: pl.DataFrame, synsets: pl.DataFrame, case_sensitive: bool = True) -> pl.DataFrame:
    """The concepts each image's caption names: the names of the synsets whose unique lemmas
    it contains (:func:`laionlab.laionet.match_lemmas_frame`, the LAIONet seed's rule).

    Args:
        pool: ``uid`` and ``TEXT`` (the caption, null allowed) of the images.
        synsets: ``wnid``, ``lemmas`` and ``name``, the concept's name (e.g.
            :func:`laionlab.io.imagenet.ilsvrc_synsets`).
        case_sensitive: match lemmas case-sensitively (the seed).

    Returns:
        ``uid``, ``concepts`` (list of str, empty when the caption names no synset), in the
        order of ``pool``.
    """
    from laionlab.laionet.match import match_lemmas_frame, unique_lemma_map

    for name, frame, columns in (("pool", pool, ["uid", "TEXT"]), ("synsets", synsets, ["wnid", "lemmas", "name"])):
        if not isinstance(frame, pl.DataFrame) or set(columns) - set(frame.columns):
            got = frame.columns if isinstance(frame, pl.DataFrame) else type(frame).__name__
            raise ValueError(f"{name}: expected a polars DataFrame with columns {columns}, got {got}")
    lemmas = unique_lemma_map(synsets)
    names = dict(zip(synsets["wnid"].to_list(), synsets["name"].to_list()))
    matched = match_lemmas_frame(pool["TEXT"], lemmas.lemma_to_wnid, case_sensitive=case_sensitive)
    return pool.select("uid").with_columns(
        matched["wnids"].list.eval(pl.element().replace_strict(names, default=pl.element())).alias("concepts")
    )


def strategy_concept_table(
    sets: pl.DataFrame, keywords: pl.DataFrame, smoothing: float = DEFAULT_SMOOTHING, top_over: int = 3
) -> pl.DataFrame:
    """Each stimulus set's concept distribution against the pool's (:func:`compare_distributions`).

    Args:
        sets: ``strategy`` and ``uid`` of every chosen image (a stimulus-sets table).
        keywords: ``uid``, ``concepts`` of the pool (:func:`caption_concepts`); a chosen image
            not in it has no concept.
        smoothing: additive smoothing of KL and log ratios.
        top_over: over-represented concepts listed per strategy.

    Returns:
        One row per strategy, in order of appearance: ``strategy``, ``images``, ``concepts``,
        ``pool_coverage``, ``entropy_bits``, ``kl_to_pool_bits``, ``js_distance`` and
        ``top_over`` (the most over-represented concepts, comma-separated).

    Raises:
        ValueError: missing columns, or a set or the pool without any concept.
    """
    for name, frame, columns in (("sets", sets, ["strategy", "uid"]), ("keywords", keywords, ["uid", "concepts"])):
        if not isinstance(frame, pl.DataFrame) or set(columns) - set(frame.columns):
            got = frame.columns if isinstance(frame, pl.DataFrame) else type(frame).__name__
            raise ValueError(f"{name}: expected a polars DataFrame with columns {columns}, got {got}")
    top_over = int_at_least("top_over", top_over, 0)
    joined = sets.select("strategy", "uid").join(keywords.select("uid", "concepts"), on="uid", how="left")
    rows = []
    for strategy in joined["strategy"].unique(maintain_order=True).to_list():
        subset = joined.filter(pl.col("strategy") == strategy)["concepts"].fill_null([])
        c = compare_distributions(subset, keywords["concepts"], smoothing=smoothing)
        rows.append(
            {
                "strategy": strategy,
                "images": c["n_images_subset"],
                "concepts": c["n_concepts_subset"],
                "pool_coverage": c["pool_coverage"],
                "entropy_bits": c["entropy_subset_bits"],
                "kl_to_pool_bits": c["kl_subset_pool_bits"],
                "js_distance": c["js_distance"],
                "top_over": ", ".join(o["concept"] for o in c["over_represented"][:top_over]),
            }
        )
    return pl.DataFrame(rows)
