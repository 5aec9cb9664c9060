"""DataComp's filtering baselines (Gadre et al., "DataComp: In search of the next generation of
multimodal datasets", NeurIPS 2023; code mlfoundations/datacomp, ``baselines/apply_filter.py``)
on LAION parts, part by part.

The pool is a part's rows with a CLIP score (the rows whose image was downloaded and embedded);
every filter keeps a subset of it. The rules, as in DataComp's code:

* **basic** (``load_uids_with_basic_filter_helper``): English caption, ``len(text.split()) > 2``
  words, ``len(text) > 5`` characters, ``min(w, h) >= 200`` and ``max(w, h) / min(w, h) <= 3``
  on the original image size. *Deviations:* DataComp detects English with fasttext's lid.176;
  we have no detector, so English is a language column of the metadata where it has one
  (LAION-2B-multi's ``LANGUAGE``) and every row counts as English otherwise (LAION-2B-en and
  LAION-400M, whose captions were filtered for English by CLD3 when they were built). The
  image size is the original size img2dataset reports for a downloaded row
  (``original_width``/``original_height``; DataComp's ``original_width``/``original_height``
  are the same quantity), else the metadata's WIDTH/HEIGHT.
* **clip_score_threshold** (``load_uids_with_clip_score``): ``clip_score >= threshold``;
  **laion2b** is the LAION-2B rule DataComp reproduces: threshold 0.28 with ViT-B/32 plus
  English (DataComp: gcld3; here the language column as above).
* **clip_score_top_fraction** (``get_threshold``): DataComp sorts every score of the pool and
  keeps ``score >= t`` with ``t = sorted_descending[int(n * fraction)]``. Here each part keeps
  a histogram of its scores on fixed bins (:data:`HIST_BINS` over :data:`HIST_RANGE`), the
  parts' histograms are summed, and ``t`` is the lower edge of the bin that holds DataComp's
  ``t``: ``t <= t_datacomp < t + bin_width`` (2**-15 ≈ 3.1e-5 for 2**16 bins over [-1, 1]), so
  the kept rows are DataComp's plus at most the rest of that one bin.
* **text_based** (``load_uids_with_text_entity_helper``): English caption naming a synset of a
  list (DataComp: ImageNet-21k). *Deviation:* DataComp looks up each whitespace-separated word
  in NLTK's WordNet (morphological normalisation, so "dogs" counts) and checks whether the
  word's *first* synset is in the list; we have no WordNet, so a caption matches when it
  contains any lemma of any listed synset as whole words (LAIONet's matcher,
  :func:`laionlab.laionet.match_lemmas_frame`: punctuation → spaces, ASCII case folded by
  default as NLTK lower-cases). Multi-word lemmas ("hot dog") match; inflected forms do not;
  a word whose most frequent sense is outside the list still matches through another sense.

The kept ids are exported as DataComp's resharder reads them: a sorted ``.npy`` of
:data:`UID_DTYPE` (two unsigned 64-bit ints, the upper and lower halves of a 128-bit uid). A
DataComp uid is 32 hex digits; ours is ``"<part>:<row>"``, so the 128 bits are its MD5
(:func:`uid_hex`), and a parquet of (uid, part, uid_hex) maps the array back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from laionlab import validate

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
    "selection_verdicts",
    "text_filter",
    "top_fraction_threshold",
    "uid_hex",
]

# the filters decided row by row (a part's flags), and the one that needs every part's scores
PART_FILTERS = ("no_filter", "basic", "clip_score_threshold", "laion2b", "text_based")
FILTERS = (*PART_FILTERS, "clip_score_top_fraction", "image_based")
# the image-based baseline's caption_filter: English, more than one word, more than 5 characters
IMAGE_CAPTION_MIN_WORDS = 2

HIST_BINS = 2**16  # bin width 2**-15 over [-1, 1]: exact in float64, so bin(s) >= b iff s >= edge b
HIST_RANGE = (-1.0, 1.0)  # cosine similarities

LAION2B_THRESHOLD = 0.28  # DataComp's `laion2b` baseline: ViT-B/32 score >= 0.28 and English
TOP_FRACTION = 0.3  # DataComp's "CLIP score (top 30%)" baseline

# DataComp's np.dtype("u8,u8"): (upper 64 bits, lower 64 bits) of the 128-bit uid
UID_DTYPE = np.dtype("u8,u8")


@dataclass(frozen=True)
class BasicRule:
    """DataComp's basic filter (``load_uids_with_basic_filter_helper``), as inclusive bounds.

    ``min_caption_words``: 3 (``len(text.split()) > 2``); ``min_caption_chars``: 6
    (``len(text) > 5``); ``min_image_side``: 200 (``min(w, h) >= 200``); ``max_aspect_ratio``:
    3.0 (``max(w, h) / min(w, h) <= 3``); ``language``: "en" (fasttext's prediction there; the
    language column's value here), None to keep every language.
    """

    min_caption_words: int = 3
    min_caption_chars: int = 6
    min_image_side: int = 200
    max_aspect_ratio: float = 3.0
    language: str | None = "en"

    def __post_init__(self) -> None:
        validate.int_at_least("min_caption_words", self.min_caption_words, 0)
        validate.int_at_least("min_caption_chars", self.min_caption_chars, 0)
        validate.int_at_least("min_image_side", self.min_image_side, 0)
        validate.real("max_aspect_ratio", self.max_aspect_ratio, lo=1.0)
        if self.language is not None and (not isinstance(self.language, str) or not self.language):
            raise ValueError(f"language: expected a non-empty language code or None, got {self.language!r}")


def image_sizes(metadata: pl.DataFrame, status: pl.DataFrame | None = None) -> pl.DataFrame:
    """The original size of each metadata row: img2dataset's ``original_width`` /
    ``original_height`` where the row was downloaded (``status == "success"``), else the
    metadata's ``WIDTH`` / ``HEIGHT``.

    ``metadata``: uid, WIDTH, HEIGHT; ``status``: uid, status and, when img2dataset reported
    them, original_width, original_height (a status table without them falls back to the
    metadata everywhere). Returns uid, width, height (Int64, null where neither knows) and
    ``size_source`` ("download", "metadata" or null), one row per metadata row, in its order.
    """
    missing = {"uid", "WIDTH", "HEIGHT"} - set(metadata.columns)
    if missing:
        raise ValueError(f"metadata: expected columns uid, WIDTH, HEIGHT, missing {sorted(missing)}")
    frame = metadata.select(
        "uid", pl.col("WIDTH").cast(pl.Int64).alias("meta_w"), pl.col("HEIGHT").cast(pl.Int64).alias("meta_h")
    )
    if status is not None and {"uid", "status", "original_width", "original_height"} <= set(status.columns):
        got = status.filter(pl.col("status") == "success").select(
            "uid",
            pl.col("original_width").cast(pl.Int64, strict=False).alias("dl_w"),
            pl.col("original_height").cast(pl.Int64, strict=False).alias("dl_h"),
        )
        frame = frame.join(got, on="uid", how="left", maintain_order="left")
    else:
        frame = frame.with_columns(dl_w=pl.lit(None, pl.Int64), dl_h=pl.lit(None, pl.Int64))
    downloaded = pl.col("dl_w").is_not_null() & pl.col("dl_h").is_not_null()
    from_meta = pl.col("meta_w").is_not_null() & pl.col("meta_h").is_not_null()
    return frame.select(
        "uid",
        pl.when(downloaded).then(pl.col("dl_w")).otherwise(pl.col("meta_w")).alias("width"),
        pl.when(downloaded).then(pl.col("dl_h")).otherwise(pl.col("meta_h")).alias("height"),
        pl.when(downloaded).then(pl.lit("download")).when(from_meta).then(pl.lit("metadata")).alias("size_source"),
    )


def _series(name: str, values, dtype: pl.DataType) -> pl.Series:
    try:
        return pl.Series(name, values).cast(dtype, strict=True)
    except (TypeError, pl.exceptions.PolarsError) as err:
        raise ValueError(f"{name}: expected values castable to {dtype} ({err})") from None


def basic_filter_flags(
    captions: Sequence[str | None] | pl.Series,
    widths,
    heights,
    languages: Sequence[str | None] | pl.Series | None = None,
    rule: BasicRule = BasicRule(),
) -> pl.DataFrame:
    """DataComp's basic filter on ``n`` rows, rule by rule.

    Args:
        captions: (n,) captions; a null caption fails (DataComp's pools have none).
        widths, heights: (n,) original image sizes in pixels; null fails.
        languages: (n,) language codes, or None when the metadata has no language column (then
            every row counts as English: see the module docstring).
        rule: the thresholds.

    Returns:
        Boolean columns ``english``, ``caption`` (word and character counts), ``image`` (side
        and aspect ratio) and ``basic`` (all three), one row per input row. Words are runs of
        non-whitespace (Python's ``str.split()``), characters are code points (``len``).
    """
    text = validate.string_series("captions", captions)
    w, h = _series("widths", widths, pl.Float64), _series("heights", heights, pl.Float64)
    if not (text.len() == w.len() == h.len()):
        raise ValueError(f"captions, widths, heights: expected equal lengths, got {text.len()}, {w.len()}, {h.len()}")
    frame = pl.DataFrame({"text": text, "w": w, "h": h})
    if languages is not None and rule.language is not None:
        lang = validate.string_series("languages", languages)
        if lang.len() != text.len():
            raise ValueError(f"languages: expected {text.len()} values, got {lang.len()}")
        english = (pl.Series(lang) == rule.language).fill_null(False)
    else:
        english = pl.Series([True] * text.len(), dtype=pl.Boolean)
    short, long = pl.min_horizontal("w", "h"), pl.max_horizontal("w", "h")
    return frame.select(
        english.alias("english"),
        (
            (pl.col("text").str.count_matches(r"\S+") >= rule.min_caption_words)
            & (pl.col("text").str.len_chars() >= rule.min_caption_chars)
        )
        .fill_null(False)
        .alias("caption"),
        (
            pl.col("w").is_not_null()  # min/max_horizontal skip nulls: a missing side fails here
            & pl.col("h").is_not_null()
            & (short >= rule.min_image_side)
            & (short > 0)
            & (long / short <= rule.max_aspect_ratio)
        )
        .fill_null(False)
        .alias("image"),
    ).with_columns(basic=pl.col("english") & pl.col("caption") & pl.col("image"))


def basic_filter(captions, widths, heights, languages=None, rule: BasicRule = BasicRule()) -> np.ndarray:
    """(n,) bool: the rows DataComp's basic filter keeps (see :func:`basic_filter_flags`)."""
    return basic_filter_flags(captions, widths, heights, languages, rule)["basic"].to_numpy()


def clip_score_filter(scores, threshold: float) -> np.ndarray:
    """(n,) bool: ``scores >= threshold`` (DataComp's ``df[key] >= threshold``); NaN fails."""
    threshold = validate.real("threshold", threshold)
    s = np.asarray(scores, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return s >= threshold


def bin_width(bins: int = HIST_BINS, lo: float = HIST_RANGE[0], hi: float = HIST_RANGE[1]) -> float:
    """The width of one histogram bin: the resolution of :func:`top_fraction_threshold`."""
    return (hi - lo) / bins


def score_histogram(scores, bins: int = HIST_BINS, lo: float = HIST_RANGE[0], hi: float = HIST_RANGE[1]) -> np.ndarray:
    """(bins,) int64 counts of the finite ``scores`` on ``bins`` equal bins over ``[lo, hi]``.

    Bin ``b`` holds ``lo + b * w <= s < lo + (b + 1) * w`` (the last bin also ``hi``); scores
    outside the range (a cosine of 1 + 1e-7 from rounding) go to the end bins. NaN (a row with
    no score) is not counted. Histograms of parts add up (:func:`merge_histograms`).
    """
    bins = validate.int_at_least("bins", bins, 1)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"lo, hi: expected finite lo < hi, got {lo}, {hi}")
    s = np.asarray(scores, dtype=np.float64).ravel()
    s = s[np.isfinite(s)]
    index = np.clip(np.floor((s - lo) / bin_width(bins, lo, hi)), 0, bins - 1).astype(np.int64)
    return np.bincount(index, minlength=bins).astype(np.int64)


def merge_histograms(histograms: Sequence[np.ndarray]) -> np.ndarray:
    """The sum of per-part histograms of the same bins (an error names a mismatched one)."""
    if not len(histograms):
        raise ValueError("histograms: expected at least one histogram")
    first = np.asarray(histograms[0])
    for i, h in enumerate(histograms):
        if np.shape(h) != first.shape:
            raise ValueError(
                f"histograms[{i}]: expected shape {first.shape} (the bins of histograms[0]), got {np.shape(h)}"
            )
    return np.sum(np.stack([np.asarray(h, np.int64) for h in histograms]), axis=0)


def top_fraction_threshold(
    histogram: np.ndarray, fraction: float, lo: float = HIST_RANGE[0], hi: float = HIST_RANGE[1]
) -> float:
    """The score threshold keeping the top ``fraction`` of the pool, from its histogram.

    DataComp (``get_threshold``): ``t = sorted_descending(scores)[int(n * fraction)]``, then
    ``score >= t``. Here ``t`` is the lower edge of the bin holding that score, so
    ``t <= t_datacomp < t + bin_width``: ``score >= t`` keeps DataComp's rows plus the rest of
    that bin. ``fraction`` 1 (or ``int(n * fraction) >= n``) keeps every row (``t = lo``).
    """
    fraction = validate.real("fraction", fraction, lo=0.0, hi=1.0)
    counts = np.asarray(histogram, dtype=np.int64)
    if counts.ndim != 1 or not len(counts) or (counts < 0).any():
        raise ValueError(f"histogram: expected a 1-d array of non-negative counts, got shape {counts.shape}")
    n = int(counts.sum())
    if n == 0:
        raise ValueError("histogram: expected at least one score, got an empty histogram")
    k = int(n * fraction)  # DataComp's index into the descending scores
    if k >= n:
        return float(lo)
    from_top = np.cumsum(counts[::-1])  # from_top[j]: scores in the top j + 1 bins
    b = len(counts) - 1 - int(np.searchsorted(from_top, k, side="right"))
    return float(lo + b * bin_width(len(counts), lo, hi))


def filter_lemmas(synsets: pl.DataFrame) -> dict[str, str]:
    """Lemma → wnid over every lemma of ``synsets`` (``wnid``, ``lemmas``: list of str), the
    first synset listing a lemma giving its wnid: the text filter asks only whether a caption
    names *some* listed synset, so unlike LAIONet no shared lemma is dropped."""
    if not isinstance(synsets, pl.DataFrame) or not {"wnid", "lemmas"} <= set(synsets.columns):
        raise ValueError("synsets: expected a polars DataFrame with columns 'wnid' and 'lemmas'")
    long = synsets.select("wnid", "lemmas").explode("lemmas").drop_nulls()
    long = long.with_columns(pl.col("lemmas").str.strip_chars()).filter(pl.col("lemmas").str.len_chars() > 0)
    first = long.unique("lemmas", keep="first", maintain_order=True)
    return dict(zip(first["lemmas"].to_list(), first["wnid"].to_list()))


SYNSET_LISTS = ("imagenet21k", "ilsvrc2012")


def filter_synsets(spec: str) -> pl.DataFrame:
    """The text filter's synsets (``wnid``, ``lemmas``): ``"imagenet21k"`` (DataComp's list:
    the 21,843 synsets of ImageNet-21k as timm ships them), ``"ilsvrc2012"`` (the 1000
    ILSVRC-2012 classes), or a path / fsspec URI of a text file with one wnid a line (their
    lemmas from ImageNet-21k's lemma file)."""
    from laionlab.io import files
    from laionlab.io.imagenet import ilsvrc_synsets, imagenet21k_synsets, synset_lemmas

    if spec == "imagenet21k":
        return imagenet21k_synsets()
    if spec == "ilsvrc2012":
        return ilsvrc_synsets().select("wnid", "lemmas")
    if not isinstance(spec, str) or not files.exists(spec):
        raise ValueError(f"synsets: expected one of {list(SYNSET_LISTS)} or an existing wnid list file, got {spec!r}")
    wnids = [w.strip() for w in files.read_bytes(spec).decode("utf-8").splitlines() if w.strip()]
    if not wnids:
        raise ValueError(f"synsets: {spec} lists no wnids")
    return synset_lemmas(wnids)


def text_filter(
    captions: Sequence[str | None] | pl.Series, lemma_to_wnid: Mapping[str, str], *, case_sensitive: bool = False
) -> np.ndarray:
    """(n,) bool: the caption contains a lemma of ``lemma_to_wnid`` as whole words
    (LAIONet's matcher; ASCII case folded unless ``case_sensitive``). English is not checked
    here; :func:`part_flags` adds it as DataComp does."""
    from laionlab.laionet.match import match_lemmas_frame

    matched = match_lemmas_frame(captions, lemma_to_wnid, case_sensitive=case_sensitive)
    return (matched["wnids"].list.len() > 0).to_numpy()


def part_flags(
    metadata: pl.DataFrame,
    scores: pl.DataFrame,
    lemma_to_wnid: Mapping[str, str],
    *,
    status: pl.DataFrame | None = None,
    rule: BasicRule = BasicRule(),
    clip_threshold: float = LAION2B_THRESHOLD,
    language_column: str | None = "LANGUAGE",
    case_sensitive: bool = False,
) -> pl.DataFrame:
    """Every row-by-row DataComp filter (:data:`PART_FILTERS`) on one part.

    Args:
        metadata: the part's laion_metadata rows (uid, TEXT, WIDTH, HEIGHT, optionally
            ``language_column``).
        scores: uid, clip_score of the part's embedded rows (the pool).
        lemma_to_wnid: the text filter's lemmas (:func:`filter_lemmas`).
        status: img2dataset's status rows (:func:`image_sizes`), or None.
        rule, clip_threshold, language_column, case_sensitive: the filters' parameters.

    Returns:
        One row per metadata row, in its order: uid, clip_score (Float32, null outside the
        pool), width, height, size_source, the basic filter's parts (english, caption, image),
        lemma_match, and one boolean column per filter of :data:`PART_FILTERS`, each false
        outside the pool.
    """
    missing = {"uid", "TEXT"} - set(metadata.columns)
    if missing:
        raise ValueError(f"metadata: expected columns uid, TEXT, WIDTH, HEIGHT, missing {sorted(missing)}")
    if not {"uid", "clip_score"} <= set(scores.columns):
        raise ValueError(f"scores: expected columns uid, clip_score, got {scores.columns}")
    if scores["uid"].is_duplicated().any():
        raise ValueError("scores: expected one row per uid")
    sizes = image_sizes(metadata, status)
    has_language = language_column is not None and language_column in metadata.columns
    basic = basic_filter_flags(
        metadata["TEXT"],
        sizes["width"],
        sizes["height"],
        metadata[language_column].cast(pl.String) if has_language else None,
        rule,
    )
    words = metadata["TEXT"].cast(pl.String).str.count_matches(r"\S+")
    image_caption = (
        basic["english"]
        & (words >= IMAGE_CAPTION_MIN_WORDS)
        & (metadata["TEXT"].str.len_chars() >= rule.min_caption_chars)
    ).fill_null(False)
    frame = pl.concat(
        [
            sizes,
            basic,
            pl.DataFrame(
                {
                    "lemma_match": text_filter(metadata["TEXT"], lemma_to_wnid, case_sensitive=case_sensitive),
                    "image_caption": image_caption,
                }
            ),
        ],
        how="horizontal",
    )
    scored = scores.select("uid", pl.col("clip_score").cast(pl.Float32))
    frame = frame.join(scored, on="uid", how="left", maintain_order="left")
    pool = pl.col("clip_score").is_not_null() & pl.col("clip_score").is_not_nan()
    above = (pl.col("clip_score").cast(pl.Float64) >= clip_threshold).fill_null(False)
    return frame.select(
        "uid",
        "clip_score",
        "width",
        "height",
        "size_source",
        "english",
        "caption",
        "image",
        "lemma_match",
        "image_caption",
        pool.alias("no_filter"),
        (pool & pl.col("basic")).alias("basic"),
        (pool & above).alias("clip_score_threshold"),
        (pool & above & pl.col("english")).alias("laion2b"),
        (pool & pl.col("english") & pl.col("lemma_match")).alias("text_based"),
    )


def select_filters(flags: pl.DataFrame, top_threshold: float, intersect: Sequence[str]) -> pl.DataFrame:
    """A part's flags (:func:`part_flags`) with ``clip_score_top_fraction`` (``clip_score >=
    top_threshold``, the threshold from :func:`top_fraction_threshold`) and ``intersection``
    (every filter named in ``intersect``, each of :data:`FILTERS`) added."""
    unknown = [f for f in intersect if f not in FILTERS]
    if unknown or not len(intersect):
        raise ValueError(f"intersect: expected one or more of {list(FILTERS)}, got {list(intersect)}")
    top_threshold = validate.real("top_threshold", top_threshold)
    top = (pl.col("clip_score").cast(pl.Float64) >= top_threshold).fill_null(False) & pl.col("no_filter")
    out = flags.with_columns(top.alias("clip_score_top_fraction"))
    if "image_based" not in out.columns:  # not computed (no reference set): keeps nothing
        out = out.with_columns(pl.lit(False).alias("image_based"))
    return out.with_columns(pl.all_horizontal([pl.col(f) for f in intersect]).alias("intersection"))


def image_based_targets(centroids: np.ndarray, reference: np.ndarray, block: int = 65_536) -> np.ndarray:
    """DataComp's image-based baseline, step 1 (``apply_filter.load_uids_with_image_filter``):
    the pool cluster each reference image (DataComp: the ImageNet-1k train set's CLIP image
    embeddings) is most similar to — ``argmax(reference @ centroids.T)``, its
    ``get_centroid_ids_gpu`` — unique and sorted."""
    centroids = validate.matrix("centroids", centroids)
    reference = validate.matrix("reference", reference)
    if reference.shape[1] != centroids.shape[1]:
        raise ValueError(
            f"reference: dimension {reference.shape[1]} differs from the centroids' {centroids.shape[1]} "
            "(the reference set and the pool must be embedded by the same model)"
        )
    C = np.asarray(centroids, np.float32)
    ids = [
        np.argmax(np.asarray(reference[i : i + block], np.float32) @ C.T, axis=1)
        for i in range(0, len(reference), block)
    ]
    return np.unique(np.concatenate(ids)) if ids else np.empty(0, np.int64)


def image_based_flags(flags: pl.DataFrame, clusters: pl.DataFrame, targets: np.ndarray) -> pl.DataFrame:
    """Step 2: a part's flags (:func:`part_flags`) with ``image_based``: a pool row passing the
    baseline's caption filter (``image_caption``) whose cluster (``clusters``: uid, cluster —
    its nearest pool centroid by inner product) is one of ``targets``
    (:func:`image_based_targets`). A row without a cluster is not kept."""
    if {"uid", "cluster"} - set(clusters.columns):
        raise ValueError(f"clusters: expected columns uid and cluster, got {clusters.columns}")
    target_set = pl.Series("targets", np.asarray(targets).astype(np.int64))
    member = clusters.select("uid", pl.col("cluster").cast(pl.Int64).is_in(target_set.implode()).alias("in_target"))
    joined = flags.join(member, on="uid", how="left", maintain_order="left")
    keep = pl.col("no_filter") & pl.col("image_caption") & pl.col("in_target").fill_null(False)
    return joined.with_columns(keep.alias("image_based")).drop("in_target")


def selection_verdicts(selected: pl.DataFrame, intersect: Sequence[str]) -> pl.DataFrame:
    """What the intersection did to each pool row of a part (:func:`select_filters`' frame):
    uid, clip_score, verdict (``"kept"`` / ``"rejected"``) and failed (the filters of
    ``intersect`` the row fails, comma-separated; empty when kept). Rows outside the pool
    (never embedded) are left out: no filter saw them."""
    missing = {"uid", "clip_score", "no_filter", "intersection", *intersect} - set(selected.columns)
    if missing:
        raise ValueError(f"selected: expected select_filters' frame, missing columns {sorted(missing)}")
    failed = pl.concat_str([pl.when(~pl.col(f)).then(pl.lit(f)) for f in intersect], separator=", ", ignore_nulls=True)
    return selected.filter(pl.col("no_filter")).select(
        "uid",
        "clip_score",
        verdict=pl.when(pl.col("intersection")).then(pl.lit("kept")).otherwise(pl.lit("rejected")),
        failed=failed.fill_null(""),
    )


@dataclass
class Selection:
    """Every part's selection: ``counts`` (one row per part: part, then the rows each filter
    and the intersection kept) and ``kept`` (filter → uid of every kept row, all parts, sorted)."""

    counts: pl.DataFrame
    kept: dict[str, pl.DataFrame]


def select_parts(
    flags_of: Callable[[str], pl.DataFrame],
    parts: Sequence[str],
    top_threshold: float,
    intersect: Sequence[str],
    export: Sequence[str],
) -> Selection:
    """:func:`select_filters` over ``parts``, one part in memory at a time (``flags_of(part)``
    reads a part's :func:`part_flags`): the per-part counts, and the uids kept by each filter
    of ``export`` (plus ``"intersection"``) for :func:`export_frame`."""
    names = [*dict.fromkeys([*export, "intersection"])]
    unknown = [f for f in names if f not in (*FILTERS, "intersection")]
    if unknown:
        raise ValueError(f"export: expected filters among {list(FILTERS)}, got {unknown}")
    rows, kept = [], {f: [] for f in names}
    for part in parts:
        selected = select_filters(flags_of(part), top_threshold, intersect)
        rows.append({"part": part, **filter_counts(selected)})
        for f in names:
            kept[f].append(selected.filter(pl.col(f)).select("uid"))
    schema = {"part": pl.String, **{f: pl.Int64 for f in (*FILTERS, "intersection")}}
    return Selection(
        counts=pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema),
        kept={
            f: pl.concat(frames).sort("uid") if frames else pl.DataFrame(schema={"uid": pl.String})
            for f, frames in kept.items()
        },
    )


def filter_counts(selected: pl.DataFrame) -> dict[str, int]:
    """Rows kept by each filter (and the intersection) of :func:`select_filters`' frame."""
    names = [f for f in (*FILTERS, "intersection") if f in selected.columns]
    row = selected.select(pl.col(f).sum() for f in names).row(0)
    return {name: int(v) for name, v in zip(names, row)}


def uid_hex(uids: Sequence[str] | pl.Series) -> list[str]:
    """The 32-hex-digit (128-bit) DataComp-style uid of each of our uids: its MD5."""
    return [hashlib.md5(u.encode("utf-8")).hexdigest() for u in validate.string_series("uids", uids).to_list()]


def datacomp_uids(hex_uids: Sequence[str]) -> np.ndarray:
    """(n,) :data:`UID_DTYPE`, sorted: DataComp's ``(int(uid[:16], 16), int(uid[16:32], 16))``
    pairs, as its ``apply_filter`` saves them (``uids.sort(); np.save(path, uids)``)."""
    bad = [h for h in hex_uids if len(h) != 32]
    if bad:
        raise ValueError(f"hex_uids: expected 32 hex digits each, got {bad[0]!r}")
    out = np.array([(int(h[:16], 16), int(h[16:32], 16)) for h in hex_uids], dtype=UID_DTYPE)
    out.sort()
    return out


def export_frame(kept: pl.DataFrame) -> pl.DataFrame:
    """The export table of kept rows (a ``uid`` column): uid, part (from the uid,
    ``"<part>:<row>"``) and uid_hex (the row's DataComp uid, :func:`uid_hex`), by uid."""
    if "uid" not in kept.columns:
        raise ValueError(f"kept: expected a 'uid' column, got {kept.columns}")
    kept = kept.select("uid").sort("uid")
    return kept.with_columns(
        pl.col("uid").str.replace(r":[^:]*$", "").alias("part"),
        pl.Series("uid_hex", uid_hex(kept["uid"]), dtype=pl.String),
    )
