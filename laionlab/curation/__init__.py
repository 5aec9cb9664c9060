"""Curation steps that select or reweight LAION rows (issue 19), each a plain library module:

* ``concept_cap``: MetaCLIP's per-concept balancing (Xu et al., "Demystifying CLIP Data",
  ICLR 2024): captions matched against a concept list, each concept capped at ``t`` captions
  in expectation.

Nothing here imports Dagster.
"""

from laionlab.curation.concept_cap import (
    METACLIP_T,
    concept_counts,
    concept_table,
    concepts_digest,
    entry_probability,
    keep_probability,
    keep_rows,
    match_concepts,
    per_concept_kept,
    read_concepts_file,
    sum_counts,
    uniform_draws,
)

__all__ = [
    "METACLIP_T",
    "concept_counts",
    "concept_table",
    "concepts_digest",
    "entry_probability",
    "keep_probability",
    "keep_rows",
    "match_concepts",
    "per_concept_kept",
    "read_concepts_file",
    "sum_counts",
    "uniform_draws",
]
