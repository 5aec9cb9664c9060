"""DataComp's filtering baselines (laionlab.curation.datacomp) on constructed data."""

import hashlib

import numpy as np
import polars as pl
import pytest

from laionlab.curation import (
    FILTERS,
    UID_DTYPE,
    BasicRule,
    basic_filter,
    basic_filter_flags,
    bin_width,
    clip_score_filter,
    datacomp_uids,
    export_frame,
    filter_lemmas,
    filter_synsets,
    image_sizes,
    merge_histograms,
    part_flags,
    score_histogram,
    select_filters,
    select_parts,
    selection_verdicts,
    text_filter,
    top_fraction_threshold,
    uid_hex,
)


def _datacomp_basic(text: str, width: float, height: float, language: str) -> bool:
    """DataComp's load_uids_with_basic_filter_helper, one row at a time (fasttext's prediction
    replaced by the given language)."""
    caption_mask = len(text.split()) > 2 and len(text) > 5
    min_dim, max_dim = min(width, height), max(width, height)
    aspect = max_dim / min_dim if min_dim else float("inf")
    return language == "en" and caption_mask and min_dim >= 200 and aspect <= 3.0


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    words = ["a", "dog", "on", "the", "grass", "ÿ", "photo", "x"]
    seps = [" ", "  ", "\t", "\n", " \u3000 "]
    texts, widths, heights, langs = [], [], [], []
    for _ in range(n):
        k = int(rng.integers(0, 6))
        parts = [words[int(rng.integers(len(words)))] for _ in range(k)]
        text = "".join(p + seps[int(rng.integers(len(seps)))] for p in parts)
        texts.append(text if rng.random() < 0.8 else text.strip())
        widths.append(int(rng.choice([0, 1, 66, 199, 200, 201, 600, 601, 602, 1000])))
        heights.append(int(rng.choice([0, 199, 200, 201, 300, 600, 1800, 1803])))
        langs.append(str(rng.choice(["en", "en", "de"])))
    return texts, widths, heights, langs


def test_basic_filter_equals_datacomps_rule_on_constructed_rows():
    texts, widths, heights, langs = _rows(3000)
    want = [_datacomp_basic(t, w, h, g) for t, w, h, g in zip(texts, widths, heights, langs)]
    got = basic_filter(texts, widths, heights, langs)
    assert got.tolist() == want and 0 < sum(want) < len(want)
    # without a language column every row counts as English (the documented deviation)
    want_all = [_datacomp_basic(t, w, h, "en") for t, w, h in zip(texts, widths, heights)]
    assert basic_filter(texts, widths, heights).tolist() == want_all


def test_basic_filter_known_answers_and_edges():
    flags = basic_filter_flags(
        ["a b c", "a b", "abcd e f", "ab c", "one two three", "one two three", "one two three", None, "one two three"],
        [200, 200, 300, 300, 600, 601, 199, 300, None],
        [200, 200, 300, 300, 200, 200, 300, 300, 300],
    )
    # 3 words but 5 characters; exactly 2 words; ok; 4 characters; aspect exactly 3; just over 3;
    # a side under 200; no caption; no width
    assert flags["caption"].to_list() == [False, False, True, False, True, True, True, False, True]
    assert flags["image"].to_list() == [True, True, True, True, True, False, False, True, False]
    assert flags["basic"].to_list() == [False, False, True, False, True, False, False, False, False]
    rule = BasicRule(min_caption_words=1, min_caption_chars=1, min_image_side=10, max_aspect_ratio=10, language=None)
    assert basic_filter(["x"], [10], [100], ["de"], rule).tolist() == [True]
    with pytest.raises(ValueError, match="max_aspect_ratio"):
        BasicRule(max_aspect_ratio=0.5)
    with pytest.raises(ValueError, match="equal lengths"):
        basic_filter(["a b c"], [1, 2], [1])


def test_image_sizes_prefer_the_downloaded_original_size():
    uids = ["p:0", "p:1", "p:2", "p:3"]
    meta = pl.DataFrame({"uid": uids, "WIDTH": [10, 20, None, 40], "HEIGHT": [11, 21, None, 41]})
    status = pl.DataFrame(
        {
            "uid": ["p:0", "p:1", "p:3"],
            "status": ["success", "failed_to_download", "success"],
            "original_width": [100, None, None],
            "original_height": [110, None, 410],
        }
    )
    sizes = image_sizes(meta, status)
    assert sizes["width"].to_list() == [100, 20, None, 40]
    assert sizes["height"].to_list() == [110, 21, None, 41]
    assert sizes["size_source"].to_list() == ["download", "metadata", None, "metadata"]
    old = image_sizes(meta, status.drop("original_width"))  # a status table from before the columns
    assert old["size_source"].to_list() == ["metadata", "metadata", None, "metadata"]


def test_clip_score_threshold_is_inclusive():
    assert clip_score_filter([0.27, 0.28, 0.3, np.nan], 0.28).tolist() == [False, True, True, False]


def test_top_fraction_known_answer():
    h = score_histogram([0.9, 0.6, 0.1, -0.5], bins=4)
    assert h.tolist() == [0, 1, 1, 2]  # bins [-1, -0.5), [-0.5, 0), [0, 0.5), [0.5, 1]
    # DataComp: n = 4, int(4 * 0.5) = 2, descending scores [0.9, 0.6, 0.1, -0.5][2] = 0.1, in bin [0, 0.5)
    assert top_fraction_threshold(h, 0.5) == 0.0
    assert top_fraction_threshold(h, 0.25) == 0.5  # 0.6, in bin [0.5, 1]
    assert top_fraction_threshold(h, 1.0) == -1.0  # keeps everything
    assert score_histogram([1.0000001, -1.2, np.nan], bins=4).tolist() == [1, 0, 0, 1]
    with pytest.raises(ValueError, match="empty histogram"):
        top_fraction_threshold(np.zeros(4, np.int64), 0.3)
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_threshold(h, 1.5)
    with pytest.raises(ValueError, match=r"histograms\[1\]"):
        merge_histograms([np.zeros(4), np.zeros(5)])


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.5, 0.9])
def test_top_fraction_from_merged_part_histograms_matches_numpy(fraction):
    rng = np.random.default_rng(1)
    parts = [rng.normal(0.2 + 0.02 * i, 0.05, size=40_000 + 1_000 * i).astype(np.float32) for i in range(5)]
    parts.append(np.round(rng.normal(0.3, 0.01, 5_000), 3).astype(np.float32))  # many ties
    merged = merge_histograms([score_histogram(p) for p in parts])
    s = np.concatenate(parts).astype(np.float64)
    assert (merged == score_histogram(s)).all() and merged.sum() == len(s)
    t, w = top_fraction_threshold(merged, fraction), bin_width()
    exact = -np.sort(-s)[int(len(s) * fraction)]  # DataComp's get_threshold on every score
    assert t <= exact < t + w  # the documented resolution: one bin
    assert abs(t - np.quantile(s, 1 - fraction)) <= 2 * w
    kept, datacomp = s >= t, s >= exact
    assert (kept >= datacomp).all()  # DataComp's rows, plus only the rest of the threshold's bin
    assert ((s[kept & ~datacomp] >= t) & (s[kept & ~datacomp] < t + w)).all()


def test_text_filter_matches_lemmas_of_listed_synsets():
    synsets = pl.DataFrame(
        {"wnid": ["n1", "n2"], "lemmas": [["hot dog", "frank"], ["frank", "dog"]]},
        schema={"wnid": pl.String, "lemmas": pl.List(pl.String)},
    )
    lemmas = filter_lemmas(synsets)
    assert lemmas == {"hot dog": "n1", "frank": "n1", "dog": "n2"}  # a shared lemma is kept (first synset)
    got = text_filter(["A Hot-Dog stand", "dogs", "hotdog", "Frank's", None, "a DOG"], lemmas)
    assert got.tolist() == [True, False, False, True, False, True]
    assert text_filter(["a DOG"], lemmas, case_sensitive=True).tolist() == [False]


def test_filter_synsets_lists(tmp_path):
    assert filter_synsets("imagenet21k").height == 21843
    assert filter_synsets("ilsvrc2012").height == 1000
    path = tmp_path / "wnids.txt"
    path.write_text("n02084071\nn07697537\n")
    mine = filter_synsets(str(path))
    assert mine["wnid"].to_list() == ["n02084071", "n07697537"] and "hot dog" in mine["lemmas"][1].to_list()
    with pytest.raises(ValueError, match="synsets"):
        filter_synsets("imagenet22")


def _part(part: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    uids = [f"{part}:{i:09d}" for i in range(5)]
    meta = pl.DataFrame(
        {
            "uid": uids,
            "TEXT": ["a dog on grass", "a dog", "a cat on grass", "a dog in snow", "a dog in snow"],
            "WIDTH": [300, 300, 300, 300, 300],
            "HEIGHT": [300, 300, 300, 300, 300],
            "LANGUAGE": ["en", "en", "en", "de", "en"],
        }
    )
    scores = pl.DataFrame({"uid": uids[:4], "clip_score": [0.3, 0.35, 0.1, 0.29]})  # row 4: not embedded
    return meta, scores


def test_part_flags_known_answers():
    meta, scores = _part("p")
    flags = part_flags(meta, scores, {"dog": "n2"}, clip_threshold=0.28)
    assert flags["no_filter"].to_list() == [True, True, True, True, False]
    assert flags["basic"].to_list() == [True, False, True, False, False]
    assert flags["clip_score_threshold"].to_list() == [True, True, False, True, False]
    assert flags["laion2b"].to_list() == [True, True, False, False, False]  # row 3 is German
    assert flags["text_based"].to_list() == [True, True, False, False, False]
    no_language = part_flags(meta, scores, {"dog": "n2"}, language_column=None)
    assert no_language["laion2b"].to_list() == [True, True, False, True, False]


def test_selection_and_export_round_trip(tmp_path):
    flags = {p: part_flags(*_part(p), {"dog": "n2"}) for p in ("part-a", "part-b")}
    selection = select_parts(flags.__getitem__, list(flags), 0.3, ["basic", "clip_score_top_fraction"], FILTERS)
    assert selection.counts["part"].to_list() == ["part-a", "part-b"]
    assert selection.counts["clip_score_top_fraction"].to_list() == [2, 2]  # 0.3 and 0.35
    assert selection.kept["intersection"]["uid"].to_list() == ["part-a:000000000", "part-b:000000000"]
    frame = export_frame(selection.kept["intersection"])
    assert frame["part"].to_list() == ["part-a", "part-b"]
    assert frame["uid_hex"][0] == hashlib.md5(b"part-a:000000000").hexdigest()
    ids = datacomp_uids(frame["uid_hex"].to_list())
    np.save(tmp_path / "ids.npy", ids)
    back = np.load(tmp_path / "ids.npy", allow_pickle=False)
    assert back.dtype == np.dtype("u8,u8") == UID_DTYPE and (back == ids).all()
    assert (np.sort(back) == back).all()
    # DataComp's conversion: (int(uid[:16], 16), int(uid[16:32], 16))
    want = sorted((int(h[:16], 16), int(h[16:32], 16)) for h in frame["uid_hex"])
    assert [tuple(int(v) for v in row) for row in back] == want
    assert datacomp_uids(["0" * 31 + "1", "f" * 32]).tolist() == [(0, 1), (2**64 - 1, 2**64 - 1)]
    assert uid_hex(["x"]) == [hashlib.md5(b"x").hexdigest()]
    with pytest.raises(ValueError, match="intersect"):
        select_filters(flags["part-a"], 0.3, ["basic", "clip_score"])


def test_selection_verdicts_say_which_filters_a_pool_row_fails():
    flags = pl.DataFrame(
        {
            "uid": ["a", "b", "c", "d"],
            "clip_score": [0.4, 0.1, None, 0.35],
            "no_filter": [True, True, False, True],
            "basic": [True, False, False, False],
        }
    )
    selected = select_filters(flags, 0.3, ["basic", "clip_score_top_fraction"])
    verdicts = selection_verdicts(selected, ["basic", "clip_score_top_fraction"])
    assert verdicts.to_dicts() == [
        {"uid": "a", "clip_score": 0.4, "verdict": "kept", "failed": ""},
        {"uid": "b", "clip_score": 0.1, "verdict": "rejected", "failed": "basic, clip_score_top_fraction"},
        {"uid": "d", "clip_score": 0.35, "verdict": "rejected", "failed": "basic"},
    ]
    with pytest.raises(ValueError, match="missing columns"):
        selection_verdicts(flags, ["basic"])


def test_image_based_targets_and_flags_as_datacomps_two_steps():
    """Step 1: each reference image's most similar centroid (argmax of inner products), unique;
    step 2: a pool row passing the caption filter is kept iff its cluster is a target."""
    import numpy as np

    from laionlab.curation import image_based_flags, image_based_targets

    centroids = np.eye(4, dtype=np.float32)
    reference = np.array([[0.9, 0.1, 0, 0], [0.8, 0, 0.3, 0], [0, 0, 0.2, 0.7]], np.float32)
    assert image_based_targets(centroids, reference).tolist() == [0, 3]
    with pytest.raises(ValueError, match="dimension"):
        image_based_targets(centroids, reference[:, :3])
    flags = pl.DataFrame(
        {
            "uid": ["a", "b", "c", "d", "e"],
            "no_filter": [True, True, True, False, True],
            "image_caption": [True, True, False, True, True],
        }
    )
    clusters = pl.DataFrame({"uid": ["a", "b", "c", "d"], "cluster": [0, 1, 3, 3]})  # "e": no cluster
    out = image_based_flags(flags, clusters, np.array([0, 3]))
    assert out["image_based"].to_list() == [True, False, False, False, False]
    assert out.columns == [*flags.columns, "image_based"]
