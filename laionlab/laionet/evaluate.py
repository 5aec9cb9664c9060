"""Classifier accuracy on LAIONet and on a reference set (seed 001: Shirali & Hardt, "What Makes
ImageNet Look Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion,
``scripts/predict/*``, ``utils/calc_utils.py``, ``notebooks/plot_accuracy_of_laionet_vs_imagenet``).

* :class:`ImageEvaluator` streams ``(uid, PIL image, original area)`` triples through the
  seed's image filter (``verify_image``: RGB only, at least 100 px; for a LAION row the image
  is the one img2dataset stored, so the area is checked on the original size as well) and
  through every configured timm classifier, batch by batch; it remembers which uids passed.
* :func:`accuracy_tables` turns top-k predictions into the per-class recall table (Wilson
  intervals) and the equally- and LAION-weighted accuracies of every (dataset, model, k).
* :func:`top_k_hits` counts each model's top-k hits (unweighted, e.g. over one part), and
  :func:`keep_uids` restricts predictions to some images (e.g. LAIONet's rows).

Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from laionlab import validate
from laionlab.laionet.classify import MIN_IMAGE_AREA, TimmClassifier, image_problem, timm_predict
from laionlab.laionet.stats import per_class_recall, weighted_accuracy
from laionlab.progress import Progress

__all__ = ["EvaluatedImages", "ImageEvaluator", "accuracy_tables", "keep_uids", "top_k_hits"]


@dataclass
class EvaluatedImages:
    """What :meth:`ImageEvaluator.run` saw.

    kept: uids of the images that passed the filter, in stream order.
    predictions: model name → ``(len(kept), k)`` wnids, best first.
    problems: why images were excluded → count: ``not_rgb`` (PIL mode other than RGB),
        ``small`` (stored image under ``min_area`` px), ``small_original`` (the original
        size under ``min_area`` px, though the stored copy was resized up).
    """

    kept: list[str] = field(default_factory=list)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    problems: dict[str, int] = field(default_factory=dict)


class ImageEvaluator:
    """Runs timm classifiers on streams of images after the seed's image filter.

    Args:
        models: ``(name, classifier)`` pairs (:func:`laionlab.laionet.load_timm_classifier`);
            may be empty (then only the filter runs, e.g. for CLIP zero-shot on stored
            embeddings).
        k: predictions kept per image (the largest top-k reported).
        batch_size: images per forward.
        min_area: images under this many pixels are excluded (seed: 100).
        require_rgb: exclude images whose PIL mode is not RGB (seed's ``verify_image``).
        log: progress lines (a Dagster step's ``context.log``).
    """

    def __init__(
        self,
        models: Sequence[tuple[str, TimmClassifier]],
        k: int,
        batch_size: int = 64,
        min_area: int = MIN_IMAGE_AREA,
        require_rgb: bool = True,
        log: logging.Logger | None = None,
    ):
        self.models = list(models)
        self.k = validate.int_at_least("k", k, 1)
        self.batch_size = validate.int_at_least("batch_size", batch_size, 1)
        self.min_area = validate.int_at_least("min_area", min_area, 0)
        self.require_rgb = bool(require_rgb)
        self.log = log or logging.getLogger(__name__)

    def run(self, samples: Iterable[tuple[str, object, int]], label: str) -> EvaluatedImages:
        """Filter and classify ``(uid, image, original_area)`` samples (consumed once).

        An image is excluded when :func:`laionlab.laionet.image_problem` names a problem, or
        when its original area (before any resize) is under ``min_area``."""
        out = EvaluatedImages()
        chunks: dict[str, list[np.ndarray]] = {name: [] for name, _ in self.models}
        batch: list = []
        progress = Progress(f"{label}: reading and classifying", log=self.log, unit="images")

        def flush():
            for name, model in self.models:
                chunks[name].append(timm_predict(model, batch, k=self.k, batch_size=self.batch_size))
            batch.clear()

        for uid, img, area in samples:
            progress.update()
            problem = image_problem(img, min_area=self.min_area, require_rgb=self.require_rgb)
            if problem is not None:
                key = "not_rgb" if problem.startswith("mode") else "small"
            else:
                key = "small_original" if area < self.min_area else None
            if key is not None:
                out.problems[key] = out.problems.get(key, 0) + 1
                continue
            out.kept.append(uid)
            if self.models:
                batch.append(img.copy())
                if len(batch) >= self.batch_size:
                    flush()
        if batch:
            flush()
        progress.close()
        self.log.info(f"{label}: {len(out.kept)} of {progress.done} images usable")
        out.predictions = {
            name: np.concatenate(c) if c else np.zeros((0, self.k), object) for name, c in chunks.items()
        }
        return out


def accuracy_tables(
    predictions: Mapping[str, Mapping[str, tuple[Sequence[str], np.ndarray]]],
    truth: Mapping[str, Mapping[str, str]],
    classes: Sequence[str],
    weights: Mapping[str, float],
    top_k: Sequence[int],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-class recall and weighted accuracies of every dataset, model and k.

    Args:
        predictions: dataset → model → ``(uids, (n, K) predicted wnids, best first)``.
        truth: dataset → uid → true wnid (every uid of ``predictions`` included).
        classes: the classes reported (LAIONet's): a reference image of another class is
            left out (the reference set "projected" onto LAIONet's classes).
        weights: class → weight of the "LAION weighted" accuracy (:func:`laion_weights`).
        top_k: the k's, each ``1 <= k <= K``.

    Returns:
        ``(per_class, summary)``: :func:`per_class_recall` rows with ``model``, ``dataset``,
        ``k``; and one row per (model, dataset, k, weighting ∈ {equal, laion}) with
        ``accuracy``, ``se`` and ``images`` (the number predicted).
    """
    rows, summary = [], []
    for set_name, models in predictions.items():
        for model, (uids, pred) in models.items():
            true = np.array([truth[set_name][u] for u in uids])
            for k in top_k:
                frame = per_class_recall(true, pred[:, :k], classes=classes)
                rows.append(frame.with_columns(model=pl.lit(model), dataset=pl.lit(set_name), k=pl.lit(k)))
                for weighting, w in (("equal", None), ("laion", weights)):
                    acc, se = weighted_accuracy(frame, w)
                    summary.append(
                        {
                            "model": model,
                            "dataset": set_name,
                            "k": k,
                            "weighting": weighting,
                            "accuracy": acc,
                            "se": se,
                            "images": len(uids),
                        }
                    )
    return pl.concat(rows, how="diagonal_relaxed"), pl.DataFrame(summary)


def top_k_hits(
    predictions: Mapping[str, tuple[Sequence[str], np.ndarray]], truth: Mapping[str, str], k: int
) -> pl.DataFrame:
    """Each model's unweighted top-k accuracy over the images it predicted.

    Args:
        predictions: model → ``(uids, (n, K) predicted wnids, best first)``, ``K >= k``.
        truth: uid → true wnid (every uid of ``predictions`` included).
        k: the first ``k`` predictions count.

    Returns:
        One row per model, in the order of ``predictions``: ``model``, ``images`` (uids
        predicted), ``top{k}_hits`` (images whose true wnid is among their first k
        predictions) and ``top{k}_accuracy_unweighted`` (hits / images, rounded to 4 places;
        NaN for a model without images).
    """
    return pl.DataFrame(
        {
            "model": list(predictions),
            "images": [len(u) for u, _ in predictions.values()],
            f"top{k}_hits": [
                int(sum(truth[u] in row[:k] for u, row in zip(uids, pred))) for uids, pred in predictions.values()
            ],
        }
    ).with_columns((pl.col(f"top{k}_hits") / pl.col("images")).round(4).alias(f"top{k}_accuracy_unweighted"))


def keep_uids(
    predictions: Mapping[str, tuple[Sequence[str], np.ndarray]], uids: Iterable[str]
) -> dict[str, tuple[list[str], np.ndarray]]:
    """model → ``(uids, (n, K) predictions)`` with only the images among ``uids`` kept, in
    their order (e.g. a part's predictions restricted to the rows still in LAIONet)."""
    wanted = set(uids)
    return {
        m: ([u for u in got if u in wanted], pred[[u in wanted for u in got]]) for m, (got, pred) in predictions.items()
    }
