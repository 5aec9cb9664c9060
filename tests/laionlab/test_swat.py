"""Tests of laionlab.swat (seed 003, SWAT): metrics-file synonyms, whole-word synonym matching
(checked against the seed's SQLite FTS5 search), the sampling methods on constructed
embeddings with known answers, and the T2T500.txt export."""

import json
import random
import sqlite3
import zlib

import numpy as np
import polars as pl
import pytest

from laionlab.swat import (
    METHODS,
    ClassSynonyms,
    cap_per_class,
    check_methods,
    class_frequency,
    fewshot_class,
    fewshot_embeddings,
    from_class_names,
    load_metrics_json,
    match_synonyms,
    needs_fewshot,
    normalise,
    prompt_embeddings,
    rank_samples,
    read_swat_txt,
    sample_all_methods,
    seed_fts5_query,
    swat_labels,
    swat_txt_name,
    write_swat_lists,
    write_swat_txt,
)

# --- synonyms ------------------------------------------------------------------------------

# Shaped like SWAT's data/{dataset}/{dataset}_metrics-LAION400M.json and REAL's
# analysis/laion/*/metrics-LAION400M.json (same keys, values shortened).
METRICS = {
    "0": {
        "name": "banded",
        "alternates": {"banded": 26507, "vertical striped": 4040},
        "most_common_name": "vertical striped",
        "actual_freq": 30547,
        "relevant_total": 17272,
        "llama_relevance_ratio": 0.5654296875,
    },
    "114": {
        "name": "slug",
        "freq": 13777,
        "alternates": {"garden slug": 41, "limax maximus": 21},
        "max_freq": "",
        "most_common_name": "garden slug",
        "actual_freq": 56,
    },
    "27": {
        "name": "eft",
        "changed_name": "red eft",
        "alternates": {"eft": 3},
        "most_common_name": "red eft",
        "actual_freq": 182,
    },
}


def write_json(tmp_path, obj, name="metrics.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return p


def test_load_metrics_json_reads_real_keys(tmp_path):
    syn = load_metrics_json(write_json(tmp_path, METRICS))
    assert list(syn) == [0, 114, 27]  # integer keys, file order
    assert syn[0] == ClassSynonyms("banded", ("banded", "vertical striped"), "vertical striped")
    # the plain name is not searched when absent from alternates (laion_parser's label stack)
    assert syn[114].synonyms == ("garden slug", "limax maximus")
    assert syn[114].name == "slug"
    # changed_name is searched too
    assert syn[27].synonyms == ("eft", "red eft")


def test_load_metrics_json_synonyms_final_fallback(tmp_path):
    obj = {"0": {"name": "a", "synonyms_final": {"a": 0, "b": 0}}, "1": {"synonyms_final": ["c"]}}
    syn = load_metrics_json(write_json(tmp_path, obj))
    assert syn[0].synonyms == ("a", "b")
    assert syn[1].name == "c" and syn[1].synonyms == ("c",)


@pytest.mark.parametrize(
    "text, match",
    [
        ('{"0": {"name": "a", "alternates": {}}}', "at least one synonym"),
        ('{"0": {"alternates": {"x": 1}}, "0": {"alternates": {"y": 1}}}', "duplicate class '0'"),
        ('{"1": {"alternates": ["x"]}, "01": {"alternates": ["y"]}}', "duplicate class 1"),
        ('{"0": {"name": "a"}}', "alternates"),
        ('{"0": {"alternates": ["!!!"]}}', "no letter or digit"),
        ('{"0": {"alternates": ["x"]}, "b": {"alternates": ["y"]}}', "all integers or all strings"),
        ("[1, 2]", "JSON object"),
        ("{}", "no classes"),
        ("{not json", "not valid JSON"),
    ],
)
def test_load_metrics_json_rejects(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_metrics_json(write_json(tmp_path, text))


def test_from_class_names():
    syn = from_class_names(["cat", "red fox"])
    assert syn == {0: ClassSynonyms("cat", ("cat",)), 1: ClassSynonyms("red fox", ("red fox",))}
    syn = from_class_names({"3": ["Red Fox", "vulpes"], "5": "cat"})
    assert list(syn) == [3, 5] and syn[3].name == "Red Fox" and syn[5].synonyms == ("cat",)
    with pytest.raises(ValueError, match="duplicate class name 'Cat' at 0 and 2"):
        from_class_names(["cat", "dog", "Cat"])
    with pytest.raises(ValueError, match="at least one class"):
        from_class_names([])
    with pytest.raises(ValueError, match=r"names\[1\]"):
        from_class_names(["cat", ""])
    with pytest.raises(ValueError, match="at least one synonym"):
        from_class_names({0: []})
    with pytest.raises(ValueError, match="duplicate class 1"):
        from_class_names({1: "a", "1": "b"})


# --- matching ------------------------------------------------------------------------------


def classes_of(captions, synonyms, prefix=None):
    return match_synonyms(captions, synonyms, prefix=prefix)["classes"].to_list()


def test_normalise_defines_words():
    assert normalise(["Red-Fox's  den!", "Café CRÈME", None, "x_y/z", "", "a1b2 ½"]).to_list() == [
        "red foxs den",
        "cafe creme",
        None,
        "x y z",
        "",
        "a1b2 ½",
    ]


def test_whole_words_only():
    syn = {0: ["cat"]}
    caps = ["cat", "Cat!", "a cat.", "(cat)", "category", "cats", "concat", "cat-like", "bobcat", "CAT_3"]
    assert classes_of(caps, syn) == [[0], [0], [0], [0], [], [], [], [0], [], [0]]


def test_phrases_and_punctuation():
    syn = {0: ["red fox"]}
    caps = ["a Red-Fox", "red_fox", "red, fox", "RED   FOX!", "redfox", "fox red", "red big fox", "red\tfox"]
    assert classes_of(caps, syn) == [[0], [0], [0], [0], [], [], [], [0]]
    # a hyphenated synonym is the same phrase
    assert classes_of(["red fox", "red-fox"], {0: ["red-fox"]}) == [[0], [0]]


def test_apostrophes_are_deleted_as_in_the_seed():
    assert classes_of(["men's shoes", "mens shoes", "men shoes"], {0: ["men"]}) == [[], [], [0]]
    assert classes_of(["Townsends Warbler", "townsend's warbler"], {0: ["Townsend's Warbler"]}) == [[0], [0]]


def test_case_and_diacritics_insensitive():
    assert classes_of(["CAFÉ au lait", "Cafe", "caffè"], {0: ["café"]}) == [[0], [0], []]


def test_prefix_rule():
    syn = {0: ["forest"], 1: ["river"]}
    caps = ["Satellite image of a forest", "forest", "satellites over forest", "river satellite", "satellite"]
    assert classes_of(caps, syn, prefix="satellite") == [[0], [], [], [1], []]
    # a multi-word prefix is a phrase
    caps = ["satellite image of a river", "image satellite river"]
    assert classes_of(caps, syn, prefix="Satellite-Image") == [[1], []]
    with pytest.raises(ValueError, match="prefix"):
        match_synonyms(["x"], syn, prefix="!!")


def test_multi_class_captions_keep_every_match():
    syn = {0: ["cat", "kitten"], 1: ["dog"], 2: ["cat"]}  # "cat" listed under two classes
    m = match_synonyms(["my cat and dog", "kitten", None, "", "dog dog"], syn)
    assert m["row"].to_list() == [0, 1, 2, 3, 4]
    assert m["classes"].to_list() == [[0, 1, 2], [0], [], [], [1]]
    assert m["synonyms"].to_list() == [["cat", "dog"], ["kitten"], [], [], ["dog"]]
    assert class_frequency(m) == {0: 2, 1: 2, 2: 1}
    assert class_frequency(m, classes=[0, 1, 2, 7]) == {0: 2, 1: 2, 2: 1, 7: 0}


def test_match_accepts_series_and_string_keys():
    m = match_synonyms(pl.Series(["A dog"]), {"canine": ClassSynonyms("dog", ("dog",))})
    assert m["classes"].to_list() == [["canine"]]
    assert m.schema["classes"] == pl.List(pl.String)


@pytest.mark.parametrize(
    "captions, synonyms, match",
    [
        ([1, 2], {0: ["a"]}, "captions"),
        ("a cat", {0: ["a"]}, "captions"),
        (["x"], {}, "synonyms"),
        (["x"], {0: []}, "at least one synonym"),
        (["x"], {0: ["?!"]}, "no letter or digit"),
    ],
)
def test_match_rejects(captions, synonyms, match):
    with pytest.raises(ValueError, match=match):
        match_synonyms(captions, synonyms)


SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "ber", "dan"]


def _word(rng):
    return "".join(rng.choices(SYLLABLES, k=rng.randint(1, 3)))


def _seed_fts5_matches(captions, synonyms, prefix):
    """The seed's search: normalised captions in an FTS5 table, one MATCH per synonym."""
    con = sqlite3.connect(":memory:")
    con.execute("CREATE VIRTUAL TABLE _fts0 USING FTS5(TEXT)")
    norm = [c.replace('"', "").replace("'", "").replace("-", " ").replace("_", " ") if c else "N.A." for c in captions]
    con.executemany("INSERT INTO _fts0 (TEXT) values(?)", [(c,) for c in norm])
    out = [set() for _ in captions]
    for key, entry in synonyms.items():
        for s in entry.synonyms:
            for (rowid,) in con.execute("SELECT rowid FROM _fts0 WHERE _fts0 MATCH ?", (seed_fts5_query(s, prefix),)):
                out[rowid - 1].add(key)
    con.close()
    return [sorted(s) for s in out]


@pytest.mark.parametrize("prefix", [None, "satellite"])
def test_agrees_with_the_seeds_fts5_search(prefix):
    rng = random.Random(3)
    words = sorted({_word(rng) for _ in range(60)})
    syn = {}
    for k in range(25):
        names = []
        for _ in range(rng.randint(1, 3)):
            parts = rng.sample(words, rng.randint(1, 3))
            sep = rng.choice([" ", " ", "-", "'s "])
            # "Abc. def" is sent quoted; with a prefix the seed then wants "prefix abc def"
            # as one phrase (test_seed_quotes_prefix_and_dotted_synonym), so not with a prefix
            dotted = rng.random() >= 0.8 and prefix is None
            names.append(parts[0].title() + ". " + " ".join(parts[1:]) if dotted else sep.join(parts))
        syn[k] = names
    syn = from_class_names(syn)
    seps = [" ", " ", " ", ", ", "-", "_", "! ", " (", ") ", "/", ": ", "'s "]
    captions = []
    for _ in range(1500):
        toks = rng.choices(words + ["satellite", "Satellite", "satellites"], k=rng.randint(0, 9))
        cap = "".join(t if rng.random() < 0.8 else t.upper() for t in (tok + rng.choice(seps) for tok in toks))
        captions.append(cap if rng.random() > 0.02 else None)
    got = classes_of(captions, syn, prefix=prefix)
    want = _seed_fts5_matches(captions, syn, prefix)
    assert sum(1 for g in got if g) > 100
    assert got == want


def test_seed_quotes_prefix_and_dotted_synonym():
    """Where the seed differs: a synonym with '.' or '/' is sent as one quoted phrase, the
    prefix included; here the prefix may be anywhere."""
    assert seed_fts5_query("St. Bernard", "satellite") == '"satellite st. + bernard"'
    assert seed_fts5_query("Red-Fox") == "red + fox"
    assert seed_fts5_query("chiton (mollusk)") == "chiton + mollusk"
    caps = ["satellite st bernard", "st. bernard from a satellite"]
    syn = from_class_names({0: ["St. Bernard"]})
    assert classes_of(caps, syn, prefix="satellite") == [[0], [0]]
    assert _seed_fts5_matches(caps, syn, "satellite") == [[0], []]


# --- ranking -------------------------------------------------------------------------------


def unit(*first):
    """Unit vectors of d = 4 whose leading coordinates are ``first`` (exact in float32), the
    rest filling the norm; so v · e0 = first[0] exactly."""
    out = []
    for f in first:
        f = np.atleast_1d(np.asarray(f, np.float64))
        rest = np.sqrt(max(0.0, 1.0 - float(f @ f)))
        v = np.zeros(4)
        v[: len(f)] = f
        v[3] = rest
        out.append(v)
    return np.asarray(out, np.float32)


E0 = np.array([1, 0, 0, 0], np.float32)
E1 = np.array([0, 1, 0, 0], np.float32)
E2 = np.array([0, 0, 1, 0], np.float32)


@pytest.fixture
def pool():
    """Rows 0-5 in class 0, rows 6-8 in class 1, row 9 in both."""
    classes = [[0]] * 6 + [[1]] * 3 + [[0, 1]]
    t2t0 = [0.5, 0.875, 0.25, 0.75, 0.125, 0.625, 0.0, 0.0, 0.0, 0.0]
    text = unit(*t2t0)
    text[6:10] = unit([0, 0.5], [0, 0.25], [0, 0.75], [0.375, 0.125])
    t2i0 = [0.5, 0.125, 0.25, 0.75, 0.375, 0.1875, 0.0, 0.0, 0.0, 0.5]
    image = unit(*t2i0)
    return {
        "classes": classes,
        "text": text,
        "image": image,
        "prompt": {0: E0, 1: E1},
    }


def picks(frame, cls):
    sub = frame.filter(pl.col("class") == cls).sort("rank")
    return sub["row"].to_list()


def test_t2t_rank_top_rows_are_the_closest_captions(pool):
    out = rank_samples("T2T-rank", pool["classes"], text_emb=pool["text"], prompt_emb=pool["prompt"], n_per_class=3)
    assert out.columns == ["row", "class", "score", "rank", "method"]
    assert picks(out, 0) == [1, 3, 5]
    assert out.filter(pl.col("class") == 0)["score"].to_list() == [0.875, 0.75, 0.625]
    assert out.filter(pl.col("class") == 0)["rank"].to_list() == [1, 2, 3]
    # class 1: rows 6-9 by caption · e1 = 0.5, 0.25, 0.75, 0.125
    assert picks(out, 1) == [8, 6, 7]
    assert set(out["method"]) == {"T2T-rank"}


def test_multi_class_row_competes_in_each_class(pool):
    out = rank_samples("T2T-rank", pool["classes"], text_emb=pool["text"], prompt_emb=pool["prompt"], n_per_class=10)
    row9 = out.filter(pl.col("row") == 9).sort("class")
    assert row9["class"].to_list() == [0, 1]
    assert row9["score"].to_list() == [0.375, 0.125]
    assert row9["rank"].to_list() == [5, 4]  # class 0: after .875 .75 .625 .5; class 1: last
    # fewer candidates than N: every candidate kept
    assert out.group_by("class").len().sort("class")["len"].to_list() == [7, 4]


def test_t2i_rank_uses_images(pool):
    out = rank_samples("T2I-rank", pool["classes"], image_emb=pool["image"], prompt_emb=pool["prompt"], n_per_class=2)
    assert picks(out, 0) == [3, 0]  # 0.75, then 0.5 tied with row 9: lower row first
    assert out.filter(pl.col("class") == 0)["score"].to_list() == [0.75, 0.5]


def test_t2t_rank_t2i_threshold_drops_exactly_the_rows_below(pool):
    kw = dict(text_emb=pool["text"], image_emb=pool["image"], prompt_emb=pool["prompt"], n_per_class=500)
    out = rank_samples("T2T-rank-T2I-tshd", pool["classes"], **kw)
    # class 0 T2I: rows 0..5 = .5 .125 .25 .75 .375 .1875, row 9 = .5; >= 0.25 kept (0.25 itself too)
    assert picks(out, 0) == [3, 0, 9, 2, 4]  # by T2T: .75 .5 .375 .25 .125
    assert out.filter(pl.col("class") == 0)["score"].to_list() == [0.75, 0.5, 0.375, 0.25, 0.125]
    out = rank_samples("T2T-rank-T2I-tshd", pool["classes"], t2i_threshold=0.5, **kw)
    assert picks(out, 0) == [3, 0, 9]
    out = rank_samples("T2T-rank-T2I-tshd", pool["classes"], t2i_threshold=0.5, **{**kw, "n_per_class": 2})
    assert picks(out, 0) == [3, 0]


@pytest.fixture
def fewshot_pool():
    # few-shot images of class 0: e0 and e1; of class 1: e2
    fewshot = {0: np.stack([E0, E1]), 1: E2[None, :]}
    # rows 0-3 in class 0 with (e0, e1) coordinates chosen so mean and max orders differ
    coords = [[0.75, 0.0], [0.375, 0.375], [0.5, 0.125], [0.125, 0.25]]
    emb = unit(*coords, [0, 0, 0.5], [0, 0, 0.25])
    return {"classes": [[0]] * 4 + [[1]] * 2, "emb": emb, "fewshot": fewshot}


@pytest.mark.parametrize("method, which", [("I2I-rank", "image_emb"), ("I2T-rank", "text_emb")])
def test_fewshot_rankings_score_by_the_mean_few_shot_similarity(fewshot_pool, method, which):
    out = rank_samples(
        method,
        fewshot_pool["classes"],
        **{which: fewshot_pool["emb"]},
        fewshot_emb=fewshot_pool["fewshot"],
        n_per_class=4,
    )
    # mean of (e0, e1) similarities: .375, .375, .3125, .1875 -> rows 0, 1 tie: lower row first
    assert picks(out, 0) == [0, 1, 2, 3]
    np.testing.assert_allclose(out.filter(pl.col("class") == 0)["score"].to_numpy(), [0.375, 0.375, 0.3125, 0.1875])
    assert picks(out, 1) == [4, 5]


@pytest.mark.parametrize("method, kw", [("T2T-rank-I2I-tshd", "i2i_threshold"), ("T2T-rank-I2T-tshd", "i2t_threshold")])
def test_fewshot_threshold_uses_the_max_similarity(fewshot_pool, method, kw):
    emb = fewshot_pool["emb"]
    # T2T order of class 0 set by the prompt e2: captions get distinct e2 components
    text = emb.copy()
    if method.endswith("I2I-tshd"):
        text = unit([0, 0, 0.5], [0, 0, 0.75], [0, 0, 0.25], [0, 0, 0.875], [0, 0.5], [0, 0.25])
        args = dict(text_emb=text, image_emb=emb)
    else:
        # I2T filter reads the captions; keep their e0/e1 parts and add an e2 part for T2T
        coords = [[0.75, 0.0, 0.5], [0.375, 0.375, 0.75], [0.5, 0.125, 0.25], [0.125, 0.25, 0.875]]
        text = unit(*coords, [0, 0.5], [0, 0.25])
        args = dict(text_emb=text)
    prompt = {0: E2, 1: E1}
    common = dict(prompt_emb=prompt, fewshot_emb=fewshot_pool["fewshot"], n_per_class=10, **args)
    # max over (e0, e1): .75, .375, .5, .25; threshold .375 keeps rows 0, 1, 2
    out = rank_samples(method, fewshot_pool["classes"], **{kw: 0.375}, **common)
    assert picks(out, 0) == [1, 0, 2]  # T2T (e2): .75, .5, .25
    # the mean (.375, .375, .3125, .1875) would drop row 2
    out = rank_samples(method, fewshot_pool["classes"], **{kw: 0.375}, fewshot_filter="mean", **common)
    assert picks(out, 0) == [1, 0]


def test_default_thresholds(pool):
    out = rank_samples(
        "T2T-rank-T2I-tshd", pool["classes"], text_emb=pool["text"], image_emb=pool["image"], prompt_emb=pool["prompt"]
    )
    assert picks(out, 0) == [3, 0, 9, 2, 4]  # 0.25 default


def test_random_is_seeded_and_keeps_n(pool):
    a = rank_samples("Random", pool["classes"], n_per_class=3, seed=7)
    b = rank_samples("Random", pool["classes"], n_per_class=3, seed=7)
    assert a.equals(b)
    assert a.group_by("class").len().sort("class")["len"].to_list() == [3, 3]
    assert a["score"].null_count() == a.height
    assert set(picks(a, 0)) <= {0, 1, 2, 3, 4, 5, 9} and set(picks(a, 1)) <= {6, 7, 8, 9}
    draws = {tuple(picks(rank_samples("Random", pool["classes"], n_per_class=3, seed=s), 0)) for s in range(20)}
    assert len(draws) > 5
    everything = rank_samples("Random", pool["classes"], n_per_class=500, seed=0)
    assert sorted(picks(everything, 0)) == [0, 1, 2, 3, 4, 5, 9]


def test_rank_takes_match_frames_and_every_method_runs(pool):
    frame = pl.DataFrame({"row": [0, 3, 9], "classes": [[0], [0], [0, 1]]})
    fewshot = {0: np.stack([E0, E1]), 1: E2[None, :]}
    for method in METHODS:
        out = rank_samples(
            method,
            frame,
            text_emb=pool["text"],
            image_emb=pool["image"],
            prompt_emb=pool["prompt"],
            fewshot_emb=fewshot,
            n_per_class=5,
            t2i_threshold=-1,
            i2t_threshold=-1,
            i2i_threshold=-1,
        )
        assert sorted(zip(out["row"], out["class"])) == [(0, 0), (3, 0), (9, 0), (9, 1)], method
        assert out.schema == {
            "row": pl.Int64,
            "class": pl.Int64,
            "score": pl.Float32,
            "rank": pl.UInt32,
            "method": pl.String,
        }
    empty = rank_samples("T2T-rank", [[], []], text_emb=pool["text"], prompt_emb=pool["prompt"])
    assert empty.height == 0 and empty.columns == ["row", "class", "score", "rank", "method"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="T2T"), "method: expected one of"),
        (dict(method="t2t-rank"), "method"),
        (dict(n_per_class=0), "n_per_class"),
        (dict(n_per_class=-3), "n_per_class"),
        (dict(n_per_class=2.5), "n_per_class"),
        (dict(text_emb=None), "text_emb: required"),
        (dict(prompt_emb={0: E0}), "prompt_emb: no embedding for class 1"),
        (dict(prompt_emb={0: E0[:3], 1: E1[:3]}), "dimension mismatch"),
        (dict(t2i_threshold=2.0, method="T2T-rank-T2I-tshd"), "t2i_threshold"),
        (dict(fewshot_filter="min"), "fewshot_filter"),
        (dict(classes_of_rows="abc"), "classes_of_rows"),
        (dict(classes_of_rows=pl.DataFrame({"row": [0]})), "classes_of_rows"),
        (dict(classes_of_rows=[[0]] * 11), "at least 11 rows"),
    ],
)
def test_rank_rejects(pool, kwargs, match):
    args = dict(
        method="T2T-rank",
        classes_of_rows=pool["classes"],
        text_emb=pool["text"],
        image_emb=pool["image"],
        prompt_emb=pool["prompt"],
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        rank_samples(**args)


def fake_encoder(calls):
    """Deterministic pseudo-embeddings, not unit norm (prompt_embeddings normalises)."""

    def encode(texts):
        calls.append(list(texts))
        return np.stack([np.random.default_rng(zlib.crc32(t.encode())).normal(size=8) * 3 for t in texts])

    return encode


def test_prompt_embeddings_mean_over_synonyms_and_templates():
    calls = []
    syn = {0: ["red fox", "vulpes"], 1: ["cat"]}
    out = prompt_embeddings(fake_encoder(calls), syn, templates=["a photo of a {}.", "art of the {}."])
    assert calls == [
        [
            "a photo of a red fox.",
            "art of the red fox.",
            "a photo of a vulpes.",
            "art of the vulpes.",
            "a photo of a cat.",
            "art of the cat.",
        ]
    ]
    enc = fake_encoder([])
    for k, prompts in ((0, calls[0][:4]), (1, calls[0][4:])):
        e = enc(prompts)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        m = e.mean(0)
        np.testing.assert_allclose(out[k], m / np.linalg.norm(m), rtol=1e-6)
        assert out[k].dtype == np.float32
    # default: open_clip's 80 OpenAI ImageNet templates
    calls.clear()
    prompt_embeddings(fake_encoder(calls), {0: "cat"})
    assert len(calls[0]) == 80 and calls[0][0] == "a bad photo of a cat."
    with pytest.raises(ValueError, match="templates"):
        prompt_embeddings(fake_encoder([]), syn, templates=["no placeholder"])
    with pytest.raises(ValueError, match="one per prompt"):
        prompt_embeddings(lambda texts: np.ones((1, 4)), syn, templates=["{}"])


# --- export --------------------------------------------------------------------------------


def test_swat_txt_round_trip(tmp_path, pool):
    out = rank_samples("T2T-rank", pool["classes"], text_emb=pool["text"], prompt_emb=pool["prompt"], n_per_class=3)
    paths = [f"retrieved/{i // 6}/{i}.jpg" for i in range(10)]
    name = swat_txt_name("T2T-rank", 3)
    assert name == "T2T3.txt"
    target = str(tmp_path / name)
    assert write_swat_txt(out, paths, None, target) == 6
    text = (tmp_path / name).read_text()
    assert text.splitlines()[:3] == ["retrieved/0/1.jpg 0", "retrieved/0/3.jpg 0", "retrieved/0/5.jpg 0"]
    back = read_swat_txt(target)
    assert back["path"].to_list() == [paths[r] for r in [1, 3, 5, 8, 6, 7]]
    assert back["label"].to_list() == [0, 0, 0, 1, 1, 1]
    assert back["source"].null_count() == 6
    # the seed's three-field form, labels through a mapping, paths through a mapping
    write_swat_txt(out, dict(enumerate(paths)), {0: 10, 1: 5}, target, source=0)
    back = read_swat_txt(target)
    assert back["label"].to_list() == [5, 5, 5, 10, 10, 10]  # ordered by label
    assert back["source"].to_list() == [0] * 6
    assert (tmp_path / name).read_text().splitlines()[0] == "retrieved/1/8.jpg 5 0"


def test_swat_txt_names():
    assert swat_txt_name("T2T-rank") == "T2T500.txt"
    assert swat_txt_name("T2T-rank-T2I-tshd") == "T2T500+T2I0.25.txt"
    assert swat_txt_name("T2T-rank-I2I-tshd", 500, 0.65) == "T2T500+I2I0.65.txt"
    assert swat_txt_name("Random", 100) == "Random100.txt"
    with pytest.raises(ValueError, match="method"):
        swat_txt_name("T2X")
    with pytest.raises(ValueError, match="threshold"):
        swat_txt_name("T2T-rank", 500, 0.3)


def test_swat_txt_rejects(tmp_path, pool):
    out = rank_samples("T2T-rank", pool["classes"], text_emb=pool["text"], prompt_emb=pool["prompt"], n_per_class=1)
    target = str(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="whitespace"):
        write_swat_txt(out, ["a b.jpg"] * 10, None, target)
    with pytest.raises(ValueError, match="no image path for 8"):
        write_swat_txt(out, ["a.jpg"] * 5, None, target)
    with pytest.raises(ValueError, match="one method per file"):
        two = pl.concat([out, out.with_columns(pl.lit("Random").alias("method"))])
        write_swat_txt(two, ["a.jpg"] * 10, None, target)
    with pytest.raises(ValueError, match="integer labels"):
        write_swat_txt(out.with_columns(pl.col("class").cast(pl.String)), ["a.jpg"] * 10, None, target)
    (tmp_path / "bad.txt").write_text("a.jpg 0\nno_label_here\n")
    with pytest.raises(ValueError, match="line 2"):
        read_swat_txt(str(tmp_path / "bad.txt"))


def test_pipeline_match_rank_export(tmp_path):
    syn = from_class_names({0: ["red fox"], 1: ["cat"]})
    captions = ["a red fox", "a cat", "red fox and cat", "nothing", "Red-Fox!"]
    matches = match_synonyms(captions, syn)
    text = unit([0.5, 0.0], [0.0, 0.5], [0.25, 0.75], [0, 0], [0.875, 0.0])
    prompts = {0: E0, 1: E1}
    out = rank_samples("T2T-rank", matches, text_emb=text, prompt_emb=prompts, n_per_class=2)
    assert picks(out, 0) == [4, 0] and picks(out, 1) == [2, 1]
    write_swat_txt(out, [f"img/{i}.jpg" for i in range(5)], None, str(tmp_path / "T2T2.txt"))
    back = read_swat_txt(str(tmp_path / "T2T2.txt"))
    assert back["path"].to_list() == ["img/4.jpg", "img/0.jpg", "img/2.jpg", "img/1.jpg"]


def test_swat_labels_are_the_metrics_class_ids(tmp_path):
    # a class subset with gaps, not in id order: SWAT writes int(class id), not the position
    subset = {k: METRICS[k] for k in ("114", "0", "27")}
    syn = load_metrics_json(write_json(tmp_path, subset))
    assert swat_labels(syn) == {114: 114, 0: 0, 27: 27}
    # plain class names are numbered in list order (their keys already are)
    assert swat_labels(from_class_names(["tench", "goldfish"])) == {0: 0, 1: 1}
    # keys that are not ids (a metrics file keyed by names): numbered in file order
    assert swat_labels(["zebra", "apple"]) == {"zebra": 0, "apple": 1}
    with pytest.raises(ValueError, match="all integers or all strings"):
        swat_labels([0, "a"])
    with pytest.raises(ValueError, match="duplicate class 3"):
        swat_labels([3, 0, 3])


def test_swat_lists_carry_the_class_ids_through_a_round_trip(tmp_path, pool):
    """Classes 3 and 0 (a gap, not in id order): each line's label is its class id."""
    classes = [[{0: 3, 1: 0}[c] for c in cs] for cs in pool["classes"]]
    prompts = {3: E0, 0: E1}
    picked = sample_all_methods(
        ["T2T-rank", "Random"], classes, text_emb=pool["text"], prompt_emb=prompts, n_per_class=2
    )
    paths = {r: f"img/{r}.jpg" for r in picked["row"].unique()}  # only the picked rows
    sizes = write_swat_lists(picked, paths, swat_labels(prompts), str(tmp_path), n_per_class=2)
    assert sizes == {"T2T-rank": 4, "Random": 4}
    back = read_swat_txt(str(tmp_path / "T2T2.txt"))
    want = picked.filter(pl.col("method") == "T2T-rank").sort("class", "rank")
    assert back["path"].to_list() == [f"img/{r}.jpg" for r in want["row"]]
    assert back["label"].to_list() == want["class"].to_list() == [0, 0, 3, 3]
    assert picks(want, 3) == [1, 3] and picks(want, 0) == [8, 6]  # T2T order, class 3 scored by e0
    assert set(read_swat_txt(str(tmp_path / "Random2.txt"))["label"]) == {0, 3}


def test_write_swat_lists_names_files_by_threshold_and_writes_empty_methods(tmp_path, pool):
    picks = sample_all_methods(
        ["T2T-rank-T2I-tshd"],
        pool["classes"],
        pool["text"],
        pool["image"],
        pool["prompt"],
        n_per_class=5,
        t2i_threshold=0.99,
    )
    assert picks.height == 0
    sizes = write_swat_lists(
        picks, {}, None, str(tmp_path), methods=["T2T-rank-T2I-tshd"], n_per_class=5, t2i_threshold=0.99
    )
    assert sizes == {"T2T-rank-T2I-tshd": 0} and (tmp_path / "T2T5+T2I0.99.txt").read_text() == ""
    with pytest.raises(ValueError, match="methods"):
        write_swat_lists(picks, {}, None, str(tmp_path), methods=["Best"])


def test_sample_all_methods_equals_rank_samples_per_method(pool):
    fewshot = {0: np.stack([E0, E1]), 1: E2[None, :]}
    kw = dict(
        text_emb=pool["text"],
        image_emb=pool["image"],
        prompt_emb=pool["prompt"],
        fewshot_emb=fewshot,
        n_per_class=3,
        t2i_threshold=0.2,
        i2t_threshold=0.1,
        i2i_threshold=0.3,
        seed=4,
    )
    out = sample_all_methods(list(reversed(METHODS)), pool["classes"], **kw)
    assert out["method"].unique(maintain_order=True).to_list() == list(reversed(METHODS))
    for method in METHODS:
        want = rank_samples(method, pool["classes"], **kw)
        assert out.filter(pl.col("method") == method).equals(want), method
    with pytest.raises(ValueError, match="unknown"):
        sample_all_methods(["T2T-rank", "Best"], pool["classes"], **kw)
    with pytest.raises(ValueError, match="more than once"):
        check_methods(["Random", "Random"])
    with pytest.raises(ValueError, match="non-empty"):
        check_methods([])


def test_needs_fewshot():
    assert not needs_fewshot(["Random", "T2T-rank", "T2I-rank", "T2T-rank-T2I-tshd"])
    for method in ("I2T-rank", "I2I-rank", "T2T-rank-I2T-tshd", "T2T-rank-I2I-tshd"):
        assert needs_fewshot(["T2T-rank", method]), method


def test_fewshot_embeddings_group_images_by_class():
    syn = from_class_names({3: ["tench"], 0: ["goldfish"], 7: ["shark"]})
    labels = ["n01443537", "n01440764", "other", "n01440764", "goldfish", "7"]
    emb = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = fewshot_embeddings(labels, emb, syn, {"n01440764": 3, "n01443537": "0"})
    # order of the classes, rows in dataset order; "goldfish" by name, "7" by key, "other" dropped
    assert list(out) == [3, 0, 7]
    np.testing.assert_array_equal(out[3], emb[[1, 3]])
    np.testing.assert_array_equal(out[0], emb[[0, 4]])
    np.testing.assert_array_equal(out[7], emb[[5]])
    assert fewshot_class("n01440764", syn, {"n01440764": "tench"}) == 3  # a class name as the value
    assert fewshot_class("other", syn) is None


def test_fewshot_embeddings_reject_unknown_classes():
    syn = from_class_names({3: ["tench"], 0: ["goldfish"]})
    emb = np.ones((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"label 'n01' maps to 5, which is no class.*known classes: 3 \(tench\), 0"):
        fewshot_embeddings(["n01", "n02"], emb, syn, {"n01": 5})
    with pytest.raises(ValueError, match="no few-shot label \\('a', 'b'\\).*fewshot_labels"):
        fewshot_embeddings(["a", "b"], emb, syn)
    with pytest.raises(ValueError, match="one row per label"):
        fewshot_embeddings(["a"], emb, syn)


def test_cap_per_class_is_seeded_and_each_class_draws_at_most_n():
    matches = pl.DataFrame(
        {"uid": [f"u{i}" for i in range(30)], "classes": [["a"]] * 20 + [["b"]] * 5 + [["a", "b"]] * 5}
    )
    out = cap_per_class(matches, 4, seed=1)
    per_class = out.explode("classes")["classes"].value_counts()
    counts = dict(zip(per_class["classes"], per_class["count"]))
    # a row of both classes drawn for one of them may push the other over 4, never beyond 4 + 4
    assert counts["a"] >= 4 and counts["b"] >= 4 and out.height <= 8
    assert out["uid"].to_list() == sorted(out["uid"].to_list(), key=lambda u: int(u[1:]))  # input order
    assert cap_per_class(matches, 4, seed=1).equals(out)
    assert {tuple(cap_per_class(matches, 4, seed=s)["uid"]) for s in range(10)} != {tuple(out["uid"])}
    assert cap_per_class(matches, 100).equals(matches)
    single = cap_per_class(matches.head(25), 4, seed=1)  # one class per row: exactly min(n, rows) each
    assert single.explode("classes")["classes"].value_counts(sort=True)["count"].to_list() == [4, 4]
    with pytest.raises(ValueError, match="max_per_class"):
        cap_per_class(matches, 0)


def _seed_add_to_split(scores, filters, n, threshold=0.0, filter_threshold=None):
    """The seed's sampler + add_to_split for one class: rows sorted by ranking score (Python's
    stable sort, reverse=True: ties keep row order), walked in that order, a row kept while
    fewer than n are kept if its score >= threshold (sampling() passes 0.0) and, for the
    *-tshd methods, its filter score >= the filter threshold."""
    order = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)
    kept = []
    for i in order:
        if len(kept) == n:
            break
        if scores[i] >= threshold and (filter_threshold is None or filters[i] >= filter_threshold):
            kept.append(i)
    return kept


@pytest.mark.parametrize("method", ["T2T-rank", "T2I-rank", "T2T-rank-T2I-tshd"])
def test_ranked_methods_never_pick_negative_scores_as_the_seed(method):
    rng = np.random.default_rng(3)
    n, d = 300, 8
    text = rng.normal(size=(n, d)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    image = rng.normal(size=(n, d)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    prompt = rng.normal(size=d).astype(np.float32)
    prompt /= np.linalg.norm(prompt)
    classes = [[0]] * n
    kw = dict(text_emb=text, image_emb=image, prompt_emb={0: prompt}, n_per_class=200)
    out = rank_samples(method, classes, **kw)
    rank_scores = (image if method == "T2I-rank" else text) @ prompt
    t2i = image @ prompt
    tshd = 0.25 if method.endswith("tshd") else None
    expected = _seed_add_to_split(rank_scores.tolist(), t2i.tolist(), 200, 0.0, tshd)
    assert len(expected) < 200  # about half the random scores are negative: the limit binds
    assert picks(out, 0) == expected
    assert out["score"].min() >= 0.0
    filled = rank_samples(method, classes, **kw, min_rank_score=None)
    assert filled.height == (
        200 if tshd is None else len(_seed_add_to_split(rank_scores.tolist(), t2i.tolist(), 200, -1.0, tshd))
    )
    assert filled["score"].min() < 0.0
