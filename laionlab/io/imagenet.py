"""The 1000 ILSVRC-2012 synsets, read from the files timm ships.

timm carries `imagenet_synsets.txt` (the 1000 wnids in class-index order),
`imagenet_synset_to_lemma.txt` and `imagenet_synset_to_definition.txt` (all of ImageNet-21k),
so no download is needed.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import polars as pl


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
