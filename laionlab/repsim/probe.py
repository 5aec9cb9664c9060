"""Linear probes on frozen features, for seed 002 (Ciernik et al., "Objective drives the
consistency of representational similarity across datasets", ICML 2025; public code
lciernik/similarity_consistency), which relates model similarity to differences in the
models' downstream (linear-probe) accuracy.

What the seed does (``sim_consistency/tasks/linear_probe*.py``, ``regularization_tuner.py``,
from CLIP_benchmark's linear probe):

* a stratified validation split of the training features, ``val_proportion = 0.2``:
  ``train_test_split(arange(n), test_size=0.2, stratify=targets, random_state=seed)``;
* a ``torch.nn.Linear`` probe trained with AdamW (lr 0.1, 10 epochs, batch 64, cosine
  schedule, no warm-up, cross-entropy) on L2-normalised features, the weight decay chosen on
  the validation split from ``logspace(-6, 1)``: 8 decades first, then a bisection-like
  refinement on a 57-point grid (OpenAI CLIP's sweep, App. A.3); ties go to the larger
  weight decay;
* the probe retrained on the whole training split with the chosen weight decay; top-1
  accuracy on the test split.

Here, by design, the probe is the one CLIP's paper (Radford et al., 2021, App. A.3)
describes: scikit-learn's L-BFGS multinomial logistic regression (``max_iter=1000``) on
standardised features, the inverse L2 strength ``C`` swept over ``logspace(-6, 6, 13)`` on the
same kind of seeded stratified split (:func:`stratified_split` returns the seed's split),
then refitted on all training rows. It is deterministic and needs no learning rate or
epochs. Deviations from the seed: convex full-batch optimisation instead of 10 epochs of
AdamW, a plain 13-point grid instead of the refined 57-point one, and ``C`` (the L2 penalty
``1 / (2C)`` per sample-summed loss) instead of decoupled weight decay; accuracies are
therefore close to, not equal to, the seed's (the seed only uses their ordering and gaps).
Ties between ``C`` values go to the smaller ``C`` (stronger regularisation, as the seed).

Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from laionlab import validate
from laionlab.labels import label_array
from laionlab.progress import Progress

__all__ = [
    "DEFAULT_CS",
    "DEFAULT_MAX_ITER",
    "DEFAULT_VAL_FRACTION",
    "linear_probe",
    "stratified_split",
]

log = logging.getLogger(__name__)

# Inverse L2 strengths swept on the validation split: CLIP's range 1e-6 .. 1e6, one per decade.
DEFAULT_CS: tuple[float, ...] = tuple(float(c) for c in np.logspace(-6, 6, 13))
# The seed's --val_proportion default.
DEFAULT_VAL_FRACTION = 0.2
# CLIP's L-BFGS iteration cap (App. A.3).
DEFAULT_MAX_ITER = 1000
# The open interval (0, 1), for validate.real.
_OPEN_UNIT = dict(lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def stratified_split(
    labels, test_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``n`` labelled rows into two index sets.

    The seed's validation split: ``train_test_split(np.arange(n), test_size=test_fraction,
    stratify=labels, random_state=seed)``; the same two sets, returned sorted.

    Args:
        labels: ``(n,)`` integer or str class labels, no nulls.
        test_fraction: in (0, 1), the share of rows in the second set (rounded up, per
            scikit-learn).
        seed: integer ``random_state``.

    Returns:
        ``(train_idx, test_idx)``: sorted int64 index arrays, disjoint, covering ``0..n-1``.

    Raises:
        ValueError: naming the argument: labels missing, not 1-D or with nulls, a class
            with a single member, a split too small to hold every class, bad fraction/seed.
    """
    y = label_array("labels", labels)
    test_fraction = validate.real("test_fraction", test_fraction, **_OPEN_UNIT)
    seed = validate.int_at_least("seed", seed, 0)
    return _split("labels", y, test_fraction, seed)


def linear_probe(
    train_X: np.ndarray,
    train_y,
    test_X: np.ndarray,
    test_y,
    Cs=DEFAULT_CS,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    max_iter: int = DEFAULT_MAX_ITER,
    log_every_s: float = 30.0,
) -> dict:
    """Top-1 accuracy of a logistic-regression probe, its L2 strength chosen on validation.

    1. :func:`stratified_split` of the training rows (``val_fraction``, ``seed``);
    2. for each ``C``: standardise (fit on the fitting part), L-BFGS logistic regression,
       accuracy on the validation part; the best ``C`` (ties: the smallest);
    3. refit scaler and probe on all training rows with that ``C``; accuracy on the test set.

    Args:
        train_X: ``(n_train, d)`` real features.
        train_y: ``(n_train,)`` integer or str labels, at least 2 classes, each with >= 2 rows.
        test_X: ``(n_test, d)`` features.
        test_y: ``(n_test,)`` labels (classes absent from training count as errors).
        Cs: inverse regularisation strengths to sweep, each > 0 (default one per decade,
            1e-6 .. 1e6).
        val_fraction: in (0, 1); the seed's 0.2.
        seed: seed of the validation split.
        max_iter: L-BFGS iteration cap.
        log_every_s: seconds between progress lines (fits of the ``C`` sweep done, ETA).

    Returns:
        ``{"best_C", "val_accuracy", "test_accuracy", "val_accuracies" (one per C, in the
        order given), "converged" (the final fit reached the tolerance within max_iter)}``.

    Raises:
        ValueError: naming the argument: labels missing (``None``), wrong length or with
            nulls, features not finite real 2-D or of different widths, bad ``Cs``,
            ``val_fraction``, ``seed`` or ``max_iter``.
    """
    Xtr = validate.matrix("train_X", train_X)
    ytr = label_array("train_y", train_y, n=Xtr.shape[0])
    Xte = validate.matrix("test_X", test_X)
    validate.same_dim("test_X", Xte, "train_X", Xtr)
    yte = label_array("test_y", test_y, n=Xte.shape[0])
    if ytr.dtype.kind != yte.dtype.kind:
        raise ValueError(f"test_y: expected labels of the same kind as train_y ({ytr.dtype}), got {yte.dtype}")
    Cs = validate.real_list("Cs", Cs, lo=0.0, lo_open=True)
    val_fraction = validate.real("val_fraction", val_fraction, **_OPEN_UNIT)
    seed = validate.int_at_least("seed", seed, 0)
    max_iter = validate.int_at_least("max_iter", max_iter, 1)
    if np.unique(ytr).size < 2:
        raise ValueError("train_y: expected at least 2 classes")

    fit_idx, val_idx = _split("train_y", ytr, val_fraction, seed)
    X_fit, y_fit, X_val, y_val = Xtr[fit_idx], ytr[fit_idx], Xtr[val_idx], ytr[val_idx]
    val_acc = []
    progress = Progress(
        f"linear probe C sweep on {len(y_fit):,} rows",
        len(Cs),
        log_every_s,
        log,
        unit="fits",
        quiet_below_s=log_every_s,
    )
    for C in Cs:
        model, _ = _fit(X_fit, y_fit, C, max_iter)
        val_acc.append(float(np.mean(model.predict(X_val) == y_val)))
        progress.update()
    progress.close()
    top = max(val_acc)
    best = min((i for i, acc in enumerate(val_acc) if acc == top), key=lambda i: Cs[i])
    final, converged = _fit(Xtr, ytr, Cs[best], max_iter)
    return {
        "best_C": Cs[best],
        "val_accuracy": val_acc[best],
        "test_accuracy": float(np.mean(final.predict(Xte) == yte)),
        "val_accuracies": val_acc,
        "converged": converged,
    }


def _split(name: str, y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        a, b = train_test_split(np.arange(y.shape[0]), test_size=fraction, stratify=y, random_state=seed)
    except ValueError as exc:
        raise ValueError(f"{name}: cannot split {y.shape[0]} rows stratified by class: {exc}") from None
    return np.sort(a).astype(np.int64), np.sort(b).astype(np.int64)


def _fit(X: np.ndarray, y: np.ndarray, C: float, max_iter: int) -> tuple[Pipeline, bool]:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter))
    with warnings.catch_warnings():
        # Reported through ``converged`` instead: a large C on separable data rarely converges.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return model, bool(np.max(model[-1].n_iter_) < max_iter)
