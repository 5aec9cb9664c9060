"""The photo classifier behind LAION-natural (seed 000, Roth & Hebart, CCN 2025).

The seed ships ``laion_natural_img_clf.pkl``: a scikit-learn LogisticRegression (penalty l2,
C=1.0, solver lbfgs, max_iter=1000, random_state=0) on raw (not L2-normalised) OpenAI CLIP
ViT-B/32 image embeddings (512-d); an image belongs to LAION-natural when its predicted
probability of class 1 (natural photograph) is strictly above 0.75 (the value used in every
analysis; the code's default is 0.65).

Here a classifier is plain arrays — ``coef`` (d,), ``intercept`` and the input space ("raw"
or "unit" features) — saved as ``.npz`` + ``.json``, never pickled. Three ways to get one:
train the seed's model on labelled features, build a zero-shot classifier from CLIP text
prompts (photo vs illustration/render/screenshot/text) when no labels are given, or import a
user's existing linear classifier from its coefficients or a skops file. The labels to train on
are a user's table of LAION rows (by uid or URL) with ``is_photo`` (:func:`read_photo_labels`,
:func:`photo_labels_by_uid`, :func:`train_on_labelled_rows`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from laionlab.io import files

PHOTO_PROMPTS = (
    "a photo of something.",
    "a natural photograph.",
    "a snapshot taken with a camera.",
    "a photo of a scene.",
)
NON_PHOTO_PROMPTS = (
    "an illustration.",
    "a clipart drawing.",
    "a 3d render.",
    "a screenshot.",
    "an image of text.",
    "a logo.",
)


@dataclass
class LinearClassifier:
    """P(photo | x) = sigmoid(x · coef + intercept), x raw or unit-norm features by ``input``."""

    coef: np.ndarray
    intercept: float
    input: str = "raw"  # "raw" (emb * norm) or "unit" (L2-normalised)
    source: str = "trained"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.coef = np.asarray(self.coef, np.float64).reshape(-1)
        self.intercept = float(self.intercept)
        if self.input not in ("raw", "unit"):
            raise ValueError(f"input must be 'raw' or 'unit', got {self.input!r}")

    @property
    def dim(self) -> int:
        return self.coef.shape[0]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"features have shape {X.shape}, the classifier expects (n, {self.dim})")
        return X.astype(np.float64) @ self.coef + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n,) probability of the photo class."""
        return 1.0 / (1.0 + np.exp(-self.decision_function(X)))

    def save(self, path: str | Path) -> tuple[str, str]:
        """Write ``<path>.npz`` (coef, intercept) and ``<path>.json`` (everything else), each
        atomically; ``path`` may be local or an fsspec URI. Returns the two file paths."""
        npz, meta_path = _with_suffix(path, ".npz"), _with_suffix(path, ".json")
        buf = io.BytesIO()
        np.savez(buf, coef=self.coef, intercept=np.array([self.intercept]))
        files.atomic_write_bytes(npz, buf.getvalue())
        meta = {k: v for k, v in asdict(self).items() if k not in ("coef", "intercept")}
        files.atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=float).encode())
        return npz, meta_path

    @classmethod
    def load(cls, path: str | Path) -> "LinearClassifier":
        """Read a classifier saved by :meth:`save` (or any npz with ``coef`` and ``intercept``);
        ``path`` may be local or an fsspec URI."""
        npz, meta_path = _with_suffix(path, ".npz"), _with_suffix(path, ".json")
        if not files.exists(npz):
            raise FileNotFoundError(f"classifier coefficients not found: {npz}")
        data = files.load_npz(npz)
        if "coef" not in data or "intercept" not in data:
            raise ValueError(f"{npz} must hold arrays 'coef' and 'intercept' (has {list(data)})")
        coef, intercept = data["coef"], float(np.asarray(data["intercept"]).reshape(-1)[0])
        meta = files.read_json(meta_path) if files.exists(meta_path) else {}
        if np.asarray(coef).ndim == 2 and np.asarray(coef).shape[0] != 1:
            raise ValueError(f"{npz}: coef has shape {np.asarray(coef).shape}; a binary classifier has one row")
        return cls(coef=coef, intercept=intercept, **{k: meta[k] for k in ("input", "source", "info") if k in meta})


def _with_suffix(path: str | Path, suffix: str) -> str:
    """``Path.with_suffix`` for local paths and URIs alike (a URI is not a Path)."""
    head, sep, name = str(path).rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{head}{sep}{stem}{suffix}"


def train_photo_classifier(
    X: np.ndarray, y: np.ndarray, C: float = 1.0, max_iter: int = 1000, cv: int = 5, seed: int = 0
) -> LinearClassifier:
    """The seed's LogisticRegression(penalty='l2', C=1, solver='lbfgs', max_iter=1000,
    random_state=0) on raw features X (n, d) with labels y (1 = photo). The stratified
    ``cv``-fold accuracy is stored in ``info['cv_accuracy']`` (mean) and ``['cv_folds']``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    X, y = np.asarray(X, np.float64), np.asarray(y).astype(int)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) with one label per row; got X {X.shape}, y {y.shape}")
    classes, counts = np.unique(y, return_counts=True)
    if set(classes) != {0, 1}:
        raise ValueError(f"labels must contain both classes 0 (not photo) and 1 (photo); got {classes.tolist()}")
    model = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed)
    folds = min(cv, int(counts.min()))
    scores = (
        cross_val_score(model, X, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
        if folds >= 2
        else np.array([np.nan])
    )
    model.fit(X, y)
    info = {
        "cv_accuracy": float(np.mean(scores)),
        "cv_folds": [float(s) for s in scores],
        "n_train": int(len(y)),
        "n_photo": int(y.sum()),
        "C": C,
    }
    return LinearClassifier(model.coef_[0], model.intercept_[0], input="raw", source="trained", info=info)


# Fewer labelled rows than this cannot be trained on (nor cross-validated).
MIN_LABELLED_ROWS = 10


def read_photo_labels(uri: str, name: str = "labels_path") -> pl.DataFrame:
    """A user's photo labels: a parquet file (local path or fsspec URI) with ``is_photo`` (1 =
    natural photograph) and ``uid`` or ``URL`` naming the LAION row.

    Raises:
        ValueError: the file does not exist or lacks the columns (``name``, the config field
            it came from, and the path are in the message).
    """
    if not files.exists(uri):
        raise ValueError(f"{name} {uri} does not exist")
    labels = files.read_parquet(uri)
    key = "uid" if "uid" in labels.columns else "URL"
    if key not in labels.columns or "is_photo" not in labels.columns:
        raise ValueError(f"{uri} needs columns (uid or URL) and is_photo; has {labels.columns}")
    return labels


def photo_labels_by_uid(labels: pl.DataFrame, metadata: Iterable[pl.DataFrame] = ()) -> pl.DataFrame:
    """``uid``, ``is_photo`` of the labelled rows.

    Args:
        labels: :func:`read_photo_labels`' table. With a ``uid`` column it is used as is;
            else its ``URL`` s are looked up in ``metadata``.
        metadata: ``uid``, ``URL`` of the LAION rows, one frame per part (read lazily, one
            part at a time: each is joined with the labels before the next is read). A URL
            found in several rows labels each of them.
    """
    if "uid" in labels.columns:
        return labels.select("uid", "is_photo")
    by_url = labels.select("URL", "is_photo")
    joined = [part.select("uid", "URL").join(by_url, on="URL") for part in metadata]
    if not joined:
        return pl.DataFrame(schema={"uid": pl.String, "URL": pl.String, "is_photo": by_url.schema["is_photo"]})
    return pl.concat(joined)


def train_on_labelled_rows(
    uids: Sequence[str], X: np.ndarray, labels: pl.DataFrame, C: float = 1.0, cv: int = 5, name: str = "labels"
) -> tuple[LinearClassifier, list[str]]:
    """:func:`train_photo_classifier` on the labelled rows that have features.

    Args:
        uids: the uid of each row of ``X``, in the order the folds should see them (the
            cross-validation folds are seeded, so the order fixes the result).
        X: ``(len(uids), d)`` raw image features.
        labels: ``uid``, ``is_photo`` (:func:`photo_labels_by_uid`); a uid labelled twice
            keeps its first label.
        C, cv: the LogisticRegression's inverse L2 strength and the cross-validation folds.
        name: what the labels are called in error messages (e.g. their path).

    Returns:
        The classifier and the uids it was trained on (in the order of ``uids``).

    Raises:
        ValueError: fewer than :data:`MIN_LABELLED_ROWS` labelled rows have features, or
            ``X`` does not have one row per uid.
    """
    X = np.asarray(X)
    if len(X) != len(uids):
        raise ValueError(f"X: expected one row per uid ({len(uids)}), got {len(X)}")
    frame = pl.DataFrame({"uid": list(uids), "row": np.arange(len(uids))}, schema={"uid": pl.String, "row": pl.Int64})
    joined = frame.join(labels.unique("uid", keep="first"), on="uid", how="inner", maintain_order="left")
    if joined.height < MIN_LABELLED_ROWS:
        raise ValueError(f"only {joined.height} labelled rows of {name} have embeddings; need >= {MIN_LABELLED_ROWS}")
    clf = train_photo_classifier(X[joined["row"].to_numpy()], joined["is_photo"].to_numpy(), C=C, cv=cv)
    return clf, joined["uid"].to_list()


def zero_shot_classifier(
    photo_text: np.ndarray, other_text: np.ndarray, logit_scale: float = 100.0
) -> LinearClassifier:
    """A linear zero-shot classifier on unit-norm image features from unit-norm text
    embeddings of photo prompts (m, d) and non-photo prompts (k, d): the logit is
    ``logit_scale * (x·mean(photo) - x·mean(other))`` (CLIP's scale of 100)."""
    p, o = np.asarray(photo_text, np.float64), np.asarray(other_text, np.float64)
    if p.ndim != 2 or o.ndim != 2 or p.shape[1] != o.shape[1] or not len(p) or not len(o):
        raise ValueError(f"prompt embeddings must be two non-empty (m, d) arrays of one d; got {p.shape}, {o.shape}")
    unit = lambda a: a / np.linalg.norm(a)  # noqa: E731
    coef = logit_scale * (unit(p.mean(0)) - unit(o.mean(0)))
    return LinearClassifier(coef, 0.0, input="unit", source="zero-shot", info={"logit_scale": logit_scale})


def import_classifier(path: str | Path, input: str = "raw") -> LinearClassifier:
    """A user's existing linear classifier: a ``.npz``/``.json`` pair from :meth:`save`, an
    ``.npz`` with ``coef``/``intercept``, or a skops file of a fitted LogisticRegression
    (loaded with skops' safe loader, never pickle). ``path`` may be local or an fsspec URI."""
    path = str(path)
    if not files.exists(path) and not files.exists(_with_suffix(path, ".npz")):
        raise FileNotFoundError(f"classifier file not found: {path}")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if path.endswith(".skops"):
        import skops.io as sio

        data = files.read_bytes(path)
        untrusted = sio.get_untrusted_types(data=data)
        allowed = {"sklearn.linear_model._logistic.LogisticRegression"}
        if set(untrusted) - allowed:
            raise ValueError(
                f"{path} contains types that are not a plain LogisticRegression: {sorted(set(untrusted) - allowed)}"
            )
        model = sio.loads(data, trusted=list(untrusted))
        if getattr(model, "coef_", None) is None or model.coef_.shape[0] != 1:
            raise ValueError(f"{path}: not a fitted binary linear classifier")
        return LinearClassifier(model.coef_[0], model.intercept_[0], input=input, source=f"imported:{name}")
    clf = LinearClassifier.load(path)
    clf.source = f"imported:{name}"
    return clf


def keep_natural(proba: np.ndarray, threshold: float = 0.75) -> np.ndarray:
    """LAION-natural membership: probability strictly greater than ``threshold``
    (0.75 in the seed's analyses; its code default 0.65)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    return np.asarray(proba) > threshold
