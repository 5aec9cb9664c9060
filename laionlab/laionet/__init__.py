"""LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025).

``match``: the seed's lemma dictionary (lemmas unique across the ILSVRC synsets) and its
whole-word, case-sensitive lemma → caption matching. Nothing here imports Dagster.
"""

from laionlab.laionet.match import (
    UniqueLemmas,
    match_lemmas,
    match_lemmas_frame,
    punctuated_lemmas,
    unique_lemma_map,
)

__all__ = [
    "UniqueLemmas",
    "match_lemmas",
    "match_lemmas_frame",
    "punctuated_lemmas",
    "unique_lemma_map",
]
