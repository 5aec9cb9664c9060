"""Row-vector helpers shared by the pipelines (no dagster, no torch).

``l2_normalise`` scales feature or embedding rows to unit length: seed 002's feature
normalisation (``laionlab.repsim``) and the cosine geometry of the OOD experiment
(``laionlab.ood``) both go through it.
"""

from __future__ import annotations

import numpy as np

from laionlab import validate

__all__ = ["l2_normalise"]


def l2_normalise(X: np.ndarray, *, copy: bool = True, name: str = "X") -> np.ndarray:
    """Rows of ``X`` scaled to unit Euclidean norm, as the seed's ``Featurizer(normalize=True)``
    (``torch.nn.functional.normalize(features, dim=-1)``, the ``--normalize`` default) stores
    every model's features before any metric sees them.

    Norms are accumulated in float64; the result keeps a float dtype of ``X`` (int input
    becomes float64). A zero row stays zero (``F.normalize`` divides by ``max(norm, 1e-12)``).

    Args:
        X: ``(n, d)`` finite real features.
        copy: ``False`` scales a float ``X`` in place (and returns it), to avoid a second copy
            of a large matrix.
        name: what to call ``X`` in error messages (e.g. ``features['clip_b32']``).

    Returns:
        ``(n, d)`` array whose non-zero rows have norm 1.

    Raises:
        ValueError: ``X`` not a finite real 2-D array (named by ``name``).
    """
    X = validate.matrix(name, X)
    if not np.issubdtype(X.dtype, np.floating):
        X, copy = X.astype(np.float64), False
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    scale = (1.0 / np.maximum(norms, 1e-12)).astype(X.dtype)[:, None]
    if copy:
        return X * scale
    X *= scale
    return X
