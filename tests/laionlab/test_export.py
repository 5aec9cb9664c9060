"""Exports of a subset (laionlab/export.py): img2dataset downloads the parquet, open_clip's
webdataset keys read the shards back, DataComp's ids round-trip, a takedown list disappears;
the export goes part by part (shards continue across parts, one metadata read and one row
group per part) and a failed one leaves no output file."""

import functools
import http.server
import io
import json
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from laionlab.curation.datacomp import UID_DTYPE, datacomp_uids, uid_hex
from laionlab.export import (
    FORMATS,
    RemovalList,
    export_subset,
    listed_rows,
    read_removal_list,
    subset_parts,
    takedown_table,
)
from laionlab.io.download import DownloadSettings, download_part
from laionlab.io.metadata import read_part
from laionlab.io.shards import iter_shard_images


@pytest.fixture(scope="module")
def parts(tmp_path_factory, demo):
    """Two demo parts downloaded by img2dataset: part → (metadata, status, shards)."""
    root = tmp_path_factory.mktemp("downloaded")
    settings = DownloadSettings(processes_count=1, thread_count=4, image_size=32, allowed_file_roots=(demo.root,))
    out = {}
    for part in demo.parts[:2]:
        meta = read_part(str(Path(demo.root) / "laion_parts" / f"{part}.parquet"), part)
        result = download_part(meta, str(root / part), settings)
        out[part] = (meta, result.status, result.shards)
    return out


def _readers(parts):
    return (lambda p: parts[p][0], lambda p: parts[p][1], lambda p: parts[p][2])


def _subset(parts) -> pl.DataFrame:
    """Every other row of both parts (the broken rows among them or not): uid, sorted."""
    uids = [u for meta, _, _ in parts.values() for u in meta["uid"].to_list()[::2]]
    return pl.DataFrame({"uid": sorted(uids)})


def _export(parts, subset: pl.DataFrame, folder, formats=FORMATS, **kwargs):
    """export_subset of a subset held whole (a frame with uid), split by part."""
    groups = subset_parts(subset["uid"])
    return export_subset(sorted(groups), groups.__getitem__, *_readers(parts), str(folder), formats, **kwargs)


def _successes(parts, uids) -> set[str]:
    ok = pl.concat([s for _, s, _ in parts.values()]).filter(pl.col("status") == "success")["uid"]
    return set(uids) & set(ok.to_list())


def _captions(parts) -> dict[str, str]:
    meta = pl.concat([m for m, _, _ in parts.values()])
    return dict(zip(meta["uid"].to_list(), meta["TEXT"].fill_null("").to_list()))


def _webdataset(shards) -> list[tuple]:
    import webdataset as wds

    dataset = wds.WebDataset(shards, shardshuffle=False).decode("pil")
    return list(dataset.to_tuple("jpg;png;jpeg;webp", "txt", "json"))


def test_webdataset_shards_give_back_the_subsets_images_and_captions(tmp_path, parts):
    import webdataset as wds

    subset = _subset(parts)
    summary = _export(parts, subset, tmp_path / "out", ["webdataset"], samples_per_shard=7)
    expected = _successes(parts, subset["uid"].to_list())
    assert summary.exported == {"webdataset": len(expected)}
    assert summary.missing_images == subset.height - len(expected) > 0  # the broken rows have no image
    assert len(summary.shards) == -(-len(expected) // 7)
    samples = _webdataset(summary.shards)
    by_uid = {info["uid"]: (image, text) for image, text, info in samples}
    assert len(samples) == len(by_uid) and set(by_uid) == expected
    captions = _captions(parts)
    assert all(text == captions[uid] for uid, (_, text) in by_uid.items())
    originals = {s.uid: s.image for _, _, shards in parts.values() for s in iter_shard_images(shards, expected)}
    for uid, (image, _) in by_uid.items():
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(originals[uid].convert("RGB")))
    # open_clip's pipeline: the brace pattern of --train-data, its keys, (image, text) pairs
    pairs = list(
        wds.WebDataset(summary.train_data, shardshuffle=False).decode("pil").to_tuple("jpg;png;jpeg;webp", "txt")
    )
    assert len(pairs) == len(expected) and all(isinstance(t, str) for _, t in pairs)
    rows = pl.read_parquet(summary.paths["rows"])
    assert rows.filter(pl.col("key").is_not_null()).height == len(expected)


def test_the_img2dataset_parquet_downloads_with_img2dataset(tmp_path, parts, demo):
    """The parquet's URLs rewritten to a loopback server (img2dataset fetches them over HTTP)."""
    part = next(iter(parts))
    images = Path(demo.root) / "images" / part
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(images))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    meta = parts[part][0].head(12).with_columns(pl.col("URL").str.replace(r"^.*/", base))
    served = {part: (meta, parts[part][1], parts[part][2])}
    summary = _export(served, meta.select("uid"), tmp_path / "out", ["img2dataset"])
    frame = pl.read_parquet(summary.paths["img2dataset"])
    assert frame.columns == ["url", "caption", "uid"] and frame.height == 12
    kwargs = dict(
        url_list=summary.paths["img2dataset"], input_format="parquet", url_col="url", caption_col="caption",
        save_additional_columns=["uid"], output_format="webdataset", output_folder=str(tmp_path / "dl"),
        processes_count=1, thread_count=2, image_size=32, timeout=5, enable_wandb=False,
    )  # fmt: skip
    code = f"from img2dataset import download; download(**{kwargs!r})"
    try:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    finally:
        server.shutdown()
    got = {}
    for shard in sorted((tmp_path / "dl").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    info = json.load(tar.extractfile(m))
                    got[info["uid"]] = info["caption"]
    ok = parts[part][1].filter(pl.col("status") == "success")["uid"].to_list()
    assert set(got) == set(meta["uid"]) & set(ok) and len(got) >= 9  # the broken rows fail again
    captions = _captions(parts)
    assert all(caption == captions[uid] for uid, caption in got.items())


def test_datacomp_ids_round_trip(tmp_path, parts):
    subset = _subset(parts)
    summary = _export(parts, subset, tmp_path / "out", ["datacomp"])
    ids = np.load(summary.paths["datacomp"])
    assert ids.dtype == UID_DTYPE and len(ids) == subset.height == summary.exported["datacomp"]
    assert np.array_equal(ids, np.sort(ids))
    assert np.array_equal(ids, datacomp_uids(uid_hex(subset["uid"])))
    mapping = pl.read_parquet(Path(summary.paths["datacomp"]).with_suffix(".parquet"))
    back = {(int(h[:16], 16), int(h[16:], 16)): u for u, h in zip(mapping["uid"], mapping["uid_hex"])}
    assert sorted(back[tuple(int(v) for v in pair)] for pair in ids.tolist()) == subset["uid"].to_list()


def _takedowns(parts, subset) -> tuple[list[str], list[str]]:
    """10 downloaded uids of the subset, and the removal list naming them: 4 by uid, 3 by
    URL, 3 by the sha256 of the downloaded bytes."""
    status = pl.concat([s for _, s, _ in parts.values()])
    meta = pl.concat([m for m, _, _ in parts.values()])
    ok = status.filter(pl.col("status") == "success").join(subset, on="uid", how="semi").sort("uid")
    picked = ok["uid"].to_list()[1:20:2]
    url = dict(zip(meta["uid"], meta["URL"]))
    sha = dict(zip(status["uid"], status["sha256"]))
    items = [*picked[:4], *(url[u] for u in picked[4:7]), *(sha[u].upper() for u in picked[7:])]
    return picked, items


def test_a_removal_list_disappears_from_every_output_and_the_report_names_it(tmp_path, parts):
    subset = _subset(parts)
    picked, items = _takedowns(parts, subset)
    assert len(picked) == 10
    listing = tmp_path / "takedowns.txt"
    listing.write_text("# takedown requests\n" + "\n".join(items) + "\n\n")
    removal = read_removal_list(str(listing))
    assert (len(removal.uids), len(removal.urls), len(removal.sha256)) == (4, 3, 3)
    summary = _export(parts, subset, tmp_path / "out", samples_per_shard=5, removal=removal)
    removed = summary.removed
    assert sorted(removed["uid"]) == sorted(picked)
    assert removed["matched_by"].value_counts().sort("matched_by").rows() == [("sha256", 3), ("uid", 4), ("url", 3)]
    exported = {
        "img2dataset": set(pl.read_parquet(summary.paths["img2dataset"])["uid"]),
        "webdataset": {info["uid"] for _, _, info in _webdataset(summary.shards)},
        "rows": set(pl.read_parquet(summary.paths["rows"])["uid"]),
        "datacomp": set(pl.read_parquet(Path(summary.paths["datacomp"]).with_suffix(".parquet"))["uid"]),
    }
    for name, uids in exported.items():
        assert not uids & set(picked), name
    assert exported["img2dataset"] == set(subset["uid"]) - set(picked)
    ids = np.load(summary.paths["datacomp"])
    assert len(ids) == subset.height - 10 and not set(map(tuple, datacomp_uids(uid_hex(picked)).tolist())) & set(
        map(tuple, ids.tolist())
    )
    # the report over the parts: which subsets hold the listed rows
    listed = listed_rows(list(parts), *_readers(parts)[:2], removal)
    assert sorted(listed["uid"]) == sorted(picked)
    others = subset.filter(~pl.col("uid").is_in(picked[:3]))
    halves = [subset["uid"].head(5), subset["uid"].slice(5)]  # a subset read a chunk at a time
    counts, found = takedown_table({"every_other": halves, "fewer": [others["uid"]]}, listed)
    assert counts.rows() == [("every_other", subset.height, 10), ("fewer", others.height, 7)]
    assert sorted(found.filter(pl.col("subset") == "every_other")["uid"]) == sorted(picked)


def test_removal_lists_from_tables(tmp_path):
    pl.DataFrame({"URL": ["https://a.example/x.jpg", None], "uid": ["p:1", "p:2"]}).write_csv(tmp_path / "l.csv")
    removal = read_removal_list(str(tmp_path / "l.csv"))
    assert removal.urls == {"https://a.example/x.jpg"} and removal.uids == {"p:1", "p:2"}
    pl.DataFrame({"item": ["p:3", "a" * 64]}).write_parquet(tmp_path / "one.parquet")
    removal = read_removal_list(str(tmp_path / "one.parquet"))
    assert removal.uids == {"p:3"} and removal.sha256 == {"a" * 64}
    pl.DataFrame({"a": [1], "b": [2]}).write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match=r"expected columns among \['uid', 'url', 'sha256'\]"):
        read_removal_list(str(tmp_path / "bad.parquet"))
    with pytest.raises(ValueError, match="not a web address"):
        read_removal_list("https://example.com/takedowns.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_removal_list(str(tmp_path / "none.txt"))
    assert len(RemovalList.of(["", "# c", "p:1"])) == 1


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="expected '<part>:<row>', got 'no-part'"):
        subset_parts(["p:1", "no-part"])
    with pytest.raises(ValueError, match="formats: expected one or more of"):
        export_subset(["p"], None, None, None, None, str(tmp_path), ["tfrecord"])
    with pytest.raises(ValueError, match="parts: expected each part once, got 'p'"):
        export_subset(["p", "q", "p"], None, None, None, None, str(tmp_path))
    with pytest.raises(ValueError, match="expected '<part>:<row>', got 'no-part'"):
        export_subset(["p"], lambda p: pl.Series(["p:1", "no-part"]), None, None, None, str(tmp_path / "a"))
    # a uid of another part is named, whichever part's list holds it
    uids = {"p": pl.Series(["p:1", "p:2"]), "q": pl.Series(["q:1", "p:3"])}
    metadata = {p: pl.DataFrame({"uid": u, "URL": "https://a.example/x", "TEXT": "x"}) for p, u in uids.items()}
    readers = (metadata.__getitem__, lambda _: None, None)  # status_of: no download; shards_of: not read
    with pytest.raises(ValueError, match=r"uids of part 'q': expected 'q:<row>', got 'p:3'"):
        export_subset(["p", "q"], uids.__getitem__, *readers, str(tmp_path / "b"), ["img2dataset"])
    assert not list((tmp_path / "b").iterdir())  # nothing written, nothing staged left
    # a labelled export (SWAT's classes) needs uid and integer cls per part
    with pytest.raises(ValueError, match="uids of part 'p': a labelled export needs a frame with uid and cls"):
        export_subset(["p"], uids.__getitem__, *readers, str(tmp_path / "c"), ["img2dataset"], labelled=True)
    named = {"p": pl.DataFrame({"uid": ["p:1"], "cls": ["dog"]})}
    with pytest.raises(ValueError, match="uids of part 'p': cls must be integer class indices"):
        export_subset(["p"], named.__getitem__, *readers, str(tmp_path / "d"), ["img2dataset"], labelled=True)


def test_a_shard_is_a_plain_tar(tmp_path, parts):
    """Byte-stable shards: the same subset gives the same bytes."""
    subset = _subset(parts).head(6)
    a = _export(parts, subset, tmp_path / "a", ["webdataset"], samples_per_shard=4)
    b = _export(parts, subset, tmp_path / "b", ["webdataset"], samples_per_shard=4)
    assert [Path(s).read_bytes() for s in a.shards] == [Path(s).read_bytes() for s in b.shards]
    with tarfile.open(fileobj=io.BytesIO(Path(a.shards[0]).read_bytes())) as tar:
        names = tar.getnames()
    assert [n.split(".")[0] for n in names] == [f"{i:09d}" for i in range(len(names) // 3) for _ in range(3)]
    assert {n.split(".")[1] for n in names} == {"jpg", "txt", "json"}


def _tar_members(shards) -> list[tuple[str, bytes]]:
    out = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            out += [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    return out


def test_shards_continue_across_parts(tmp_path, parts):
    """Three samples a shard over two parts: the same samples, in the same order and with the
    same keys, as one shard holding all; a shard holds the end of part 1 and the start of part 2."""
    subset = _subset(parts)
    ok = sorted(_successes(parts, subset["uid"]))
    first = next(iter(parts))
    if sum(u.startswith(f"{first}:") for u in ok) % 3 == 0:  # make part 1 end inside a shard
        subset = subset.filter(pl.col("uid") != next(u for u in ok if u.startswith(f"{first}:")))
    one = _export(parts, subset, tmp_path / "one", ["webdataset"], samples_per_shard=10_000)
    small = _export(parts, subset, tmp_path / "small", ["webdataset"], samples_per_shard=3)
    assert len(one.shards) == 1 and len(small.shards) == -(-one.exported["webdataset"] // 3) > 2
    members = _tar_members(small.shards)
    assert members == _tar_members(one.shards)
    keys = [name.split(".")[0] for name, _ in members if name.endswith(".json")]
    assert keys == [f"{i:09d}" for i in range(one.exported["webdataset"])]
    rows = pl.read_parquet(small.paths["rows"]).filter(pl.col("key").is_not_null())
    assert rows["part"].unique(maintain_order=True).to_list() == list(parts)  # part order
    assert rows["shard"].to_list() == [f"{int(k) // 3:05d}.tar" for k in rows["key"]]
    spanning = rows.group_by("shard").agg(pl.col("part").n_unique()).filter(pl.col("part") > 1)
    assert spanning.height == 1


def test_each_part_is_read_once_and_is_a_row_group(tmp_path, parts):
    """metadata_of, status_of and shards_of see one part at a time, once each (never a part of
    the subset that has no uids); rows.parquet and img2dataset.parquet hold a row group a part."""
    import pyarrow.parquet as pq

    subset = _subset(parts)
    groups = {**subset_parts(subset["uid"]), "empty": pl.Series("uid", [], dtype=pl.String)}
    names = [*parts, "empty"]
    calls = []

    def reader(kind, read):
        def call(part):
            calls.append((kind, part))
            return read(part)

        return call

    readers = [reader(kind, read) for kind, read in zip(("metadata", "status", "shards"), _readers(parts))]
    lines = []
    uids_of, folder = reader("uids", groups.__getitem__), str(tmp_path / "out")
    summary = export_subset(names, uids_of, *readers, folder, samples_per_shard=4, log=lines.append)
    each = [(kind, p) for p in parts for kind in ("uids", "metadata", "status", "shards")]
    assert calls == [*each, ("uids", "empty")]
    assert len(lines) == 3 and lines[0].startswith(f"part 1/3 {names[0]}: {len(groups[names[0]]):,} rows")
    for name in ("rows", "img2dataset"):
        file = pq.ParquetFile(summary.paths[name])
        assert file.num_row_groups == 2, name
        groups_parts = [set(file.read_row_group(i).column("uid").to_pylist()) for i in range(2)]
        assert groups_parts == [set(groups[p]) for p in parts], name
    assert summary.subset_rows == subset.height


def test_an_empty_subset_writes_empty_files_with_their_schemas(tmp_path, parts):
    summary = export_subset(list(parts), lambda _: pl.Series([], dtype=pl.String), *_readers(parts), str(tmp_path))
    rows = pl.read_parquet(summary.paths["rows"])
    assert rows.height == 0 and rows.columns == ["uid", "part", "url", "caption", "sha256", "key", "shard"]
    assert pl.read_parquet(summary.paths["img2dataset"]).columns == ["url", "caption", "uid"]
    assert pl.read_parquet(tmp_path / "datacomp.parquet").columns == ["uid", "part", "uid_hex"]
    assert pl.read_parquet(summary.paths["removed"]).columns == ["uid", "part", "matched_by", "item"]
    ids = np.load(summary.paths["datacomp"])
    assert ids.dtype == UID_DTYPE and len(ids) == 0
    assert summary.shards == [] and summary.train_data == "" and summary.exported == dict.fromkeys(FORMATS, 0)


def test_a_failed_export_leaves_no_output_file(tmp_path, parts):
    """shards_of fails on the second part: no parquet or npy file, nothing staged left; the
    shards already put in place are whole."""
    first, second = list(parts)
    metadata_of, status_of, shards_of = _readers(parts)

    def failing(part):
        if part == second:
            raise RuntimeError(f"{part}: the store is down")
        return shards_of(part)

    groups = subset_parts(_subset(parts)["uid"])
    folder = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the store is down"):
        export_subset(
            [first, second], groups.__getitem__, metadata_of, status_of, failing, str(folder), samples_per_shard=4
        )
    assert [p.name for p in folder.iterdir()] == ["webdataset"]
    shards = sorted((folder / "webdataset").iterdir())
    assert shards and all(p.suffix == ".tar" for p in shards)
    assert sum(len(_tar_members([p])) for p in shards) == 3 * 4 * len(shards)  # only full shards
