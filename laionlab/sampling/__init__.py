"""Stimulus-set sampling strategies of seed 000 (Roth & Hebart, "How to sample the world
for understanding the visual system", CCN 2025; code ``andropar/how-to-sample``).

Every strategy has the form ``strategy(X, n, ..., seed=0) -> (n,) int indices``: X is an
(N, d) float feature matrix (Euclidean distances), the n indices are distinct and the
result is deterministic for a given seed. ``sample(name, X, n, **kw)`` dispatches by name.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from laionlab.sampling._common import nearest_samples
from laionlab.sampling.active import margin, oracle
from laionlab.sampling.basic import kcenter, kmeans, random, stratified
from laionlab.sampling.ed import (
    RunningCovariance,
    effective_dimensionality,
    greedy_ed,
    greedy_ed_kmeans,
)

STRATEGIES: dict[str, Callable[..., np.ndarray]] = {
    "random": random,
    "stratified": stratified,
    "kmeans": kmeans,
    "kcenter": kcenter,
    "greedy_ed": greedy_ed,
    "greedy_ed_kmeans": greedy_ed_kmeans,
    "margin": margin,
    "oracle": oracle,
}


def sample(name: str, X, n: int, **kw) -> np.ndarray:
    """Run the strategy called ``name`` (a key of ``STRATEGIES``) on X; ``kw`` go to it."""
    if name not in STRATEGIES:
        raise ValueError(f"name: unknown sampling strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](X, n, **kw)


__all__ = [
    "STRATEGIES",
    "RunningCovariance",
    "effective_dimensionality",
    "greedy_ed",
    "greedy_ed_kmeans",
    "kcenter",
    "kmeans",
    "margin",
    "nearest_samples",
    "oracle",
    "random",
    "sample",
    "stratified",
]
