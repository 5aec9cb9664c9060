"""SWAT (seed 003: Liu et al., "Few-Shot Recognition via Stage-Wise Retrieval-Augmented
Finetuning", CVPR 2025; public code tian1327/SWAT, ``retrieval/``): retrieving pretraining
images for a few-shot target by string matching and ranking.

* ``synonyms``: class → concept synonyms from a SWAT/REAL metrics JSON or a list of names.
* ``match``: captions holding a synonym as whole words (optionally with a prefix word), every
  class matched per caption; per-class match counts; the seed's FTS5 query string.
* ``rank``: prompt embeddings (mean over synonyms × templates) and the seed's sampling methods
  (Random, T2T/T2I/I2T/I2I ranking, T2T ranking after a T2I/I2T/I2I threshold), N per class.
* ``sample``: one target end to end: few-shot images by class, every method on the same
  candidates, a seeded per-class cap on what is downloaded.
* ``retrieve``: which matched rows a target still downloads (uncapped or capped per class,
  not those retrieved or failed before), the failures kept, the candidate rows every method
  ranks and the samples table of the picks.
* ``export``: SWAT's ``<image path> <label>`` list files (``T2T500.txt``), their labels (the
  metrics file's class ids) and their reader.

Nothing here imports Dagster.
"""

from laionlab.swat.export import read_swat_txt, swat_labels, swat_txt_name, write_swat_lists, write_swat_txt
from laionlab.swat.match import (
    caption_rows,
    class_frequency,
    match_synonyms,
    matched_captions,
    normalise,
    seed_fts5_query,
)
from laionlab.swat.rank import (
    DEFAULT_N_PER_CLASS,
    I2I_THRESHOLD,
    I2T_THRESHOLD,
    METHODS,
    T2I_THRESHOLD,
    prompt_embeddings,
    rank_samples,
)
from laionlab.swat.retrieve import (
    RetrievalPlan,
    candidate_rows,
    merge_failures,
    picked_rows,
    plan_retrieval,
    rows_to_retrieve,
    samples_table,
)
from laionlab.swat.sample import (
    cap_per_class,
    check_methods,
    fewshot_class,
    fewshot_embeddings,
    needs_fewshot,
    sample_all_methods,
)
from laionlab.swat.synonyms import (
    ClassKey,
    ClassSynonyms,
    from_class_names,
    load_metrics_json,
    synonyms_from_table,
    synonyms_table,
)

__all__ = [
    "ClassKey",
    "ClassSynonyms",
    "DEFAULT_N_PER_CLASS",
    "I2I_THRESHOLD",
    "I2T_THRESHOLD",
    "METHODS",
    "RetrievalPlan",
    "T2I_THRESHOLD",
    "cap_per_class",
    "candidate_rows",
    "caption_rows",
    "check_methods",
    "class_frequency",
    "fewshot_class",
    "fewshot_embeddings",
    "from_class_names",
    "load_metrics_json",
    "match_synonyms",
    "matched_captions",
    "merge_failures",
    "needs_fewshot",
    "normalise",
    "picked_rows",
    "plan_retrieval",
    "prompt_embeddings",
    "rank_samples",
    "read_swat_txt",
    "rows_to_retrieve",
    "sample_all_methods",
    "samples_table",
    "seed_fts5_query",
    "swat_labels",
    "swat_txt_name",
    "synonyms_from_table",
    "synonyms_table",
    "write_swat_lists",
    "write_swat_txt",
]
