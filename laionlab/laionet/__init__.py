"""LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025).

* ``match``: the seed's lemma dictionary (lemmas unique across the ILSVRC synsets) and its
  whole-word, case-sensitive lemma → caption matching.
* ``queries``: the synset query texts the captions are compared with (default
  ``"<name> which is <definition>"``, the name being NLTK's lower-cased first lemma).
* ``classify``: CLIP zero-shot (open_clip's ImageNet class names and OpenAI templates, or
  the seed's single name_def query) and timm classifiers from local checkpoints, and the
  seed's image filter (RGB, area >= 100 px).
* ``stats``: intra-class similarity and its per-class LAIONet − ImageNet test, per-class
  recall with Wilson intervals, equally- and LAION-weighted accuracy, and the text-threshold
  sweep.

Nothing here imports Dagster.
"""

from laionlab.laionet.classify import (
    TimmClassifier,
    TimmSpec,
    ilsvrc_wnids,
    image_problem,
    load_timm_classifier,
    name_def_queries,
    timm_predict,
    usable_image,
    zero_shot_predict,
    zero_shot_weights,
)
from laionlab.laionet.match import (
    UniqueLemmas,
    match_lemmas,
    match_lemmas_frame,
    punctuated_lemmas,
    unique_lemma_map,
)
from laionlab.laionet.queries import (
    DEFAULT_QUERY_KIND,
    QUERY_KINDS,
    QueryKind,
    synset_name,
    synset_queries,
    synset_query,
)
from laionlab.laionet.stats import (
    LAIONET_THRESHOLD,
    THRESHOLD_SWEEP,
    WILSON_Z,
    class_sample,
    compare_intra_class,
    intra_class_similarity,
    laion_weights,
    lower_triangle_similarities,
    per_class_recall,
    threshold_curve,
    weighted_accuracy,
    wilson_interval,
)

__all__ = [
    "TimmClassifier",
    "TimmSpec",
    "ilsvrc_wnids",
    "image_problem",
    "load_timm_classifier",
    "name_def_queries",
    "timm_predict",
    "usable_image",
    "zero_shot_predict",
    "zero_shot_weights",
    "DEFAULT_QUERY_KIND",
    "LAIONET_THRESHOLD",
    "QUERY_KINDS",
    "QueryKind",
    "THRESHOLD_SWEEP",
    "UniqueLemmas",
    "WILSON_Z",
    "class_sample",
    "compare_intra_class",
    "intra_class_similarity",
    "laion_weights",
    "lower_triangle_similarities",
    "match_lemmas",
    "match_lemmas_frame",
    "per_class_recall",
    "punctuated_lemmas",
    "synset_name",
    "synset_queries",
    "synset_query",
    "threshold_curve",
    "unique_lemma_map",
    "weighted_accuracy",
    "wilson_interval",
]
