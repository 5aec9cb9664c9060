"""LAIONet's statistics: intra-class similarity, per-class recall with Wilson intervals,
equally- and LAION-weighted accuracy, and the text-threshold sweep (seed 001: Shirali &
Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025; public code
alishiraliGit/eval-on-laion).

What the seed's code does, and what is reproduced here:

* **Intra-class similarity** (``scripts/calcsimilarity/calc_image_image_similarity*`` and
  ``notebooks/compare_intra_class_similarites_of_laionet_vs_others.ipynb``): per class,
  L2-normalised image embeddings ``E`` of at most 100 images (``--do_sample --n_sample 100``
  keeps the **first** 100 of the class's index list, here ``mode="seed_compat"``; ImageNet-val
  uses all 50), ``S = E·Eᵀ``,
  and the pair vector is the strict lower triangle of ``S`` (``vec``:
  ``x[np.tril(np.eye(n) < 0.5)]``, row-major order), here
  :func:`lower_triangle_similarities`. Per class the notebook records ``mean`` and the
  half-width ``1.96 * np.std(sims) / np.sqrt(len(sims) - 1)`` (``np.std``: ddof = 0, divided
  by ``√(n_pairs − 1)``, as written; :func:`intra_class_similarity`). Classes with fewer
  than 7 pairs in either set are skipped; the difference of means LAIONet − ImageNet gets the
  half-width ``sqrt(err_a² + err_b²)``, and a class is *significantly lower* when the upper
  bound is < 0, *significantly higher* when the lower bound is > 0
  (:func:`compare_intra_class`). Paper / notebook, CLIP ViT-B/32 on 872 classes: mean lower
  for 66.4 %, significantly lower for 57.6 % (502), significantly higher for 27.9 % (243).
  The notebook's histograms read the same stored per-class matrices (of the sampled images):
  each class contributes ``min(#pairs, 100)`` of its pair similarities resampled with
  replacement (:func:`intra_class_pairs`; :func:`compare_intra_class_sets` does both sets).
* **Per-class recall** (``utils/calc_utils.calc_recall_per_y``): recall = top-k correct /
  images with a prediction; standard error ``(hi − lo) / 2 / 1.96`` from the 95 % Wilson
  interval (``statsmodels proportion_confint(method='wilson', alpha=0.05)``, whose critical
  value is ``norm.isf(0.025) = 1.9599639845400545``, while the divisor is the rounded 1.96;
  both kept). :func:`wilson_interval` is statsmodels' formula (statsmodels is not a
  dependency), :func:`per_class_recall` the table.
* **Accuracy** (``calc_utils.combine_recalls``): ``Σ w_c·recall_c / Σ w_c`` with standard
  error ``sqrt(Σ (se_c·w_c)²) / Σ w_c`` over the classes with a recall; "equally weighted":
  ``w_c = 1``; "LAION weighted" (``plot_accuracy_of_laionet_vs_imagenet.ipynb``,
  ``calc_laion_acc``): ``w_c = n_c / Σ n`` from the full LAIONet label dict, a class missing
  from it weighing 0 (``wnid2p.get(wnid, 0)``). :func:`weighted_accuracy`,
  :func:`laion_weights`.
* **Threshold choice** (``choose_text_query_similarity_threshold.ipynb``): number of rows and
  of classes left as the caption-to-query similarity threshold sweeps
  ``linspace(0.5, 0.9, 20)``; LAIONet keeps ``similarity > 0.82``
  (``sample_laion_from_most_similars.py``). :func:`threshold_curve`.

All functions are numpy/polars in, polars out; nothing here imports Dagster.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.labels import label_array

__all__ = [
    "DEFAULT_HIST_PAIRS_PER_CLASS",
    "DEFAULT_MIN_PAIRS",
    "DEFAULT_N_PER_CLASS",
    "LAIONET_THRESHOLD",
    "THRESHOLD_SWEEP",
    "WILSON_Z",
    "Z95",
    "SAMPLE_MODES",
    "IntraClassComparison",
    "class_sample",
    "class_samples",
    "compare_intra_class",
    "compare_intra_class_sets",
    "intra_class_pairs",
    "intra_class_similarity",
    "laion_weights",
    "lower_triangle_similarities",
    "per_class_recall",
    "threshold_curve",
    "weighted_accuracy",
    "wilson_interval",
]

# "seed_compat" is the seed's first-n-per-class rule (the name); "first" is its alias.
SampleMode = Literal["random", "seed_compat", "first"]
SAMPLE_MODES: tuple[str, ...] = ("random", "seed_compat", "first")

# The seed's 1.96 (calc_utils.z, and the intra-class notebook's half-width).
Z95 = 1.96
# statsmodels' Wilson critical value at alpha = 0.05: scipy.stats.norm.isf(0.025).
WILSON_Z = 1.9599639845400545
# Images per class for intra-class similarity (seed: --do_sample --n_sample 100).
DEFAULT_N_PER_CLASS = 100
# Pairs a class needs in both sets to be compared (notebook: len(sims) < 7 is skipped).
DEFAULT_MIN_PAIRS = 7
# Pair similarities each class contributes to the histograms (notebook: min(#pairs, 100)).
DEFAULT_HIST_PAIRS_PER_CLASS = 100
# LAIONet's caption-to-query CLIP similarity threshold (kept: similarity > 0.82).
LAIONET_THRESHOLD = 0.82
# The threshold-choice notebook's sweep: np.linspace(0.5, 0.9, 20).
THRESHOLD_SWEEP: tuple[float, ...] = tuple(float(t) for t in np.linspace(0.5, 0.9, 20))
# Tolerance on row norms: float16 CLIP embeddings are unit norm only to ~1e-3.
NORM_TOL = 1e-2


# --- intra-class similarity ----------------------------------------------------------------


def lower_triangle_similarities(emb: np.ndarray) -> np.ndarray:
    """Cosine similarities of all pairs of rows: the strict lower triangle of ``E·Eᵀ``.

    Args:
        emb: ``(n, d)`` embeddings with L2-normalised rows (norm within 1e-2 of 1), n >= 1.

    Returns:
        ``(n (n − 1) / 2,)`` float32, pairs ``(i, j)`` with ``i > j`` in row-major order
        (``(1,0), (2,0), (2,1), (3,0), ...``), the order of the seed's boolean-mask ``vec``.

    Raises:
        ValueError: ``emb`` not a finite real 2-D array, or a row not of unit norm.
    """
    E = _unit_rows("emb", emb)
    n = E.shape[0]
    S = E @ E.T
    return S[np.tril_indices(n, k=-1)]


def class_sample(
    indices: Sequence | np.ndarray,
    n: int,
    mode: SampleMode = "random",
    seed: int | np.random.SeedSequence | np.random.Generator | None = 0,
) -> np.ndarray:
    """Up to ``n`` members of one class, in their original order.

    ``mode="seed_compat"`` (alias ``"first"``) is the seed's rule (``indices[:n]``, the first
    ``n`` of the class's index list); ``mode="random"`` draws ``n`` without replacement with
    ``np.random.default_rng(seed)`` and keeps the drawn members in their original order.
    A class with at most ``n`` members is returned whole in both modes.

    Args:
        indices: the class's members (row numbers, LAION indices, ...), 1-D.
        n: the most to keep, >= 1.
        mode: ``"random"``, ``"seed_compat"`` or ``"first"`` (the same as ``"seed_compat"``).
        seed: anything ``np.random.default_rng`` takes (``"random"`` only).

    Returns:
        1-D array, a subsequence of ``indices``.
    """
    a = np.asarray(indices)
    if a.ndim != 1:
        raise ValueError(f"indices: expected a 1-D sequence, got shape {a.shape}")
    n = validate.int_at_least("n", n, 1)
    mode = _check_mode(mode)
    if a.size <= n:
        return a.copy()
    if mode == "first":
        return a[:n].copy()
    picked = np.random.default_rng(seed).choice(a.size, size=n, replace=False)
    return a[np.sort(picked)]


def class_samples(
    labels: Sequence | np.ndarray,
    n_per_class: int | None = DEFAULT_N_PER_CLASS,
    mode: SampleMode = "random",
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The rows intra-class similarity uses: per class, up to ``n_per_class`` of its rows.

    The rows of a class are taken in the order of ``labels`` and sampled with
    :func:`class_sample`; ``mode="random"`` seeds each class with
    ``SeedSequence([seed, crc32(str(label))])``, so a class's sample does not depend on which
    other classes are present.

    Args:
        labels: ``(n,)`` class of each row: integers or strings, no nulls.
        n_per_class: rows kept per class (seed: 100); ``None`` keeps all.
        mode: ``"random"``, ``"seed_compat"`` (the seed's first ``n_per_class``) or ``"first"``.
        seed: base seed for ``"random"``, >= 0.

    Returns:
        ``(classes, rows)``: the sorted distinct labels and, per class, the int64 row numbers
        kept (increasing).
    """
    lab = label_array("labels", labels)
    if n_per_class is not None:
        n_per_class = validate.int_at_least("n_per_class", n_per_class, 1)
    mode = _check_mode(mode)
    seed = validate.int_at_least("seed", seed, 0)
    classes, inverse = np.unique(lab, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=classes.size))[:-1])
    if n_per_class is not None:
        groups = [
            class_sample(idx, n_per_class, mode, np.random.SeedSequence([seed, zlib.crc32(str(label).encode())]))
            for label, idx in zip(classes, groups)
        ]
    return classes, [g.astype(np.int64) for g in groups]


def intra_class_similarity(
    emb: np.ndarray,
    labels: Sequence | np.ndarray,
    n_per_class: int | None = DEFAULT_N_PER_CLASS,
    mode: SampleMode = "random",
    seed: int = 0,
) -> pl.DataFrame:
    """Mean pairwise cosine similarity inside each class, with the seed's 95 % interval.

    Per class: the rows of :func:`class_samples` (up to ``n_per_class``), all pairs
    (:func:`lower_triangle_similarities`, float32), then in float64 ``mean``,
    ``sd = np.std(sims)`` (ddof = 0, as the seed) and
    ``lo, hi = mean ∓ 1.96 · sd / √(n_pairs − 1)`` (the seed's half-width, as written).
    Memory per class is ``O(n_per_class²)``, whatever the class size.

    ``mode="seed_compat"`` (alias ``"first"``) is the seed's rule when rows are ordered as the
    seed's class index lists (it keeps the first 100). ``mode="random"`` is seeded per class
    (see :func:`class_samples`).

    Args:
        emb: ``(n, d)`` L2-normalised embeddings (rows not sampled are not read).
        labels: ``(n,)`` class of each row: integers or strings, no nulls.
        n_per_class: images kept per class (seed: 100); ``None`` keeps all (as the seed's
            ImageNet-val, 50 per class).
        mode: ``"random"``, ``"seed_compat"`` or ``"first"``.
        seed: base seed for ``"random"``.

    Returns:
        One row per class, sorted by label: ``label``, ``n_images`` (kept), ``n_pairs``
        (``n_images (n_images − 1) / 2``), ``mean``, ``sd``, ``lo``, ``hi``. Classes with
        fewer than 2 images have ``n_pairs = 0`` and null statistics; with one pair, ``lo``
        and ``hi`` are null (``√(n_pairs − 1) = 0``).

    Raises:
        ValueError: naming the argument: ``emb`` not 2-D/finite or a used row not of unit
            norm, ``labels`` of the wrong length or type, bad ``n_per_class`` or ``mode``.
    """
    return _intra_pass(emb, labels, n_per_class, mode, seed, pairs_per_class=0, rng=None)[0]


def intra_class_pairs(
    emb: np.ndarray,
    labels: Sequence | np.ndarray,
    n_per_class: int | None = DEFAULT_N_PER_CLASS,
    mode: SampleMode = "random",
    seed: int = 0,
    pairs_per_class: int | None = DEFAULT_HIST_PAIRS_PER_CLASS,
    rng: int | np.random.Generator | None = 0,
) -> np.ndarray:
    """Pair similarities for the intra-class similarity histogram, as the seed's notebook.

    Per class (in label order), the pairs of the same sample :func:`intra_class_similarity`
    uses (:func:`class_samples` with ``n_per_class``, ``mode``, ``seed``), so a class of 30k
    images costs a ``n_per_class × n_per_class`` product, not ``30k × 30k``. Each class then
    contributes ``min(#pairs, pairs_per_class)`` of its pair similarities drawn with
    replacement by ``rng`` (the notebook's resampling); ``pairs_per_class=None`` keeps every
    pair of the sample, in :func:`lower_triangle_similarities` order.

    Args:
        emb, labels, n_per_class, mode, seed: as :func:`intra_class_similarity`.
        pairs_per_class: pairs per class in the result (seed: 100), >= 1, or None for all.
        rng: seed or ``np.random.Generator`` of the resampling.

    Returns:
        1-D float32 array of pair similarities, classes concatenated.
    """
    if pairs_per_class is not None:
        pairs_per_class = validate.int_at_least("pairs_per_class", pairs_per_class, 1)
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return _intra_pass(emb, labels, n_per_class, mode, seed, pairs_per_class, generator)[1]


def _intra_pass(
    emb, labels, n_per_class, mode, seed, pairs_per_class: int | None, rng: np.random.Generator | None
) -> tuple[pl.DataFrame, np.ndarray]:
    """One pass over the classes: the statistics frame and, unless ``pairs_per_class == 0``,
    the histogram's pair sample."""
    emb = validate.matrix("emb", emb, finite=False)
    lab = label_array("labels", labels)
    if lab.shape[0] != emb.shape[0]:
        raise ValueError(f"labels: expected shape ({emb.shape[0]},) to match emb {emb.shape}, got {lab.shape}")
    classes, groups = class_samples(lab, n_per_class, mode, seed)
    rows, pairs = [], []
    for idx in groups:
        sims = _class_sims(emb, idx)
        rows.append(_pair_stats(idx.size, sims))
        if pairs_per_class != 0 and sims.size:
            if pairs_per_class is None:
                pairs.append(sims)
            else:
                pairs.append(rng.choice(sims, size=min(sims.size, pairs_per_class), replace=True))
    stats = np.array(rows, dtype=np.float64).reshape(-1, 6)
    n_img = stats[:, 0].astype(np.int64)
    frame = pl.DataFrame(
        {
            "label": pl.Series(classes.tolist(), dtype=_label_dtype(classes)),
            "n_images": n_img,
            "n_pairs": n_img * (n_img - 1) // 2,
            "mean": stats[:, 2],
            "sd": stats[:, 3],
            "lo": stats[:, 4],
            "hi": stats[:, 5],
        }
    ).with_columns(pl.col("mean", "sd", "lo", "hi").fill_nan(None))
    return frame, (np.concatenate(pairs) if pairs else np.zeros(0, np.float32))


def _class_sims(emb: np.ndarray, idx: np.ndarray) -> np.ndarray:
    if idx.size < 2:
        return np.zeros(0, np.float32)
    try:
        return lower_triangle_similarities(np.asarray(emb[idx]))
    except ValueError as err:
        # Name the row of emb, not the row of the class block.
        raise ValueError(_global_row_message(str(err), idx)) from None


def _pair_stats(n: int, sims: np.ndarray) -> tuple[float, ...]:
    if n < 2:
        return (n, 0, np.nan, np.nan, np.nan, np.nan)
    s = sims.astype(np.float64)
    mean, sd = float(s.mean()), float(s.std())
    if s.size > 1:
        half = Z95 * sd / math.sqrt(s.size - 1)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = np.nan
    return (n, s.size, mean, sd, lo, hi)


def compare_intra_class(
    a: pl.DataFrame, b: pl.DataFrame, min_pairs: int = DEFAULT_MIN_PAIRS
) -> tuple[pl.DataFrame, dict[str, float | int]]:
    """Per class, intra-class similarity of ``a`` minus that of ``b``, and the seed's test.

    Classes present in both frames with at least ``min_pairs`` pairs in each (seed: 7). With
    ``se = sd / √(n_pairs − 1)`` per frame, ``diff = mean_a − mean_b`` and
    ``lo, hi = diff ∓ 1.96 · √(se_a² + se_b²)`` (the notebook's
    ``sqrt(err_a² + err_b²)`` with ``err = 1.96 · se``).

    Args:
        a, b: outputs of :func:`intra_class_similarity` (columns ``label``, ``n_pairs``,
            ``mean``, ``sd`` at least), e.g. LAIONet and ImageNet-val; labels of one dtype.
        min_pairs: >= 2.

    Returns:
        ``(per_class, summary)``. ``per_class``, sorted by label: ``label``, ``n_pairs_a``,
        ``n_pairs_b``, ``mean_a``, ``mean_b``, ``diff``, ``lo``, ``hi``,
        ``significantly_lower`` (``hi < 0``), ``significantly_higher`` (``lo > 0``).
        ``summary``: ``n_classes``, ``n_lower`` / ``share_lower`` (``diff < 0``),
        ``n_significantly_lower`` / ``share_significantly_lower``,
        ``n_significantly_higher`` / ``share_significantly_higher``; shares are NaN when no
        class qualifies.
    """
    min_pairs = validate.int_at_least("min_pairs", min_pairs, 2)
    a = _check_intra_frame("a", a)
    b = _check_intra_frame("b", b)
    if a.schema["label"] != b.schema["label"]:
        raise ValueError(f"b: expected 'label' of dtype {a.schema['label']} as in a, got {b.schema['label']}")

    def prep(frame: pl.DataFrame, tag: str) -> pl.DataFrame:
        return frame.filter(pl.col("n_pairs") >= min_pairs).select(
            "label",
            pl.col("n_pairs").alias(f"n_pairs_{tag}"),
            pl.col("mean").alias(f"mean_{tag}"),
            (pl.col("sd") / (pl.col("n_pairs") - 1).sqrt()).alias(f"se_{tag}"),
        )

    half = Z95 * (pl.col("se_a") ** 2 + pl.col("se_b") ** 2).sqrt()
    per_class = (
        prep(a, "a")
        .join(prep(b, "b"), on="label", how="inner")
        .sort("label")
        .with_columns((pl.col("mean_a") - pl.col("mean_b")).alias("diff"))
        .with_columns((pl.col("diff") - half).alias("lo"), (pl.col("diff") + half).alias("hi"))
        .with_columns(
            (pl.col("hi") < 0).alias("significantly_lower"),
            (pl.col("lo") > 0).alias("significantly_higher"),
        )
        .select(
            "label",
            "n_pairs_a",
            "n_pairs_b",
            "mean_a",
            "mean_b",
            "diff",
            "lo",
            "hi",
            "significantly_lower",
            "significantly_higher",
        )
    )
    n = per_class.height
    counts = {
        "lower": int((per_class["diff"] < 0).sum()),
        "significantly_lower": int(per_class["significantly_lower"].sum()),
        "significantly_higher": int(per_class["significantly_higher"].sum()),
    }
    summary: dict[str, float | int] = {"n_classes": n}
    for key, count in counts.items():
        summary[f"n_{key}"] = count
        summary[f"share_{key}"] = count / n if n else float("nan")
    return per_class, summary


@dataclass(frozen=True)
class IntraClassComparison:
    """:func:`compare_intra_class_sets`'s result: ``per_class`` and ``summary`` of
    :func:`compare_intra_class`, the statistics of each set (:func:`intra_class_similarity`)
    and each set's histogram pairs (:func:`intra_class_pairs`)."""

    per_class: pl.DataFrame
    summary: dict[str, float | int]
    stats_a: pl.DataFrame
    stats_b: pl.DataFrame
    pairs_a: np.ndarray
    pairs_b: np.ndarray


def compare_intra_class_sets(
    a_emb: np.ndarray,
    a_labels: Sequence | np.ndarray,
    b_emb: np.ndarray,
    b_labels: Sequence | np.ndarray,
    *,
    n_per_class: int | None = DEFAULT_N_PER_CLASS,
    reference_per_class: int | None = None,
    mode: SampleMode = "random",
    min_pairs: int = DEFAULT_MIN_PAIRS,
    hist_pairs_per_class: int | None = DEFAULT_HIST_PAIRS_PER_CLASS,
    seed: int = 0,
) -> IntraClassComparison:
    """Intra-class similarity of set a (LAIONet) against set b (the reference, ImageNet-val).

    Each set is sampled per class (:func:`class_samples`: ``n_per_class`` for a,
    ``reference_per_class`` for b, ``None`` = all, the seed's 50 ImageNet-val images), its
    statistics and histogram pairs come from that one sample (:func:`intra_class_similarity`,
    :func:`intra_class_pairs`, one pass per set), and the classes are compared with
    :func:`compare_intra_class`. The histogram's resampling draws from
    ``np.random.default_rng(seed)``, set a first.

    Returns:
        :class:`IntraClassComparison`.
    """
    rng = np.random.default_rng(seed)
    stats_a, pairs_a = _intra_pass(a_emb, a_labels, n_per_class, mode, seed, _hist_pairs(hist_pairs_per_class), rng)
    stats_b, pairs_b = _intra_pass(
        b_emb, b_labels, reference_per_class, mode, seed, _hist_pairs(hist_pairs_per_class), rng
    )
    per_class, summary = compare_intra_class(stats_a, stats_b, min_pairs=min_pairs)
    return IntraClassComparison(per_class, summary, stats_a, stats_b, pairs_a, pairs_b)


def _hist_pairs(value: int | None) -> int | None:
    return None if value is None else validate.int_at_least("hist_pairs_per_class", value, 1)


# --- recall and accuracy -------------------------------------------------------------------


def wilson_interval(successes, n, z: float = WILSON_Z):
    """Wilson score interval for a binomial proportion, as statsmodels computes it.

    ``proportion_confint(successes, n, alpha, method="wilson")`` with ``z = norm.isf(alpha/2)``
    (default: alpha = 0.05): with ``p = successes / n``,
    ``center = (p + z²/(2n)) / (1 + z²/n)``,
    ``half = z · sqrt(p(1 − p)/n + z²/(4n²)) / (1 + z²/n)``, interval ``center ∓ half``
    (not clipped, as statsmodels). E.g. 8 of 10 → (0.490162, 0.943318).

    Args:
        successes: count(s) >= 0 (scalar or array; broadcast with ``n``).
        n: trials >= ``successes``; ``n == 0`` gives NaN bounds.
        z: critical value, > 0.

    Returns:
        ``(lo, hi)``: floats for scalar inputs, else float64 arrays of the broadcast shape.
    """
    z = validate.real("z", z, lo=0.0, lo_open=True)
    scalar = np.ndim(successes) == 0 and np.ndim(n) == 0
    k = _nonneg_array("successes", successes)
    m = _nonneg_array("n", n)
    try:
        k, m = np.broadcast_arrays(k, m)
    except ValueError:
        raise ValueError(f"successes: shape {k.shape} does not broadcast with n {m.shape}") from None
    if (k > m).any():
        raise ValueError("successes: expected successes <= n")
    empty = m == 0
    m_safe = np.where(empty, 1.0, m)
    p = k / m_safe
    z2 = z * z
    denom = 1.0 + z2 / m_safe
    center = (p + z2 / (2.0 * m_safe)) / denom
    half = z * np.sqrt(p * (1.0 - p) / m_safe + z2 / (4.0 * m_safe**2)) / denom
    lo = np.where(empty, np.nan, center - half)
    hi = np.where(empty, np.nan, center + half)
    if scalar:
        return float(lo), float(hi)
    return lo, hi


def per_class_recall(
    true: Sequence | np.ndarray,
    pred: Sequence | np.ndarray,
    classes: Sequence | np.ndarray | None = None,
) -> pl.DataFrame:
    """Recall of each class with its Wilson 95 % interval and the seed's standard error.

    A row is correct when its true label is ``pred`` (top-1) or is among its ``k`` predictions
    (top-k). Per class: ``recall = correct / n``, ``lo, hi`` = :func:`wilson_interval`, and
    ``se = (hi − lo) / 2 / 1.96`` (``calc_recall_per_y``). The seed counts only images with a
    prediction: drop rows without one before calling.

    Args:
        true: ``(n,)`` true labels, integers or strings, no nulls.
        pred: ``(n,)`` top-1 or ``(n, k)`` top-k predicted labels, of the same kind.
        classes: the classes to report, in order (unique). Rows whose true label is not among
            them are left out (e.g. ImageNet-val "projected" onto LAIONet's classes); a listed
            class with no row gets ``n = 0`` and null statistics. ``None``: the classes of
            ``true``, sorted.

    Returns:
        ``class``, ``n``, ``correct``, ``recall``, ``lo``, ``hi``, ``se``.
    """
    t = label_array("true", true)
    p = label_array("pred", pred, ndim=(1, 2))
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[0] != t.shape[0] or p.shape[1] == 0:
        raise ValueError(f"pred: expected shape ({t.shape[0]},) or ({t.shape[0]}, k>=1), got {p.shape}")
    _same_kind("pred", p, "true", t)
    if classes is None:
        cls = np.unique(t)
    else:
        cls = label_array("classes", classes)
        _same_kind("classes", cls, "true", t)
        if np.unique(cls).size != cls.size:
            raise ValueError("classes: expected unique labels")

    correct = (p == t[:, None]).any(axis=1)
    dtype = _label_dtype(cls)
    counts = (
        pl.DataFrame({"class": pl.Series(t.tolist(), dtype=dtype), "hit": correct})
        .group_by("class")
        .agg(pl.len().cast(pl.Int64).alias("n"), pl.col("hit").sum().cast(pl.Int64).alias("correct"))
    )
    frame = (
        pl.DataFrame({"class": pl.Series(cls.tolist(), dtype=dtype)})
        .join(counts, on="class", how="left", maintain_order="left")
        .with_columns(pl.col("n", "correct").fill_null(0))
    )
    n = frame["n"].to_numpy()
    k = frame["correct"].to_numpy()
    lo, hi = wilson_interval(k, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    return frame.with_columns(
        pl.Series("recall", recall),
        pl.Series("lo", lo),
        pl.Series("hi", hi),
        pl.Series("se", (hi - lo) / 2.0 / Z95),
    ).with_columns(pl.col("recall", "lo", "hi", "se").fill_nan(None))


def weighted_accuracy(recall_frame: pl.DataFrame, weights: Mapping | None = None) -> tuple[float, float]:
    """Accuracy as a weighted mean of per-class recalls, with the seed's standard error.

    ``acc = Σ w_c·recall_c / Σ w_c`` and ``se = sqrt(Σ (se_c·w_c)²) / Σ w_c`` over the classes
    of ``recall_frame`` that have a recall (null recalls are skipped, as the seed skips NaN).

    Args:
        recall_frame: :func:`per_class_recall` output (``class``, ``recall``, ``se``).
        weights: ``None`` for the paper's "equally weighted" accuracy (``w_c = 1``);
            otherwise class → weight >= 0, e.g. :func:`laion_weights` for "LAION weighted".
            Weights are normalised over the classes present; a class of the frame missing
            from ``weights`` weighs 0 (seed: ``wnid2p.get(wnid, 0)``); classes of ``weights``
            missing from the frame are ignored.

    Returns:
        ``(acc, se)``.

    Raises:
        ValueError: missing columns, no class with a recall, bad weights, or zero total
            weight on the classes present.
    """
    if not isinstance(recall_frame, pl.DataFrame):
        raise ValueError(f"recall_frame: expected a polars DataFrame, got {type(recall_frame).__name__}")
    missing = [c for c in ("class", "recall", "se") if c not in recall_frame.columns]
    if missing:
        raise ValueError(f"recall_frame: expected columns 'class', 'recall', 'se', missing {missing}")
    present = recall_frame.filter(pl.col("recall").is_not_null() & pl.col("recall").is_not_nan())
    if present.height == 0:
        raise ValueError("recall_frame: expected at least one class with a recall")
    if present["se"].is_null().any() or present["se"].is_nan().any():
        raise ValueError("recall_frame: expected an 'se' for every class with a recall")
    recall = present["recall"].to_numpy().astype(np.float64)
    se = present["se"].to_numpy().astype(np.float64)
    if weights is None:
        w = np.ones(present.height)
    else:
        if not isinstance(weights, Mapping):
            raise ValueError(f"weights: expected a mapping class -> weight or None, got {type(weights).__name__}")
        for c, v in weights.items():
            validate.real(f"weights[{c!r}]", v, lo=0.0)
        w = np.array([float(weights.get(c, 0.0)) for c in present["class"].to_list()])
    total = w.sum()
    if total <= 0:
        raise ValueError("weights: expected a positive total weight on the classes of recall_frame, got 0")
    return float((recall * w).sum() / total), float(np.sqrt(((se * w) ** 2).sum()) / total)


def laion_weights(class_counts: Mapping) -> dict:
    """LAION's natural class frequencies: ``w_c = n_c / Σ n``.

    Args:
        class_counts: class → number of LAIONet images (integers >= 0; the seed counts the
            full label dict, empty classes included), total > 0.

    Returns:
        class → weight, in the input's order, summing to 1.
    """
    if not isinstance(class_counts, Mapping) or not class_counts:
        raise ValueError("class_counts: expected a non-empty mapping class -> count")
    counts = {c: validate.int_at_least(f"class_counts[{c!r}]", v, 0) for c, v in class_counts.items()}
    total = sum(counts.values())
    if total == 0:
        raise ValueError("class_counts: expected a positive total count, got 0")
    return {c: v / total for c, v in counts.items()}


# --- threshold choice ----------------------------------------------------------------------


def threshold_curve(
    similarity: Sequence | np.ndarray,
    labels: Sequence | np.ndarray,
    thresholds: Sequence[float] = THRESHOLD_SWEEP,
) -> pl.DataFrame:
    """Rows and classes left by ``similarity > t`` for each threshold ``t``.

    The seed's threshold-choice plot (dataset size and number of classes against the
    caption-to-query similarity threshold). The comparison is strict, as the seed's selection
    (``sample_laion_from_most_similars.py``), and in float64; NaN similarities (rows the seed
    never scored: several synsets matched, or NSFW) never pass.

    Args:
        similarity: ``(n,)`` caption-to-query similarity of each row.
        labels: ``(n,)`` class of each row, integers or strings.
        thresholds: default ``linspace(0.5, 0.9, 20)`` (:data:`THRESHOLD_SWEEP`).

    Returns:
        ``threshold`` (Float64), ``rows`` and ``classes`` (Int64), in the order given.
    """
    sim = np.asarray(similarity)
    if sim.ndim != 1 or not np.issubdtype(sim.dtype, np.number) or sim.dtype == bool:
        raise ValueError(f"similarity: expected a 1-D real array (n,), got shape {sim.shape}, dtype {sim.dtype}")
    sim = sim.astype(np.float64)
    if np.isinf(sim).any():
        raise ValueError("similarity: contains inf")
    lab = label_array("labels", labels)
    if lab.shape[0] != sim.shape[0]:
        raise ValueError(f"labels: expected shape ({sim.shape[0]},) to match similarity, got {lab.shape}")
    ts = np.array(validate.real_list("thresholds", thresholds), dtype=np.float64)

    valid = ~np.isnan(sim)
    row_sims = np.sort(sim[valid])
    if valid.any():
        _, inv = np.unique(lab[valid], return_inverse=True)
        best = np.full(inv.max() + 1, -np.inf)
        np.maximum.at(best, inv, sim[valid])
        class_best = np.sort(best)
    else:
        class_best = np.empty(0)
    rows = row_sims.size - np.searchsorted(row_sims, ts, side="right")
    classes = class_best.size - np.searchsorted(class_best, ts, side="right")
    return pl.DataFrame({"threshold": ts, "rows": rows.astype(np.int64), "classes": classes.astype(np.int64)})


# --- helpers -------------------------------------------------------------------------------


def _check_mode(mode) -> str:
    """The sampling mode, ``"seed_compat"`` spelled ``"first"``."""
    if mode not in SAMPLE_MODES:
        raise ValueError(f"mode: expected 'random' or 'seed_compat' (alias 'first'), got {mode!r}")
    return "first" if mode == "seed_compat" else mode


def _unit_rows(name: str, emb) -> np.ndarray:
    """``emb`` as float32 after checking it is a finite 2-D array of unit-norm rows."""
    E = np.asarray(validate.matrix(name, emb), dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", E, E, dtype=np.float64))
    bad = np.flatnonzero(np.abs(norms - 1.0) > NORM_TOL)
    if bad.size:
        raise ValueError(f"{name}: expected L2-normalised rows, row {bad[0]} has norm {norms[bad[0]]:.4g}")
    return E


def _global_row_message(message: str, idx: np.ndarray) -> str:
    # "emb: expected L2-normalised rows, row 3 has ..." -> the row of emb, not of the block.
    prefix = "emb: expected L2-normalised rows, row "
    if message.startswith(prefix):
        local, rest = message[len(prefix) :].split(" ", 1)
        return f"{prefix}{int(idx[int(local)])} {rest}"
    return message


def _same_kind(name: str, a: np.ndarray, ref_name: str, ref: np.ndarray) -> None:
    if (a.dtype.kind == "U") != (ref.dtype.kind == "U") and a.size and ref.size:
        raise ValueError(f"{name}: expected {_kind(ref)} labels as in {ref_name}, got {_kind(a)}")


def _kind(a: np.ndarray) -> str:
    return "str" if a.dtype.kind == "U" else "integer"


def _label_dtype(a: np.ndarray) -> pl.DataType:
    return pl.String if a.dtype.kind == "U" else pl.Int64


def _nonneg_array(name: str, x) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name}: expected real counts, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all() or (a < 0).any():
        raise ValueError(f"{name}: expected finite counts >= 0")
    return a


def _check_intra_frame(name: str, frame) -> pl.DataFrame:
    if not isinstance(frame, pl.DataFrame):
        raise ValueError(f"{name}: expected a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("label", "n_pairs", "mean", "sd") if c not in frame.columns]
    if missing:
        raise ValueError(f"{name}: expected columns 'label', 'n_pairs', 'mean', 'sd', missing {missing}")
    if frame["label"].is_duplicated().any():
        raise ValueError(f"{name}: expected one row per label")
    return frame
