import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from laionlab.demo import DemoConfig, build_demo
from laionlab.io.imagenet import ilsvrc_synsets

CONFIG = DemoConfig(n_parts=2, rows_per_part=20, nsfw_per_part=2, seed=7)


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_demo_is_deterministic_and_has_laion_columns(tmp_path):
    a = build_demo(tmp_path / "a", CONFIG)
    b = build_demo(tmp_path / "b", CONFIG)
    part = pl.read_parquet(Path(a.root) / "laion_parts" / "part-00000.parquet")
    assert part.columns == ["SAMPLE_ID", "URL", "TEXT", "HEIGHT", "WIDTH", "LICENSE", "NSFW", "similarity"]
    assert part.height == 20
    # identical content except the absolute paths inside the URLs
    pa_ = pl.read_parquet(Path(a.root) / "laion_parts" / "part-00001.parquet").drop("URL")
    pb_ = pl.read_parquet(Path(b.root) / "laion_parts" / "part-00001.parquet").drop("URL")
    assert pa_.equals(pb_)
    assert _digest(Path(a.root) / "images") == _digest(Path(b.root) / "images")
    assert a.parts == ["part-00000", "part-00001"]


def test_demo_broken_rows_are_what_the_manifest_says(tmp_path):
    m = build_demo(tmp_path, CONFIG)
    part = pl.read_parquet(Path(m.root) / "laion_parts" / "part-00000.parquet")
    broken = m.broken_rows["part-00000"]
    urls = part["URL"].to_list()
    assert not Path(urls[broken["missing_file"]].removeprefix("file://")).exists()
    assert Path(urls[broken["not_an_image"]].removeprefix("file://")).read_bytes().startswith(b"<html>")
    assert part["TEXT"][broken["empty_caption"]] == ""
    flagged = part.with_row_index().filter(pl.col("NSFW") == "NSFW")["index"].to_list()
    assert flagged == m.nsfw_rows["part-00000"]
    assert json.loads((Path(m.root) / "manifest.json").read_text())["parts"] == m.parts


def test_demo_captions_use_ilsvrc_lemmas(tmp_path):
    m = build_demo(tmp_path, CONFIG)
    captions = pl.read_parquet(Path(m.root) / "laion_parts" / "part-00000.parquet")["TEXT"].to_list()
    lemmas = {lemma for group in ilsvrc_synsets()["lemmas"].to_list() for lemma in group}
    with_lemma = [c for c in captions if any(f" {lemma} " in f" {c} " for lemma in lemmas)]
    assert len(with_lemma) >= len(captions) // 2


def test_ilsvrc_synsets_has_1000_classes():
    s = ilsvrc_synsets()
    assert s.height == 1000 and s["wnid"].n_unique() == 1000
    assert s.filter(pl.col("wnid") == "n01440764")["name"].item() == "tench"


def test_demo_rejects_tiny_config(tmp_path):
    with pytest.raises(ValueError, match="rows_per_part"):
        build_demo(tmp_path, DemoConfig(rows_per_part=3))
