"""SWAT's string-matching retrieval: captions that contain a concept synonym (seed 003: Liu et
al., "Few-Shot Recognition via Stage-Wise Retrieval-Augmented Finetuning", CVPR 2025; public
code tian1327/SWAT, ``retrieval/laion_parser.py``).

**What the seed does.** ``create_fts_table`` stores every LAION caption in a SQLite FTS5 table
(default ``unicode61`` tokenizer) after deleting ``"`` and ``'`` and turning ``-`` and ``_``
into spaces (a null caption becomes ``"N.A."``). ``__get_text_worker__`` then queries, class by
class, every synonym (``clean_text``: strip, delete ``'`` ``"``, ``-``/``_`` → space,
lower-case; spaces → `` + ``, FTS5's phrase concatenation; ``(``/``)`` dropped when both occur;
``--prefix`` prepended as one more bare token; the whole expression double-quoted when it
still holds ``(``+``)``, ``.`` or ``/``): :func:`seed_fts5_query` writes that string. A hit is
a caption whose tokens contain the synonym's tokens consecutively and, with a prefix, the
prefix token anywhere. There is no post-filter on the hits. A class keeps the set of captions
hit by any of its synonyms (``actual_freq`` = its size, written to
``{dataset}_class_frequency-LAION400M.json`` as ``{class: {"name", "actual_freq"}}`` sorted by
frequency); classes are searched independently, so **a caption matching two classes is kept
by both** (``laion_downloader.py`` downloads it once per class folder and
``sample_retrieval.py`` ranks it in each class; it can reach the final ``T2T500.txt`` under
both labels). Here the same: :func:`match_synonyms` records every class matched.

**The rule here** (one polars Aho-Corasick pass over all synonyms,
:func:`laionlab.aho_corasick.matches_per_row`, shared with :mod:`laionlab.laionet.match`),
applied alike to captions, synonyms and the prefix:

1. lower-case (Unicode, ``str.to_lowercase``);
2. for text with any non-ASCII character: Unicode NFD, then the combining diacritical marks
   U+0300–U+036F deleted, so "Café" ≡ "cafe" (as ``unicode61``'s default ``remove_diacritics``
   folds Latin letters);
3. ``'`` and ``"`` deleted (the seed's normalisation): "men's" ≡ "mens", so the synonym "men"
   does not match "men's", as in the seed;
4. every maximal run of characters that are not letters, digits or combining marks
   (``[^\\p{L}\\p{N}\\p{M}]+``) → one space; then one space of padding on each side.

A **word** is a maximal run of letters/digits/marks of the result, and a synonym (or prefix)
matches when its words occur as consecutive whole words of the caption: the synonym
``" red fox "`` is a substring of the padded caption. So "cat" does not match "category" or
"cats"; "red-fox", "Red_Fox", "red, fox" and "RED FOX!" all match "red fox"; "redfox" does
not. With ``prefix`` ("satellite" for EuroSAT), a caption must also contain the prefix as whole
word(s) somewhere (it may be part of the synonym's own occurrence, as in FTS5).

**Where this and the seed's FTS5 search can differ** (never on ASCII captions and synonyms
whose seed query is valid FTS5): a synonym whose cleaned text holds other FTS5 syntax
(``&``, ``,``, ``:``, ``!``, a lone ``(`` ...) makes the seed's query fail, and the seed prints
"exception" and skips that synonym, while here it matches as its words; a multi-word prefix is
a phrase here but separate AND-ed tokens in the seed (and, when the synonym holds ``.`` or
``/``, the seed quotes prefix and synonym into one phrase); non-ASCII text: FTS5 folds case by
its own tables (here Unicode lower-casing: "ΣΑΣ" → "σας" vs FTS5's "σασ"), strips diacritics
of precomposed Latin letters only (here NFD strips U+0300–U+036F from any script, e.g. Greek
tonos) and treats private-use characters as word characters (here separators); a null caption
never matches here (the seed indexes it as "N.A.").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import polars as pl

from laionlab import aho_corasick, validate
from laionlab.swat.synonyms import ClassKey, ClassSynonyms, from_class_names

__all__ = ["caption_rows", "class_frequency", "match_synonyms", "matched_captions", "normalise", "seed_fts5_query"]

# The rule's character classes (module docstring, steps 2-4).
DIACRITIC_MARKS = r"[\u0300-\u036f]"
DELETED_CHARS = r"['\"]"
SEPARATOR_RUN = r"[^\p{L}\p{N}\p{M}]+"
NON_ASCII = r"[^\x00-\x7f]"


def _words(text: pl.Expr, non_ascii: bool) -> pl.Expr:
    text = text.str.to_lowercase()
    if non_ascii:
        text = text.str.normalize("NFD").str.replace_all(DIACRITIC_MARKS, "")
    return text.str.replace_all(DELETED_CHARS, "").str.replace_all(SEPARATOR_RUN, " ")


def _padded_frame(frame: pl.LazyFrame, column: str) -> pl.LazyFrame:
    """``frame`` with ``column`` replaced by its padded word string; ASCII rows skip NFD."""
    non_ascii = pl.col(column).str.contains(NON_ASCII)
    parts = [
        frame.filter(flag).with_columns(
            pl.concat_str(pl.lit(" "), _words(pl.col(column), nfd).str.strip_chars(" "), pl.lit(" ")).alias(column)
        )
        for flag, nfd in ((~non_ascii, False), (non_ascii, True))
    ]
    return pl.concat(parts)


def normalise(texts: Sequence[str | None] | pl.Series) -> pl.Series:
    """Each text's words (module docstring, steps 1-4) joined by single spaces, no padding;
    None stays None. ``normalise(["Red-Fox's den!"])`` → ``["red foxs den"]``."""
    series = validate.string_series("texts", texts)
    base = pl.DataFrame({"texts": series}).with_row_index("row")
    done = _padded_frame(base.lazy().drop_nulls("texts"), "texts")
    out = base.lazy().select("row").join(done, on="row", how="left", maintain_order="left").collect()
    return out["texts"].str.strip_chars(" ")


def _synonym_table(synonyms: Mapping[ClassKey, ClassSynonyms]) -> pl.DataFrame:
    keys = list(synonyms)
    dtype = pl.Int64 if isinstance(keys[0], int) else pl.String
    classes = [k for k in keys for _ in synonyms[k].synonyms]
    strings = [s for k in keys for s in synonyms[k].synonyms]
    table = pl.DataFrame(
        {"class": pl.Series(classes, dtype=dtype), "synonym": pl.Series(strings, dtype=pl.String)}
    ).with_columns(pl.col("synonym").alias("pattern"))
    table = _padded_frame(table.lazy(), "pattern").collect()
    empty = table.filter(pl.col("pattern").str.strip_chars(" ") == "")
    if empty.height:
        raise ValueError(
            f"synonyms: {empty['synonym'][0]!r} of class {empty['class'][0]!r} has no letter or "
            "digit once normalised, so it can match no caption"
        )
    return table


def match_synonyms(
    captions: Sequence[str | None] | pl.Series,
    synonyms: Mapping[ClassKey, ClassSynonyms | Sequence[str] | str],
    prefix: str | None = None,
) -> pl.DataFrame:
    """Every class whose synonyms occur in each caption, by the rule of the module docstring.

    Args:
        captions: the captions (None allowed, never matches).
        synonyms: class → :class:`ClassSynonyms` (:func:`load_metrics_json`,
            :func:`from_class_names`) or → list of synonyms / one name; checked by
            :func:`from_class_names`. A synonym listed under two classes matches both.
        prefix: optional word(s) every matching caption must also contain (the seed's
            ``--prefix``, "satellite" for EuroSAT).

    Returns:
        One row per caption, in order: ``row`` (UInt32, the caption's position), ``classes``
        (list of the class keys matched, Int64 or String as the keys, sorted, unique; empty
        where none) and ``synonyms`` (the matched synonyms as given, sorted, unique).
    """
    series = validate.string_series("captions", captions)
    if not isinstance(synonyms, Mapping) or not synonyms:
        raise ValueError(f"synonyms: expected a non-empty mapping class -> synonyms, got {type(synonyms).__name__}")
    checked = from_class_names(synonyms)
    table = _synonym_table(checked)
    prefix_pattern = None
    if prefix is not None:
        if not isinstance(prefix, str):
            raise ValueError(f"prefix: expected a str or None, got {type(prefix).__name__}")
        prefix_pattern = normalise([prefix])[0]
        if not prefix_pattern:
            raise ValueError(f"prefix: expected at least one letter or digit, got {prefix!r}")
        prefix_pattern = f" {prefix_pattern} "

    texts = _padded_frame(pl.LazyFrame({"text": series}).with_row_index("row").drop_nulls("text"), "text")
    if prefix_pattern is not None:
        texts = texts.filter(pl.col("text").str.contains(prefix_pattern, literal=True))
    return aho_corasick.matches_per_row(texts, series.len(), table, {"classes": "class", "synonyms": "synonym"})


def matched_captions(
    captions: pl.DataFrame,
    synonyms: Mapping[ClassKey, ClassSynonyms | Sequence[str] | str],
    prefix: str | None = None,
) -> pl.DataFrame:
    """The captions (``captions``: uid, TEXT) that match at least one class by
    :func:`match_synonyms`' rule, in order: uid, ``classes`` (the class keys as strings, as
    string_matches stores them) and ``synonyms`` (those found)."""
    if not isinstance(captions, pl.DataFrame) or {"uid", "TEXT"} - set(captions.columns):
        raise ValueError("captions: expected a frame with columns 'uid' and 'TEXT'")
    matched = match_synonyms(captions["TEXT"], synonyms, prefix=prefix)
    rows = pl.concat([captions.select("uid"), matched.select("classes", "synonyms")], how="horizontal")
    return rows.filter(pl.col("classes").list.len() > 0).with_columns(pl.col("classes").cast(pl.List(pl.String)))


def caption_rows(captions: pl.DataFrame, part: str) -> pl.DataFrame:
    """A part's rows of the caption search index: uid, part, TEXT and ``normalised`` (the
    caption as :func:`normalise` makes it, without its outer spaces: what phrase queries
    search), from ``captions`` (uid, TEXT)."""
    if not isinstance(captions, pl.DataFrame) or {"uid", "TEXT"} - set(captions.columns):
        raise ValueError("captions: expected a frame with columns 'uid' and 'TEXT'")
    if not isinstance(part, str) or not part:
        raise ValueError(f"part: expected a non-empty partition key, got {part!r}")
    normalised = normalise(captions["TEXT"]).str.strip_chars()
    return captions.with_columns(part=pl.lit(part), normalised=normalised).select("uid", "part", "TEXT", "normalised")


def class_frequency(matches: pl.DataFrame, classes: Iterable[ClassKey] | None = None) -> dict[ClassKey, int]:
    """Captions matched per class (the seed's ``actual_freq``: a caption counts once per class
    however many of its synonyms it holds, and once in every class it matches).

    ``matches``: :func:`match_synonyms`'s frame (its ``classes`` column is used). ``classes``:
    optional class keys (e.g. the synonyms mapping) to list with 0 when unmatched. Returns
    class → count, most frequent first, equal counts by class key (the seed's
    ``class_frequency`` order; its JSON is ``{str(k): {"name": synonyms[k].name, "actual_freq":
    n}}``).
    """
    if not isinstance(matches, pl.DataFrame) or "classes" not in matches.columns:
        raise ValueError("matches: expected match_synonyms' frame with a 'classes' column")
    if not isinstance(matches.schema["classes"], pl.List):
        raise ValueError(f"matches: expected 'classes' of a List dtype, got {matches.schema['classes']}")
    counts = (
        matches.select(pl.col("classes").explode().alias("class"))
        .drop_nulls()
        .group_by("class")
        .agg(pl.len().alias("n"))
    )
    freq = {k: int(n) for k, n in zip(counts["class"].to_list(), counts["n"].to_list())}
    if classes is not None:
        for key in classes:
            freq.setdefault(key, 0)
    return dict(sorted(freq.items(), key=lambda kv: (-kv[1], kv[0])))


def _seed_clean_text(text: str) -> str:
    # laion_parser.clean_text, verbatim in effect.
    return text.strip().replace("'", "").replace('"', "").replace("-", " ").replace("_", " ").replace("  ", " ").lower()


def seed_fts5_query(synonym: str, prefix: str | None = None) -> str:
    """The FTS5 ``MATCH`` expression ``laion_parser.py`` sends for ``synonym``
    (``__get_text_worker__`` → ``clean_text`` → ``parse_multi_words``), e.g. ``"red fox"`` →
    ``red + fox``; with ``prefix="satellite"`` → ``satellite red + fox``; ``"st. bernard"`` →
    ``"st. + bernard"`` (quoted). The seed interpolates it into ``MATCH '...'``; bind it as a
    parameter instead. It can be invalid FTS5 (see the module docstring); the seed then skips
    the synonym."""
    if not isinstance(synonym, str):
        raise ValueError(f"synonym: expected a str, got {type(synonym).__name__}")
    if prefix is not None and not isinstance(prefix, str):
        raise ValueError(f"prefix: expected a str or None, got {type(prefix).__name__}")
    text = _seed_clean_text(_seed_clean_text(synonym)).replace(" ", " + ")
    if "(" in text and ")" in text:
        text = text.replace("(", "").replace(")", "")
    if prefix is not None:
        text = prefix + " " + text
    if ("(" in text and ")" in text) or "." in text or "/" in text:
        return f'"{text}"'
    return text
