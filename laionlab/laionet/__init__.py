"""LAIONet (seed 001: Shirali & Hardt, "What Makes ImageNet Look Unlike LAION", TMLR 2025).

* ``match``: the seed's lemma dictionary (lemmas unique across the ILSVRC synsets) and its
  whole-word, case-sensitive lemma → caption matching.
* ``queries``: the synset query texts the captions are compared with (default
  ``"<name> which is <definition>"``, the name being NLTK's lower-cased first lemma).
* ``classify``: CLIP zero-shot (open_clip's ImageNet class names and OpenAI templates, or
  the seed's single name_def query) and timm classifiers from local checkpoints, and the
  seed's image filter (RGB, area >= 100 px).
* ``stats``: intra-class similarity (and the histogram's pairs, from the same per-class
  sample) and its per-class LAIONet − ImageNet test, per-class recall with Wilson intervals,
  equally- and LAION-weighted accuracy, and the text-threshold sweep.
* ``select``: LAIONet's selection rules (single synset, NSFW keep-list, text in the image,
  similarity > 0.82), LAIONet's columns, and the check of the text model the 0.82 was
  calibrated on.
* ``evaluate``: timm classifiers over image streams after the seed's filter, the accuracy
  tables and per-model top-k hits.
* ``recreate``: ImageNet recreated from LAION by nearest captions (Section 4.3), and its rows
  paired with their image vectors.
* ``synsets``: the synset table with its name_def queries, the lemma dictionary as a table,
  and how it differs from the dictionary of the seed's 999-synset file.
* ``similarity``: the caption-to-synset text cosine of single-synset captions.
* ``combine``: LAIONet as the union of its parts (summed rule counts, label map, class sizes,
  size-vs-threshold curve).

Nothing here imports Dagster.
"""

from laionlab.laionet.classify import (
    PROMPT_KINDS,
    TimmClassifier,
    TimmSpec,
    ilsvrc_wnids,
    image_problem,
    load_timm_classifier,
    name_def_queries,
    timm_predict,
    usable_image,
    zero_shot_classifier,
    zero_shot_predict,
    zero_shot_weights,
)
from laionlab.laionet.combine import LaionetParts, combine_laionet_parts, sum_counts
from laionlab.laionet.evaluate import EvaluatedImages, ImageEvaluator, accuracy_tables, keep_uids, top_k_hits
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
from laionlab.laionet.recreate import nearest_caption_rows, pairs_with_vectors, recreated_pairs
from laionlab.laionet.select import (
    DEFAULT_NSFW_KEEP,
    LAIONET_COLUMNS,
    PAPER_TEXT_MODEL,
    TEXT_IN_IMAGE_COLUMN,
    LaionetSelection,
    check_threshold,
    is_paper_text_model,
    label_map,
    laionet_table,
    select_laionet,
    single_synset,
    threshold_warning,
)
from laionlab.laionet.similarity import (
    caption_synset_similarity,
    similarity_column,
    single_synset_captions,
    synset_queries_for,
)
from laionlab.laionet.stats import (
    LAIONET_THRESHOLD,
    SAMPLE_MODES,
    THRESHOLD_SWEEP,
    WILSON_Z,
    IntraClassComparison,
    class_sample,
    class_samples,
    compare_intra_class,
    compare_intra_class_sets,
    intra_class_pairs,
    intra_class_similarity,
    laion_weights,
    lower_triangle_similarities,
    per_class_recall,
    threshold_curve,
    weighted_accuracy,
    wilson_interval,
)
from laionlab.laionet.synsets import (
    SEED_DICTIONARY,
    SEED_MISSING_WNIDS,
    DictionaryComparison,
    SynsetTables,
    seed_dictionary_comparison,
    synset_tables,
)

__all__ = [
    "DictionaryComparison",
    "LaionetParts",
    "SEED_DICTIONARY",
    "SEED_MISSING_WNIDS",
    "SynsetTables",
    "caption_synset_similarity",
    "combine_laionet_parts",
    "seed_dictionary_comparison",
    "similarity_column",
    "single_synset_captions",
    "sum_counts",
    "synset_queries_for",
    "synset_tables",
    "TimmClassifier",
    "TimmSpec",
    "ilsvrc_wnids",
    "image_problem",
    "load_timm_classifier",
    "name_def_queries",
    "timm_predict",
    "usable_image",
    "zero_shot_classifier",
    "zero_shot_predict",
    "zero_shot_weights",
    "DEFAULT_NSFW_KEEP",
    "DEFAULT_QUERY_KIND",
    "EvaluatedImages",
    "ImageEvaluator",
    "IntraClassComparison",
    "LAIONET_THRESHOLD",
    "LaionetSelection",
    "PAPER_TEXT_MODEL",
    "PROMPT_KINDS",
    "SAMPLE_MODES",
    "TEXT_IN_IMAGE_COLUMN",
    "QUERY_KINDS",
    "QueryKind",
    "THRESHOLD_SWEEP",
    "UniqueLemmas",
    "WILSON_Z",
    "accuracy_tables",
    "keep_uids",
    "top_k_hits",
    "LAIONET_COLUMNS",
    "laionet_table",
    "pairs_with_vectors",
    "check_threshold",
    "class_sample",
    "class_samples",
    "compare_intra_class",
    "compare_intra_class_sets",
    "intra_class_pairs",
    "intra_class_similarity",
    "is_paper_text_model",
    "label_map",
    "nearest_caption_rows",
    "recreated_pairs",
    "select_laionet",
    "single_synset",
    "threshold_warning",
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
