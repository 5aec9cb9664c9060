"""Dataset curation baselines over LAION parts.

* ``datacomp``: DataComp's filtering baselines (Gadre et al., "DataComp: In search of the next
  generation of multimodal datasets", NeurIPS 2023; code mlfoundations/datacomp,
  ``baselines/apply_filter.py``): the basic filter, CLIP-score threshold and top-fraction
  filters (the global quantile from per-part histograms), the text-based (synset lemma) filter,
  their intersection, and the kept ids in DataComp's ``.npy`` format.

Nothing here imports Dagster.
"""

from laionlab.curation.datacomp import (
    FILTERS,
    HIST_BINS,
    HIST_RANGE,
    LAION2B_THRESHOLD,
    PART_FILTERS,
    SYNSET_LISTS,
    TOP_FRACTION,
    UID_DTYPE,
    BasicRule,
    Selection,
    basic_filter,
    basic_filter_flags,
    bin_width,
    clip_score_filter,
    datacomp_uids,
    export_frame,
    filter_counts,
    filter_lemmas,
    filter_synsets,
    image_sizes,
    merge_histograms,
    part_flags,
    score_histogram,
    select_filters,
    select_parts,
    text_filter,
    top_fraction_threshold,
    uid_hex,
)

__all__ = [
    "FILTERS",
    "HIST_BINS",
    "LAION2B_THRESHOLD",
    "SYNSET_LISTS",
    "TOP_FRACTION",
    "Selection",
    "filter_synsets",
    "select_parts",
    "HIST_RANGE",
    "PART_FILTERS",
    "UID_DTYPE",
    "BasicRule",
    "basic_filter",
    "basic_filter_flags",
    "bin_width",
    "clip_score_filter",
    "datacomp_uids",
    "export_frame",
    "filter_counts",
    "filter_lemmas",
    "image_sizes",
    "merge_histograms",
    "part_flags",
    "score_histogram",
    "select_filters",
    "text_filter",
    "top_fraction_threshold",
    "uid_hex",
]
