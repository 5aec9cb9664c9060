"""laionlab.gallery: a bounded seeded choice, thumbnails read back by uid, the contact sheet."""

import io

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.gallery import (
    Tile,
    contact_sheet,
    fetch_thumbnails,
    pair_rows,
    pick,
    pick_cells,
    row_uids,
    sample_rows,
    sheet_rows,
)
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


def test_sample_rows_is_bounded_seeded_and_keeps_the_frame_order():
    frame = _frame()
    shown = sample_rows(frame, 5, seed=4)
    assert shown.height == 5 and shown.equals(sample_rows(frame, 5, seed=4))
    assert not shown.equals(sample_rows(frame, 5, seed=5))
    rows = [int(u.split(":")[1]) for u in shown["uid"]]
    assert rows == sorted(rows)
    assert sample_rows(frame.head(3), 5).equals(frame.head(3))
    with pytest.raises(ValueError, match="n must be"):
        sample_rows(frame, 0)


def test_pair_rows_put_each_left_tile_beside_its_right_one():
    pairs = pl.DataFrame(
        {
            "uid": ["c1", "c2", "c3"],
            "of": ["o1", "o2", None],
            "cos": ["cos 0.97", "cos 0.99", "cos 1.00"],
            "kept": ["kept", "kept", None],
        }
    )
    rows = pair_rows(pairs, "uid", "of", "cos", "kept", per_row=2, title="dropped ↔ kept")
    assert rows == [
        ("dropped ↔ kept", [Tile("c1", "cos 0.97"), Tile("o1", "kept"), Tile("c2", "cos 0.99"), Tile("o2", "kept")]),
        ("dropped ↔ kept", [Tile("c3", "cos 1.00"), Tile("", "")]),
    ]
    assert row_uids(rows) == ["c1", "o1", "c2", "o2", "c3"]
    with pytest.raises(ValueError, match="missing columns"):
        pair_rows(pairs, "uid", "nope", "cos", "kept")


def test_pick_cells_shows_the_same_columns_in_every_row():
    frame = pl.DataFrame(
        {
            "uid": [f"p:{i}" for i in range(48)],
            "method": ["Random", "T2T"] * 24,
            "class": [str(i // 2 % 6) for i in range(48)],
        }
    )
    shown = pick_cells(frame, "method", "class", columns=2, per_cell=3, seed=0, order=["T2T", "Random", "gone"])
    assert shown["method"].unique(maintain_order=True).to_list() == ["T2T", "Random"]
    per_row = shown.group_by("method", maintain_order=True).agg(pl.col("class").unique(maintain_order=True))
    first, second = per_row["class"].to_list()
    assert first == second and len(first) == 2 and first == sorted(first)
    assert shown.group_by("method", "class").len()["len"].to_list() == [3] * 4
    assert shown.equals(pick_cells(frame, "method", "class", columns=2, per_cell=3, seed=0, order=["T2T", "Random"]))
    assert pick_cells(frame.head(0), "method", "class").height == 0
    with pytest.raises(ValueError, match="not a column"):
        pick_cells(frame, "method", "nope")
