"""Tests of laionlab.laionet.match: seed 001's (LAIONet) unique-lemma dictionary and its
lemma → caption rule (ASCII punctuation → space, one-space padding, substring test)."""

import random
import string

import polars as pl
import pytest

from laionlab.io.imagenet import ilsvrc_synsets
from laionlab.laionet import (
    UniqueLemmas,
    match_lemmas,
    match_lemmas_frame,
    punctuated_lemmas,
    unique_lemma_map,
)

ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
SEED_TRANSLATE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def seed_rule(caption, lemma_to_wnid, case_sensitive=True):
    """The seed's rule written out per caption and lemma, as a reference."""
    if caption is None:
        return [], []
    text = " " + caption.translate(SEED_TRANSLATE) + " "
    if not case_sensitive:
        text = text.translate(ASCII_LOWER)
    lemmas = sorted(
        lemma
        for lemma in lemma_to_wnid
        if " " + (lemma if case_sensitive else lemma.translate(ASCII_LOWER)) + " " in text
    )
    return lemmas, sorted({lemma_to_wnid[lemma] for lemma in lemmas})


@pytest.fixture
def toy_map():
    return {
        "hot dog": "n_hotdog",
        "dog": "n_dog",
        "ai": "n_sloth",
        "soccer ball": "n_ball",
        "goldfish": "n_goldfish",
        "Carassius auratus": "n_goldfish",
        "three-toed sloth": "n_sloth",
        "RV": "n_rv",
    }


@pytest.fixture(scope="module")
def ilsvrc():
    return ilsvrc_synsets()


# --- matching rule ----------------------------------------------------------------------------


def test_whole_words_only(toy_map):
    assert match_lemmas(["paid", "ai", "the ai.", "aim ai", "RVs", "an RV"], toy_map) == [
        [],
        ["n_sloth"],
        ["n_sloth"],
        ["n_sloth"],
        [],
        ["n_rv"],
    ]


def test_punctuation_becomes_space(toy_map):
    captions = ["soccer-ball", "(soccer)ball!", "hot/dog", "dog's bed", "soccer_ball"]
    frame = match_lemmas_frame(captions, toy_map)
    assert frame["lemmas"].to_list() == [
        ["soccer ball"],
        ["soccer ball"],
        ["dog", "hot dog"],
        ["dog"],
        ["soccer ball"],
    ]


def test_punctuated_lemma_never_matches(toy_map):
    # As in the seed: the caption's hyphen is gone before the lemma's hyphen is compared.
    assert match_lemmas(["a three-toed sloth", "three toed sloth"], toy_map) == [[], []]
    assert punctuated_lemmas(toy_map) == ["three-toed sloth"]


def test_tabs_and_newlines_are_not_spaces(toy_map):
    # "\nhot dog bun" pads to " \nhot dog bun ": " dog " is there, " hot dog " is not.
    assert match_lemmas(["hot\tdog", "soccer\nball", "\nhot dog bun"], toy_map) == [[], [], ["n_dog"]]


def test_multi_word_and_overlapping(toy_map):
    frame = match_lemmas_frame(["hot dog bun", "dog dog", "a hot dog and a dog", "hot  dog"], toy_map)
    assert frame["lemmas"].to_list() == [["dog", "hot dog"], ["dog"], ["dog", "hot dog"], ["dog"]]
    assert frame["wnids"].to_list() == [["n_dog", "n_hotdog"], ["n_dog"], ["n_dog", "n_hotdog"], ["n_dog"]]
    # Patterns sharing boundary spaces and nested multi-word lemmas all count.
    nested = {"a b": "x", "b c": "y", "a b c": "z", "b": "w", "c": "v"}
    assert match_lemmas(["a b c"], nested) == [["v", "w", "x", "y", "z"]]


def test_case_sensitive_by_default(toy_map):
    assert match_lemmas(["Goldfish", "GOLDFISH", "goldfish", "carassius auratus", "rv"], toy_map) == [
        [],
        [],
        ["n_goldfish"],
        [],
        [],
    ]
    captions = ["Goldfish", "carassius AURATUS", "Hot Dog", "rv", "paid"]
    folded = match_lemmas(captions, toy_map, case_sensitive=False)
    assert folded == [["n_goldfish"], ["n_goldfish"], ["n_dog", "n_hotdog"], ["n_rv"], []]


def test_case_insensitive_folds_ascii_only_and_keeps_all_lemmas():
    lemmas = {"Ai": "upper", "ai": "lower", "éclair": "pastry"}
    frame = match_lemmas_frame(["AI", "ÉCLAIR", "Éclair", "éCLAIR"], lemmas, case_sensitive=False)
    assert frame["lemmas"].to_list() == [["Ai", "ai"], [], [], ["éclair"]]
    assert frame["wnids"].to_list() == [["lower", "upper"], [], [], ["pastry"]]


def test_null_empty_and_series_input(toy_map):
    captions = pl.Series("text", [None, "", "   ", "dog"], dtype=pl.String)
    frame = match_lemmas_frame(captions, toy_map)
    assert frame.columns == ["row", "lemmas", "wnids"]
    assert frame["row"].to_list() == [0, 1, 2, 3]
    assert frame["wnids"].to_list() == [[], [], [], ["n_dog"]]
    assert frame.schema["wnids"] == pl.List(pl.String)
    assert match_lemmas([], toy_map) == []
    assert match_lemmas(["dog"], {}) == [[]]
    assert match_lemmas(pl.Series([None, None]), toy_map) == [[], []]


def test_bad_inputs(toy_map):
    with pytest.raises(ValueError, match="^captions"):
        match_lemmas("dog", toy_map)
    with pytest.raises(ValueError, match="^captions"):
        match_lemmas(["dog", 3], toy_map)
    with pytest.raises(ValueError, match="^captions"):
        match_lemmas(pl.Series([1, 2]), toy_map)
    with pytest.raises(ValueError, match="^lemma_to_wnid"):
        match_lemmas(["dog"], [("dog", "n")])
    with pytest.raises(ValueError, match="^lemma_to_wnid"):
        match_lemmas(["dog"], {"": "n"})
    with pytest.raises(ValueError, match="^lemma_to_wnid"):
        match_lemmas(["dog"], {" dog": "n"})
    with pytest.raises(ValueError, match="^lemma_to_wnid"):
        match_lemmas(["dog"], {"dog": 1})
    with pytest.raises(ValueError, match="^case_sensitive"):
        match_lemmas(["dog"], toy_map, case_sensitive="no")


def _random_captions(lemmas, n, seed):
    rng = random.Random(seed)
    noise = ["the", "a", "of", "photo", "paid", "Dog", "dogs", "crane's", "sale", "new", "x", "é", "über"]
    seps = [" ", " ", " ", "  ", "-", ", ", ". ", "/", "'", "\t", "\n", "(", ")", "_", "!", "&", ""]

    def word():
        r = rng.random()
        if r < 0.35:
            lemma = rng.choice(lemmas)
            variant = rng.random()
            if variant < 0.15:
                return lemma.replace(" ", "-")
            if variant < 0.25:
                return lemma.upper()
            if variant < 0.35:
                return lemma.capitalize()
            return lemma
        return rng.choice(noise)

    captions = []
    for _ in range(n):
        if rng.random() < 0.02:
            captions.append(None)
            continue
        parts = [rng.choice(seps) if rng.random() < 0.3 else ""]
        for _ in range(rng.randint(0, 8)):
            parts += [word(), rng.choice(seps)]
        captions.append("".join(parts))
    return captions


@pytest.mark.parametrize("case_sensitive", [True, False])
def test_equals_brute_force_on_random_captions(ilsvrc, case_sensitive):
    lemma_to_wnid = unique_lemma_map(ilsvrc).lemma_to_wnid
    all_lemmas = ilsvrc["lemmas"].explode().to_list()
    captions = _random_captions(all_lemmas, 2000, seed=1)
    frame = match_lemmas_frame(captions, lemma_to_wnid, case_sensitive=case_sensitive)
    expected = [seed_rule(c, lemma_to_wnid, case_sensitive) for c in captions]
    assert frame["lemmas"].to_list() == [e[0] for e in expected]
    assert frame["wnids"].to_list() == [e[1] for e in expected]
    # The random captions exercise what matters: many multi-match rows and some multi-word hits.
    assert sum(len(e[0]) >= 2 for e in expected) > 100
    assert sum(any(" " in lemma for lemma in e[0]) for e in expected) > 100


# --- unique lemma dictionary -------------------------------------------------------------------


def test_unique_lemma_map_hand_made():
    synsets = pl.DataFrame(
        {
            "wnid": ["n1", "n2", "n3", "n4", "n5"],
            "lemmas": [
                ["crane"],
                ["crane", "derrick"],
                ["kit fox", "Vulpes macrotis", "Crane"],
                ["twice", "twice"],
                ["R.V.", "RV"],
            ],
        }
    )
    u = unique_lemma_map(synsets)
    assert isinstance(u, UniqueLemmas)
    assert u.lemma_to_wnid == {
        "derrick": "n2",
        "kit fox": "n3",
        "Vulpes macrotis": "n3",
        "Crane": "n3",  # case-sensitive: "Crane" is not "crane"
        "R.V.": "n5",
        "RV": "n5",
    }
    assert u.dropped_wnids == ["n1", "n4"]
    assert u.shared_lemmas == ["crane", "twice"]
    assert u.punctuated == ["R.V."]
    assert (u.n_synsets, u.n_lemmas, u.n_wnids) == (5, 6, 3)


def test_unique_lemma_map_bad_inputs():
    with pytest.raises(ValueError, match="^synsets"):
        unique_lemma_map({"wnid": ["n1"], "lemmas": [["a"]]})
    with pytest.raises(ValueError, match="^synsets"):
        unique_lemma_map(pl.DataFrame({"wnid": ["n1"]}))
    with pytest.raises(ValueError, match="^synsets"):
        unique_lemma_map(pl.DataFrame({"wnid": ["n1", "n1"], "lemmas": [["a"], ["b"]]}))
    with pytest.raises(ValueError, match="^synsets"):
        unique_lemma_map(pl.DataFrame({"wnid": ["n1", "n2"], "lemmas": [["a"], []]}))
    with pytest.raises(ValueError, match="^synsets"):
        unique_lemma_map(pl.DataFrame({"wnid": ["n1"], "lemmas": ["a"]}))
    with pytest.raises(ValueError, match="^synsets"):
        unique_lemma_map(pl.DataFrame({"wnid": ["n1", "n2"], "lemmas": [["a"], [None]]}))
    with pytest.raises(ValueError, match="^synsets.lemmas"):
        unique_lemma_map(pl.DataFrame({"wnid": ["n1", "n2"], "lemmas": [["a"], ["b "]]}))


def test_unique_lemma_map_real_ilsvrc(ilsvrc):
    u = unique_lemma_map(ilsvrc)
    # The seed's file had 999 synsets (no n03126707, crane the machine) and gave
    # 1,825 lemmas -> 995 wnids; with all 1000, "crane" is shared by the bird n02012849 and
    # the machine n03126707, so both drop out along with partridge, harp, maillot and missile.
    assert (u.n_synsets, u.n_lemmas, u.n_wnids) == (1000, 1824, 994)
    assert u.dropped_wnids == ["n01807496", "n02012849", "n03126707", "n03495258", "n03710637", "n03773504"]
    assert "crane" not in u.lemma_to_wnid
    assert len(u.punctuated) == 64  # the seed's file also has 64
    assert u.lemma_to_wnid["kit fox"] == "n02119789"
    without_crane_machine = ilsvrc.filter(pl.col("wnid") != "n03126707")
    seed_like = unique_lemma_map(without_crane_machine)
    assert (seed_like.n_lemmas, seed_like.n_wnids) == (1825, 995)
    assert seed_like.lemma_to_wnid["crane"] == "n02012849"
