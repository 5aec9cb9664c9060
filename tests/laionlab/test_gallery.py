"""laionlab.gallery: a bounded seeded choice, thumbnails read back by uid, the contact sheet."""

import io

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.gallery import Tile, contact_sheet, fetch_thumbnails, pick, sheet_rows
from tests.laionlab.test_encode import sample, write_shard


def _frame():
    classes = ["a"] * 10 + ["b"] * 3 + ["c"] * 7 + ["d"]
    return pl.DataFrame({"uid": [f"p:{i}" for i in range(len(classes))], "cls": classes})


def test_pick_bounds_groups_and_rows_and_is_seeded():
    frame = _frame()
    shown = pick(frame, "cls", groups=2, per_group=4, seed=1)
    assert shown["cls"].unique(maintain_order=True).to_list() == ["a", "c"]  # the largest two
    assert shown.group_by("cls").len().sort("cls")["len"].to_list() == [4, 4]
    assert shown.equals(pick(frame, "cls", groups=2, per_group=4, seed=1))
    assert not shown.equals(pick(frame, "cls", groups=2, per_group=4, seed=2))
    rows_a = shown.filter(pl.col("cls") == "a")["uid"].to_list()
    assert rows_a == sorted(rows_a, key=lambda u: int(u.split(":")[1]))  # frame order kept
    small = pick(frame, "cls", groups=9, per_group=5, order=["d", "b", "zz"])
    assert small["cls"].to_list() == ["d", "b", "b", "b"]
    with pytest.raises(ValueError, match="not a column"):
        pick(frame, "nope")
    assert pick(frame.head(0), "cls").height == 0


def _png(colour, size=(40, 30)):
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_thumbnails_are_read_by_uid_from_their_parts_only(tmp_path):
    shards = {
        "p0": [write_shard(tmp_path / "p0.tar", [sample(i, image=_png((10 * i, 0, 0), (300, 150))) for i in range(4)])],
        "p1": [write_shard(tmp_path / "p1.tar", [sample(i, image=_png((0, 10 * i, 0))) for i in range(10, 13)])],
    }
    read = []

    def shards_of(part):
        read.append(part)
        return shards[part]

    got = fetch_thumbnails(shards_of, ["p:000000002", "p:000000099"], part_of=lambda uid: "p0", size=64)
    assert read == ["p0"] and list(got) == ["p:000000002"]  # p1 never opened; a missing uid is absent
    assert got["p:000000002"].size == (64, 32) and got["p:000000002"].getpixel((5, 5)) == (20, 0, 0)


def test_contact_sheet_draws_one_row_per_group_and_blank_missing_tiles():
    images = {"u1": Image.new("RGB", (50, 40), "red"), "u2": Image.new("RGB", (40, 50), "blue")}
    rows = [("class one", [Tile("u1", "a caption"), Tile("u2", "b")]), ("class two", [Tile("u3", "gone")])]
    fig = contact_sheet(rows, images, "title")
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 3  # u3 is a grey "missing" tile
    assert any("missing gone" in ax.get_title() for ax in drawn)
    grey = [ax for ax in drawn if "missing" in ax.get_title()][0].images[0].get_array()
    assert np.all(np.asarray(grey) == 200)
    with pytest.raises(ValueError, match="no rows"):
        contact_sheet([], images, "t")


def test_sheet_rows_title_groups_by_name_and_label_tiles():
    shown = pl.DataFrame({"uid": ["u1", "u2", "u3"], "wnid": ["n1", "n1", "n2"], "TEXT": ["x", None, "z"]})
    rows = sheet_rows(shown, "wnid", "TEXT", {"n1": "tench"})
    assert rows == [("tench (n1)", [Tile("u1", "x"), Tile("u2", "")]), ("n2", [Tile("u3", "z")])]
