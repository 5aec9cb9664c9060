"""MetaCLIP's per-concept balancing (Xu et al., "Demystifying CLIP Data", ICLR 2024; public code
facebookresearch/MetaCLIP, ``metaclip/substr_matching.py``, ``metaclip/balancing.py``,
``metaclip/metaclip1/indexing/balance_sampling.py``).

**MetaCLIP's rule, reproduced.** Every caption is matched against a list of concepts
(MetaCLIP's "metadata entries", 500k WordNet synsets and Wikipedia n-grams / titles; here a
configurable list: the ILSVRC lemmas or a file). ``count(e)`` is the number of captions that
match entry ``e`` (a caption counts once per entry it matches, whatever the number of
occurrences). With the cap ``t`` (:data:`METACLIP_T`, 20,000, the paper's value for its 400M
pool) each entry gets the probability ``p(e) = t / max(count(e), t)`` (``entry_count[entry_count
< t] = t; entry_prob = t / entry_count``), and **every (caption, matched entry) pair draws its own
uniform number**: the caption is kept if any of its pairs draws below its entry's probability
(``balance_sampling``: ``random.random() < entry_prob[entry_id]`` over the matched entries, keep
on the first success; ``balance_sampling.py``: one ``random_sample`` per inverted-index pair, a
pair offset kept when any of its entries is selected). A caption with no matched entry is
dropped. So a caption is kept with probability

    P(keep) = 1 - prod over matched e of (1 - p(e)),

which is at least ``max_e p(e)`` (equal for a single entry, and 1 once any matched entry is
under the cap); each entry keeps about ``min(count(e), t)`` of its own captions plus those
its captions' other entries keep.

**Matching** (:func:`match_concepts`, ``rule``): ``metaclip`` (default) is
``substr_matching.py``'s: the caption is padded with one space on each side, each of
``, . ; : ? ! ``` gets a space on both sides, tab / newline / carriage return become spaces, and
entry ``e`` matches when ``" " + e + " "`` is a substring (case-sensitive; an entry holding one of
those seven characters can never match, as in MetaCLIP). ``laionet`` is seed 001's lemma rule
(:func:`laionlab.laionet.match_lemmas_frame`: all ASCII punctuation → spaces, case-sensitive)
and ``swat`` seed 003's synonym rule (:func:`laionlab.swat.match_synonyms`: case- and
diacritic-insensitive whole words). All three run as one Aho-Corasick pass per caption
(:mod:`laionlab.aho_corasick`).

**Deviation: the draws** (:func:`uniform_draws`). MetaCLIP draws from Python's (or numpy's)
global random stream in file order, so a row's fate depends on every row read before it. Here
the draw of the pair (caption ``uid``, concept string ``c``) under ``seed`` is a hash:

    u = (M(M(F(uid) ^ M(seed)) ^ F(c)) >> 11) / 2**53   in [0, 1),

with ``F`` the 64-bit FNV-1a hash of the UTF-8 bytes (offset basis 0xcbf29ce484222325, prime
0x100000001b3), ``M`` SplitMix64's output function (``x += 0x9e3779b97f4a7c15``; ``x = (x ^ x >> 30)
* 0xbf58476d1ce4e5b9``; ``x = (x ^ x >> 27) * 0x94d049bb133111eb``; ``x ^ x >> 31``), all arithmetic
modulo 2**64, and the pair kept when ``u < p(e)``. A part's result then depends only on its own
rows, the global counts, ``t`` and ``seed``, not on the order or the content of other parts, and
the concept list can be reordered without changing any draw. The pairs' draws are independent
uniforms in distribution (tested against the closed form above over many seeds).

**Counts across parts** (:func:`concept_counts`, :func:`sum_counts`): counts are per part and
summed, so a part is matched once and the global count is the sum over the parts registered.

Nothing here imports Dagster.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from laionlab import aho_corasick, validate

__all__ = [
    "MATCH_RULES",
    "METACLIP_T",
    "MatchRule",
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

METACLIP_T = 20_000  # the paper's cap for its 400M-pair pool (MetaCLIP-400M, Section 3.3)

MatchRule = Literal["metaclip", "laionet", "swat"]
MATCH_RULES: tuple[str, ...] = ("metaclip", "laionet", "swat")

# substr_matching.spacing: these are wrapped in spaces, those become spaces.
METACLIP_WRAPPED = [",", ".", ";", ":", "?", "!", "`"]
METACLIP_SPACED = ["\t", "\n", "\r"]

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MAX_SEED = 2**64 - 1


# --- concepts ---------------------------------------------------------------------------------


def concept_table(concepts: Sequence[str]) -> pl.DataFrame:
    """The concept list as a table: ``concept_id`` (UInt32, the position, MetaCLIP's entry id)
    and ``concept`` (str). Concepts must be non-empty strings without surrounding whitespace
    (an empty or space-padded one would match plain whitespace) and unique."""
    if isinstance(concepts, (str, bytes)) or not isinstance(concepts, Sequence | pl.Series):
        raise ValueError(f"concepts: expected a list of str, got {type(concepts).__name__}")
    series = validate.string_series("concept", list(concepts))
    if series.null_count():
        raise ValueError("concepts: expected str items, got None")
    bad = series.filter((series.str.strip_chars() != series) | (series.str.len_chars() == 0))
    if bad.len():
        raise ValueError(f"concepts: expected non-empty concepts without surrounding whitespace, got {bad[0]!r}")
    duplicated = series.filter(series.is_duplicated())
    if duplicated.len():
        raise ValueError(f"concepts: expected unique concepts, {duplicated[0]!r} is listed more than once")
    return pl.DataFrame({"concept_id": pl.int_range(series.len(), dtype=pl.UInt32, eager=True), "concept": series})


def concepts_digest(concepts: Sequence[str]) -> str:
    """A short fingerprint of the concept list (order included: concept ids are positions)."""
    return hashlib.sha256(json.dumps(list(concepts), ensure_ascii=False).encode()).hexdigest()[:16]


def read_concepts_file(path: str | Path) -> list[str]:
    """Concepts from a file: a JSON list of strings (``.json``, MetaCLIP's ``metadata.json``) or
    plain text with one concept per line (surrounding whitespace stripped, empty lines and lines
    starting with ``#`` skipped). Checked by :func:`concept_table`."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"concepts_file: no file {str(path)!r}")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        concepts = json.loads(text)
        if not isinstance(concepts, list):
            raise ValueError(f"concepts_file {str(path)!r}: expected a JSON list of strings")
    else:
        concepts = [line.strip() for line in text.splitlines()]
        concepts = [c for c in concepts if c and not c.startswith("#")]
    if not concepts:
        raise ValueError(f"concepts_file {str(path)!r}: holds no concept")
    concept_table(concepts)
    return concepts


# --- matching ---------------------------------------------------------------------------------


def _metaclip_text(text: pl.Expr) -> pl.Expr:
    text = text.str.replace_many(
        METACLIP_WRAPPED + METACLIP_SPACED, [f" {c} " for c in METACLIP_WRAPPED] + [" "] * len(METACLIP_SPACED)
    )
    return pl.concat_str(pl.lit(" "), text, pl.lit(" "))


def _ids_of(names: pl.Series, table: pl.DataFrame) -> pl.Series:
    """Lists of concept strings → sorted lists of their concept ids."""
    mapping = dict(zip(table["concept"].to_list(), table["concept_id"].to_list()))
    return names.list.eval(pl.element().replace_strict(mapping, return_dtype=pl.UInt32)).list.sort()


def match_concepts(
    captions: Sequence[str | None] | pl.Series, concepts: Sequence[str], rule: MatchRule = "metaclip"
) -> pl.DataFrame:
    """The concepts each caption matches, by ``rule`` (module docstring).

    Returns one row per caption, in order: ``row`` (UInt32, its position) and ``concept_ids``
    (list of UInt32 positions in ``concepts``, sorted, unique; empty for no match and for null
    captions).
    """
    series = validate.string_series("captions", captions)
    table = concept_table(concepts)
    if rule == "metaclip":
        table = table.with_columns(pl.concat_str(pl.lit(" "), pl.col("concept"), pl.lit(" ")).alias("pattern"))
        texts = pl.LazyFrame({"caption": series}).with_row_index("row")
        texts = texts.select("row", _metaclip_text(pl.col("caption")).alias("text"))
        return aho_corasick.matches_per_row(texts, series.len(), table, {"concept_ids": "concept_id"})
    if rule == "laionet":
        from laionlab.laionet.match import match_lemmas_frame

        matched = match_lemmas_frame(series, {c: c for c in table["concept"]})
        return matched.select("row", _ids_of(matched["lemmas"], table).alias("concept_ids"))
    if rule == "swat":
        from laionlab.swat.match import match_synonyms

        matched = match_synonyms(series, {int(i): [c] for i, c in table.iter_rows()})
        return matched.select("row", pl.col("classes").cast(pl.List(pl.UInt32)).alias("concept_ids"))
    raise ValueError(f"rule: expected one of {', '.join(MATCH_RULES)}, got {rule!r}")


# --- counts -----------------------------------------------------------------------------------


def _pairs(concept_ids: pl.Series, n_concepts: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, concept id) of every matched pair, rows in order."""
    if not isinstance(concept_ids, pl.Series) or not isinstance(concept_ids.dtype, pl.List):
        raise ValueError("concept_ids: expected a polars Series of lists of concept ids (match_concepts' column)")
    frame = (
        pl.DataFrame({"ids": concept_ids})
        .with_row_index("row")
        .explode("ids")
        .drop_nulls("ids")
        .select(pl.col("row").cast(pl.Int64), pl.col("ids").cast(pl.Int64))
    )
    ids = frame["ids"].to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() >= n_concepts):
        raise ValueError(f"concept_ids: expected ids in [0, {n_concepts}), got {int(ids.min())}..{int(ids.max())}")
    return frame["row"].to_numpy(), ids


def concept_counts(concept_ids: pl.Series, n_concepts: int) -> np.ndarray:
    """Captions per concept, ``(n_concepts,)`` uint64: each caption counts once in every concept
    of its list (MetaCLIP's ``entry_count``). ``concept_ids``: :func:`match_concepts`' column."""
    n_concepts = validate.int_at_least("n_concepts", n_concepts, 1)
    _, ids = _pairs(concept_ids, n_concepts)
    return np.bincount(ids, minlength=n_concepts).astype(np.uint64)


def sum_counts(counts: Iterable[np.ndarray]) -> np.ndarray:
    """Per-part counts (each ``(n_concepts,)``, the same concept list) summed: the pool's counts."""
    arrays = [np.asarray(c) for c in counts]
    if not arrays:
        raise ValueError("counts: expected at least one part's counts")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or len(arrays[0].shape) != 1:
        raise ValueError(f"counts: expected 1-d arrays of one length (one concept list), got shapes {sorted(shapes)}")
    if any(a.dtype.kind not in "iu" or (a.dtype.kind == "i" and (a < 0).any()) for a in arrays):
        raise ValueError("counts: expected non-negative integer counts")
    return np.sum([a.astype(np.uint64) for a in arrays], axis=0, dtype=np.uint64)


def entry_probability(counts: np.ndarray, t: int = METACLIP_T) -> np.ndarray:
    """``t / max(count, t)`` per concept, float64 (MetaCLIP's ``entry_prob``): 1 for concepts
    at or under the cap, ``t / count`` above it."""
    t = validate.int_at_least("t", t, 1)
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.dtype.kind not in "iu":
        raise ValueError(f"counts: expected a 1-d integer array, got {counts.dtype} of shape {counts.shape}")
    return t / np.maximum(counts.astype(np.float64), float(t))


def keep_probability(concept_ids: pl.Series, probability: np.ndarray) -> np.ndarray:
    """``1 - prod over the row's concepts of (1 - p(e))`` per row, float64 (0 for a row with no
    concept): the chance MetaCLIP's per-pair draws keep the row."""
    probability = np.asarray(probability, dtype=np.float64)
    rows, ids = _pairs(concept_ids, len(probability))
    with np.errstate(divide="ignore"):
        log_miss = np.log1p(-probability[ids])  # -inf where p = 1
    return 1.0 - np.exp(np.bincount(rows, weights=log_miss, minlength=concept_ids.len()))


# --- the draws --------------------------------------------------------------------------------


def _fnv1a64(strings: pl.Series) -> np.ndarray:
    """64-bit FNV-1a of each string's UTF-8 bytes, vectorised over rows (one pass per byte
    position, each row hashing only its own bytes)."""
    import pyarrow as pa

    arr = strings.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_string())
    n = len(arr)
    _, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    h = np.full(n, _FNV_OFFSET, dtype=np.uint64)
    for j in range(int(lengths.max(initial=0))):
        live = np.flatnonzero(lengths > j)
        h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
    return h


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's output function, elementwise on uint64 (wrapping)."""
    x = x + _GAMMA
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _checked_seed(seed: int) -> np.ndarray:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) <= _MAX_SEED:
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed!r}")
    return _mix(np.array([int(seed)], dtype=np.uint64))


def _unit(x: np.ndarray) -> np.ndarray:
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _uid_series(uids) -> pl.Series:
    series = validate.string_series("uids", uids)
    if series.null_count():
        raise ValueError("uids: expected no null uid (the draw is keyed by it)")
    return series


def uniform_draws(uids: Sequence[str] | pl.Series, concepts: Sequence[str] | pl.Series, seed: int = 0) -> np.ndarray:
    """The uniform draw in [0, 1) of each (uid, concept) pair (aligned sequences) under ``seed``,
    float64, by the module docstring's hash: the same pair and seed always give the same number."""
    uids, concepts = _uid_series(uids), validate.string_series("concepts", concepts)
    if uids.len() != concepts.len() or concepts.null_count():
        raise ValueError(f"concepts: expected {uids.len()} non-null concepts (one per uid), got {concepts.len()}")
    return _unit(_mix(_mix(_fnv1a64(uids) ^ _checked_seed(seed)) ^ _fnv1a64(concepts)))


# --- balancing --------------------------------------------------------------------------------


def keep_rows(
    matches: pl.DataFrame, counts: np.ndarray, concepts: Sequence[str], t: int = METACLIP_T, seed: int = 0
) -> pl.DataFrame:
    """MetaCLIP's balanced sample of ``matches`` given the pool's ``counts``.

    Args:
        matches: ``uid`` (str, unique) and ``concept_ids`` (:func:`match_concepts`' column).
        counts: the pool's captions per concept, ``(len(concepts),)``, e.g. :func:`sum_counts`
            of every part's :func:`concept_counts`; a concept the rows match must be counted.
        concepts: the concept list the ids point into (its strings key the draws).
        t: the cap (MetaCLIP: 20,000).
        seed: the draws' seed, an integer in [0, 2**64).

    Returns:
        One row per row of ``matches``, in order: ``uid``, ``n_concepts`` (UInt32),
        ``keep_probability`` (Float64, the closed form of :func:`keep_probability`) and ``keep``
        (Boolean: some pair's draw fell under its concept's probability).
    """
    if not isinstance(matches, pl.DataFrame) or {"uid", "concept_ids"} - set(matches.columns):
        raise ValueError("matches: expected a frame with columns 'uid' and 'concept_ids'")
    table = concept_table(concepts)
    counts = np.asarray(counts)
    if counts.shape != (table.height,):
        raise ValueError(f"counts: expected shape ({table.height},) (one per concept), got {counts.shape}")
    uids = _uid_series(matches["uid"])
    if uids.is_duplicated().any():
        raise ValueError(f"matches: expected unique uids, {uids.filter(uids.is_duplicated())[0]!r} repeats")
    probability = entry_probability(counts, t)
    rows, ids = _pairs(matches["concept_ids"], table.height)
    uncounted = ids[counts[ids] == 0]
    if len(uncounted):
        raise ValueError(
            f"counts: concept {table['concept'][int(uncounted[0])]!r} is matched by these rows but counted 0 times "
            "(counts that do not include these rows)"
        )
    pair_draws = _unit(_mix(_mix(_fnv1a64(uids)[rows] ^ _checked_seed(seed)) ^ _fnv1a64(table["concept"])[ids]))
    kept = np.bincount(rows[pair_draws < probability[ids]], minlength=matches.height) > 0
    return pl.DataFrame(
        {
            "uid": uids.rename("uid"),
            "n_concepts": matches["concept_ids"].list.len().cast(pl.UInt32),
            "keep_probability": keep_probability(matches["concept_ids"], probability),
            "keep": kept,
        }
    )


def per_concept_kept(concept_ids: pl.Series, keep: np.ndarray | pl.Series, n_concepts: int) -> pl.DataFrame:
    """Per concept: ``matched`` (rows matching it) and ``kept`` (of those, rows kept), UInt64,
    ``concept_id`` in order, every concept listed."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (concept_ids.len(),):
        raise ValueError(f"keep: expected one flag per row ({concept_ids.len()}), got shape {keep.shape}")
    rows, ids = _pairs(concept_ids, validate.int_at_least("n_concepts", n_concepts, 1))
    return pl.DataFrame(
        {
            "concept_id": np.arange(n_concepts, dtype=np.uint32),
            "matched": np.bincount(ids, minlength=n_concepts).astype(np.uint64),
            "kept": np.bincount(ids[keep[rows]], minlength=n_concepts).astype(np.uint64),
        }
    )
