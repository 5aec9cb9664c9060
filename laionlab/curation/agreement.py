"""Which rows each curation method keeps, side by side: counts and pairwise Jaccard (issue 19).

The methods (seed 004's dedup rule, SemDeDup/DBP, DataComp's filters, MetaCLIP's cap, exact
duplicates) each leave a keep flag per row, part by part. :class:`Agreement` accumulates, one
part at a time, how many rows each method keeps and, for every pair of methods, the size of
the intersection and of the union of their kept sets; nothing but these counts is held, so a
corpus of any size costs one part's flags at a time. ``|A ∩ B| / |A ∪ B|`` over the summed
counts is the Jaccard index of the two kept sets over the whole corpus (both empty: 1).

Rows are compared on the part's *universe*: the uids the caller passes (e.g. the part's
embedded rows); a method that has no flag for a universe row counts it as not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import polars as pl


@dataclass
class Agreement:
    """Running counts over parts: ``rows`` (universe size), ``kept[m]``, ``both[(a, b)]`` and
    ``either[(a, b)]`` for methods in ``methods`` order (pairs with ``a`` before ``b``)."""

    methods: list[str]
    rows: int = 0
    kept: dict[str, int] = field(default_factory=dict)
    both: dict[tuple[str, str], int] = field(default_factory=dict)
    either: dict[tuple[str, str], int] = field(default_factory=dict)

    def add_part(self, universe: pl.Series, flags: dict[str, pl.DataFrame]) -> None:
        """One part: ``universe`` (its uids) and, by method, a frame of ``uid`` and ``keep``
        (bool) — rows of ``universe`` a frame lacks are not kept; uids outside it are ignored."""
        unknown = set(flags) - set(self.methods)
        if unknown:
            raise ValueError(f"flags: methods {sorted(unknown)} are not among {self.methods}")
        base = pl.DataFrame({"uid": universe.cast(pl.String)}).unique("uid", maintain_order=True)
        kept = {}
        for method in self.methods:
            frame = flags.get(method)
            if frame is None:
                raise ValueError(f"flags: no keep flags for method {method!r} in this part")
            if {"uid", "keep"} - set(frame.columns):
                raise ValueError(f"flags[{method!r}]: expected columns uid and keep, got {frame.columns}")
            joined = base.join(
                frame.select(pl.col("uid").cast(pl.String), pl.col("keep").cast(pl.Boolean)), on="uid", how="left"
            )
            kept[method] = joined["keep"].fill_null(False).to_numpy()
        self.rows += base.height
        for method in self.methods:
            self.kept[method] = self.kept.get(method, 0) + int(kept[method].sum())
        for a, b in combinations(self.methods, 2):
            self.both[(a, b)] = self.both.get((a, b), 0) + int(np.sum(kept[a] & kept[b]))
            self.either[(a, b)] = self.either.get((a, b), 0) + int(np.sum(kept[a] | kept[b]))

    def jaccard(self, a: str, b: str) -> float:
        if a == b:
            return 1.0
        key = (a, b) if (a, b) in self.both else (b, a)
        union = self.either.get(key, 0)
        return self.both.get(key, 0) / union if union else 1.0

    def kept_table(self) -> pl.DataFrame:
        """method, kept, share of the universe."""
        return pl.DataFrame(
            {
                "method": self.methods,
                "kept": [self.kept.get(m, 0) for m in self.methods],
                "share": [round(self.kept.get(m, 0) / self.rows, 4) if self.rows else 0.0 for m in self.methods],
            }
        )

    def pairs_table(self) -> pl.DataFrame:
        """a, b, both, either, jaccard for every pair."""
        pairs = list(combinations(self.methods, 2))
        return pl.DataFrame(
            {
                "a": [a for a, _ in pairs],
                "b": [b for _, b in pairs],
                "both": [self.both.get(p, 0) for p in pairs],
                "either": [self.either.get(p, 0) for p in pairs],
                "jaccard": [round(self.jaccard(*p), 4) for p in pairs],
            },
            schema={"a": pl.String, "b": pl.String, "both": pl.Int64, "either": pl.Int64, "jaccard": pl.Float64},
        )

    def matrix(self) -> np.ndarray:
        """The ``len(methods)`` square Jaccard matrix (1 on the diagonal)."""
        return np.array([[self.jaccard(a, b) for b in self.methods] for a in self.methods])
