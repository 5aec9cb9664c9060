"""Exact duplicates (laionlab.dedup.exact): sha256 groups in and across parts, first occurrence
kept, pHash of re-encoded / resized copies, and the part-by-part search against a brute-force
O(n²) comparison over all rows in (part, row) order."""

import hashlib
import io

import numpy as np
import polars as pl
import pytest
from PIL import Image

from laionlab.dedup import exact


def _image(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (low frequencies dominate, as in photos), deterministic."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _parts_from(contents: list[list[int]]) -> list[tuple[str, pl.DataFrame]]:
    """Parts whose rows hold the image content ids given (same id = same bytes)."""
    out = []
    for i, ids in enumerate(contents):
        part = f"part-{i:05d}"
        uids = [f"{part}:{r:09d}" for r in range(len(ids))]
        out.append((part, exact.hash_table(uids, [_sha(str(c).encode()) for c in ids])))
    return out


def _run(parts, distance=None) -> pl.DataFrame:
    """find_duplicates part by part, each against the earlier parts' indexes (as the asset does)."""
    found = []
    for i, (part, table) in enumerate(parts):
        earlier = [(p, exact.hash_index(t, "sha256"), exact.hash_index(t, "phash")) for p, t in parts[:i]]
        found.append(exact.find_duplicates(table, part, earlier, distance))
    return pl.concat(found)


def _brute_force(parts, distance=None) -> dict[str, str]:
    """uid -> the earliest earlier row with the same sha256 (or a pHash within ``distance``)."""
    rows = pl.concat([t.with_columns(part=pl.lit(p)) for p, t in parts]).sort("part", "row")
    uids, sha, ph = rows["uid"].to_list(), rows["sha256"].to_list(), rows["phash"].to_list()
    out = {}
    for j in range(len(uids)):
        for i in range(j):
            close = (
                distance is not None
                and ph[i] is not None
                and ph[j] is not None
                and bin(ph[i] ^ ph[j]).count("1") <= distance
            )
            if sha[i] == sha[j] or close:
                out[uids[j]] = uids[i]
                break
    return out


def test_identical_bytes_in_and_across_parts_keep_the_first_occurrence():
    # content ids: 7 appears in parts 0, 1, 2; 3 twice in part 1; 5 twice in part 0
    parts = _parts_from([[5, 7, 5, 1], [3, 7, 3, 2], [7, 8, 1]])
    dup = _run(parts)
    got = dict(zip(dup["uid"], dup["duplicate_of"]))
    assert got == {
        "part-00000:000000002": "part-00000:000000000",
        "part-00001:000000001": "part-00000:000000001",
        "part-00001:000000002": "part-00001:000000000",
        "part-00002:000000000": "part-00000:000000001",
        "part-00002:000000002": "part-00000:000000003",
    }
    assert got == _brute_force(parts)
    assert set(dup["match"]) == {"sha256"} and (dup["distance"] == 0).all()
    assert dup.filter(pl.col("uid") == "part-00002:000000000")["duplicate_of_part"].item() == "part-00000"
    # every pointer is a kept row (sha256 groups are classes)
    assert not set(dup["duplicate_of"]) & set(dup["uid"])


def test_random_parts_equal_brute_force():
    rng = np.random.default_rng(3)
    parts = _parts_from([list(rng.integers(0, 30, n)) for n in (25, 0, 40, 17)])
    dup = _run(parts)
    assert dict(zip(dup["uid"], dup["duplicate_of"])) == _brute_force(parts)
    assert dup["uid"].is_unique().all()


@pytest.mark.parametrize("distance", [0, 1, 3, 6])
def test_phash_search_by_blocks_equals_brute_force(distance):
    """Hashes planted at 0..8 bits from a few centres: the pigeonhole joins find exactly the
    pairs a full pairwise Hamming comparison finds, and the earliest one wins."""
    rng = np.random.default_rng(distance)
    centres = rng.integers(0, 2**63, 5, dtype=np.uint64) * np.uint64(2)
    parts = []
    for i, n in enumerate((30, 20, 25)):
        base = centres[rng.integers(0, 5, n)]
        flips = np.zeros(n, np.uint64)
        for j in range(n):
            for bit in rng.choice(64, rng.integers(0, 9), replace=False):
                flips[j] |= np.uint64(1) << np.uint64(bit)
        ph = base ^ flips
        ph[rng.random(n) < 0.1] = 0  # a few null pHashes (undecodable)
        part = f"part-{i:05d}"
        uids = [f"{part}:{r:09d}" for r in range(n)]
        shas = [_sha(f"{i}-{r}".encode()) for r in range(n)]  # all bytes distinct
        parts.append((part, exact.hash_table(uids, shas, [int(v) if v else None for v in ph])))
    dup = _run(parts, distance)
    assert dict(zip(dup["uid"], dup["duplicate_of"])) == _brute_force(parts, distance)
    assert (dup["distance"] <= distance).all() and set(dup["match"]) <= {"phash"}
    if distance == 6:
        assert dup.height > 10


def test_phash_of_a_reencoded_and_resized_copy_is_within_a_few_bits():
    original = _image(1, 256)
    copies = [
        Image.open(io.BytesIO(_jpeg(original, 60))),
        original.resize((128, 128), Image.Resampling.BILINEAR),
        Image.open(io.BytesIO(_jpeg(original.resize((200, 200)), 75))),
    ]
    h = exact.phash(original)
    distances = [int(exact.hamming(h, exact.phash(c))) for c in copies]
    assert max(distances) <= 4, distances
    others = [int(exact.hamming(h, exact.phash(_image(s, 256)))) for s in range(2, 12)]
    assert min(others) > 10, others
    # the copies' bytes differ, so only the pHash finds them
    uids = [f"p:{i:09d}" for i in range(4)]
    images = [original, *copies]
    table = exact.hash_table(
        uids, [_sha(_jpeg(im, 50 + i)) for i, im in enumerate(images)], [exact.phash(im) for im in images]
    )
    assert exact.find_duplicates(table, "p").height == 0
    dup = exact.find_duplicates(table, "p", phash_distance=4)
    assert dup["uid"].to_list() == uids[1:] and set(dup["duplicate_of"]) == {uids[0]}


def test_phash_matches_the_imagehash_definition():
    """A hand-computed reference: scipy's DCT-II of the 32 x 32 Lanczos thumbnail, top-left 8 x 8
    against its median, bits row-major with the first in the most significant place."""
    from scipy.fft import dct

    image = _image(5, 80)
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dct(dct(pixels, axis=0), axis=1)[:8, :8]
    bits = (low > np.median(low)).ravel()
    want = int("".join("1" if b else "0" for b in bits), 2)
    assert exact.phash(image) == want
    assert exact.images_phash(iter([("a", image), ("b", image), ("c", _image(6))]), batch=2)["a"] == want


def test_hash_index_is_sorted_first_occurrence_with_copies():
    table = exact.hash_table(["p:2", "p:0", "p:1"], ["B" * 64, "b" * 64, "a" * 64], [9, 7, 9])
    index = exact.hash_index(table, "sha256")
    assert index.rows() == [("a" * 64, "p:1", 1, 1), ("b" * 64, "p:0", 0, 2)]
    assert exact.hash_index(table, "phash").rows() == [(7, "p:0", 0, 1), (9, "p:1", 1, 2)]
    assert exact.within_part_groups(table) == 1


def test_part_hash_table_from_a_download_status():
    status = pl.DataFrame(
        {
            "uid": ["p:0", "p:1", "p:2"],
            "status": ["success", "failed_to_download", "success"],
            "sha256": ["a" * 64, None, "a" * 64],
        }
    )
    table = exact.part_hash_table(status, {"p:0": 5})
    assert table["uid"].to_list() == ["p:0", "p:2"] and table["phash"].to_list() == [5, None]
    with pytest.raises(ValueError, match='compute_hash="sha256"'):
        exact.part_hash_table(status.drop("sha256"))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="sha256"):
        exact.hash_table(["a"], ["not-hex"])
    with pytest.raises(ValueError, match="uids"):
        exact.hash_table(["a", "a"], ["a" * 64, "b" * 64])
    table = exact.hash_table(["a"], ["a" * 64])
    with pytest.raises(ValueError, match="phash_distance"):
        exact.find_duplicates(table, "p", phash_distance=64)
    with pytest.raises(ValueError, match="column"):
        exact.hash_index(table, "md5")
    with pytest.raises(ValueError, match="thumbs"):
        exact.phash_thumbnails(np.zeros((2, 8, 8)))


def test_largest_groups_and_counts_by_part():
    parts = _parts_from([[1, 1, 2], [1, 2, 2, 3]])
    dup = _run(parts)
    groups = exact.largest_groups(dup)
    assert groups.rows()[0] == ("part-00000:000000000", "part-00000", 2)
    counts = exact.counts_by_part(dup.filter(pl.col("part") == "part-00001"), ["part-00000", "part-00001"])
    assert counts.rows() == [("part-00000", 3), ("part-00001", 0)]
