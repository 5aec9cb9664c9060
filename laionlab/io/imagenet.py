"""The 1000 ILSVRC-2012 synsets (and ImageNet-21k's 21,843), read from the files timm ships.

timm carries `imagenet_synsets.txt` (the 1000 wnids in class-index order),
`imagenet21k_goog_synsets.txt` (ImageNet-21k's wnids, Google's release order),
`imagenet_synset_to_lemma.txt` and `imagenet_synset_to_definition.txt` (all of ImageNet-21k),
so no download is needed. :func:`read_synsets_table` reads a user's own synset table instead.
"""

from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources

import polars as pl

from laionlab.io import files


def _read_tsv(name: str) -> dict[str, str]:
    text = resources.files("timm.data._info").joinpath(name).read_text(encoding="utf-8")
    pairs = (line.split("\t", 1) for line in text.splitlines() if line.strip())
    return {wnid: value.strip() for wnid, value in pairs}


@lru_cache(maxsize=1)
def ilsvrc_synsets() -> pl.DataFrame:
    """The ILSVRC-2012 synsets in class-index order.

    Returns a frame with columns `class_index` (0..999), `wnid`, `lemmas` (list of str, in
    WordNet order, original case), `name` (the first lemma) and `definition`.
    """
    text = resources.files("timm.data._info").joinpath("imagenet_synsets.txt").read_text()
    wnids = [w.strip() for w in text.splitlines() if w.strip()]
    lemmas = _read_tsv("imagenet_synset_to_lemma.txt")
    definitions = _read_tsv("imagenet_synset_to_definition.txt")
    rows = [
        {
            "class_index": i,
            "wnid": wnid,
            "lemmas": [lemma.strip() for lemma in lemmas[wnid].split(",")],
            "definition": definitions[wnid],
        }
        for i, wnid in enumerate(wnids)
    ]
    frame = pl.DataFrame(rows, schema_overrides={"class_index": pl.Int32})
    return frame.with_columns(pl.col("lemmas").list.first().alias("name")).select(
        "class_index", "wnid", "lemmas", "name", "definition"
    )


@lru_cache(maxsize=1)
def imagenet21k_synsets() -> pl.DataFrame:
    """The 21,843 synsets of ImageNet-21k (Google's release, the list timm ships), in file
    order: columns `wnid` and `lemmas` (list of str, WordNet order, original case)."""
    text = resources.files("timm.data._info").joinpath("imagenet21k_goog_synsets.txt").read_text()
    wnids = [w.strip() for w in text.splitlines() if w.strip()]
    lemmas = _read_tsv("imagenet_synset_to_lemma.txt")
    return pl.DataFrame(
        {"wnid": wnids, "lemmas": [[lemma.strip() for lemma in lemmas[w].split(",")] for w in wnids]},
        schema={"wnid": pl.String, "lemmas": pl.List(pl.String)},
    )


def synset_lemmas(wnids: list[str]) -> pl.DataFrame:
    """`wnid` and `lemmas` of the given wnids from timm's ImageNet-21k lemma file (any synset
    of ImageNet-21k); an unknown wnid is an error naming the first few."""
    lemmas = _read_tsv("imagenet_synset_to_lemma.txt")
    unknown = [w for w in wnids if w not in lemmas]
    if unknown:
        raise ValueError(f"wnids not in ImageNet-21k's lemma list: {unknown[:5]} ({len(unknown)} in all)")
    return pl.DataFrame(
        {"wnid": list(wnids), "lemmas": [[lemma.strip() for lemma in lemmas[w].split(",")] for w in wnids]},
        schema={"wnid": pl.String, "lemmas": pl.List(pl.String)},
    )


def read_synsets_table(uri: str, name: str = "synsets_file") -> pl.DataFrame:
    """A user's synset table in the shape of :func:`ilsvrc_synsets`.

    Args:
        uri: a local path or an fsspec URI of a parquet file (``.parquet``) or a TSV with a
            header, with columns ``wnid``, ``lemmas`` (a list, or one comma-separated string)
            and ``definition``.
        name: what the table is called in error messages (the config field it came from).

    Returns:
        The table's rows in file order with ``lemmas`` as a list of stripped strings, ``name``
        (the first lemma) and ``class_index`` (0, 1, ... first, as UInt32).

    Raises:
        ValueError: the file does not exist, lacks a column, or a synset has a null or blank
            definition (the message names the file and the first such wnids).
    """
    if not files.exists(uri):
        raise ValueError(f"{name} not found: {uri}")
    data = io.BytesIO(files.read_bytes(uri))
    frame = pl.read_parquet(data) if uri.endswith(".parquet") else pl.read_csv(data, separator="\t")
    missing = {"wnid", "lemmas", "definition"} - set(frame.columns)
    if missing:
        raise ValueError(f"{name} {uri} lacks columns {sorted(missing)} (has {frame.columns})")
    if frame.schema["lemmas"] == pl.String:
        frame = frame.with_columns(pl.col("lemmas").str.split(",").list.eval(pl.element().str.strip_chars()))
    empty = frame.filter(pl.col("definition").is_null() | (pl.col("definition").str.strip_chars() == ""))["wnid"]
    if empty.len():
        raise ValueError(f"{name} {uri}: {empty.len()} synsets have no definition (e.g. {empty.head(5).to_list()})")
    return frame.with_columns(pl.col("lemmas").list.first().alias("name")).with_row_index("class_index")
