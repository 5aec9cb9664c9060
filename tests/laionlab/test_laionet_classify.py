"""Tests of laionlab.laionet.classify: seed 001's (LAIONet) classifiers — CLIP zero-shot over
ILSVRC wnids, timm ImageNet-1k models from local checkpoints — and its verify_image filter."""

import numpy as np
import pytest
import torch
from PIL import Image

from laionlab.embed.model import ClipSpec, load_clip
from laionlab.io.imagenet import ilsvrc_synsets
from laionlab.laionet.classify import (
    TimmClassifier,
    ilsvrc_wnids,
    image_problem,
    load_timm_classifier,
    name_def_queries,
    timm_predict,
    usable_image,
    zero_shot_predict,
    zero_shot_weights,
)

TENCH, GOLDFISH, SHARK, TABBY, TOILET_TISSUE = "n01440764", "n01443537", "n01484850", "n02123045", "n15075141"
TIMM_ARCH = "test_convnext"  # timm's 0.3M-parameter test ConvNeXt, 160x160 input


@pytest.fixture(scope="module")
def clip():
    return load_clip(ClipSpec("laionlab-tiny", device="cpu"))


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (64, 64), (17, 90), (120, 80), (33, 33), (200, 50), (50, 50)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for w, h in sizes]


# --- class order ---------------------------------------------------------------------------


def test_open_clip_classnames_follow_ilsvrc_order():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    synsets = ilsvrc_synsets()
    assert ilsvrc_wnids() == synsets["wnid"].to_list()
    assert len(IMAGENET_CLASSNAMES) == 1000
    assert ilsvrc_wnids()[0] == TENCH and IMAGENET_CLASSNAMES[0] == "tench"
    assert ilsvrc_wnids()[1] == GOLDFISH and IMAGENET_CLASSNAMES[1] == "goldfish"
    assert ilsvrc_wnids()[999] == TOILET_TISSUE and IMAGENET_CLASSNAMES[999] == "toilet paper"

    # open_clip's names are cleaned-up class names, mostly one of the synset's lemmas: in
    # place for >800 classes, while a shift by one class matches (almost) none
    lemmas = [[lemma.lower() for lemma in ls] for ls in synsets["lemmas"].to_list()]
    names = [c.lower() for c in IMAGENET_CLASSNAMES]
    in_place = sum(n in ls for n, ls in zip(names, lemmas))
    shifted = sum(n in ls for n, ls in zip(names[:-1], lemmas[1:]))
    assert in_place > 800 and shifted < 5


def test_name_def_queries():
    q = name_def_queries([TENCH, TABBY])
    assert q[0].startswith("tench which is ") and q[1].startswith("tabby which is ")
    with pytest.raises(ValueError, match="n99999999"):
        name_def_queries(["n99999999"])


# --- CLIP zero-shot ------------------------------------------------------------------------


def test_zero_shot_weights_are_mean_of_normalised_prompts(clip):
    wnids = [TENCH, GOLDFISH, SHARK]
    templates = ["a photo of a {}.", "a drawing of the {}."]
    w = zero_shot_weights(clip, wnids, templates=templates, batch_size=2)
    assert w.shape == (3, clip.embed_dim) and w.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-5)

    with torch.no_grad():
        t = clip.model.encode_text(clip.tokenizer([t.format("goldfish") for t in templates]))
    t = torch.nn.functional.normalize(t.float(), dim=-1).mean(0)
    np.testing.assert_allclose(w[1], (t / t.norm()).numpy(), atol=1e-5)

    # default names are open_clip's IMAGENET_CLASSNAMES at the wnids' class indices
    names = ["tench", "goldfish", "great white shark"]
    named = zero_shot_weights(clip, wnids, classnames=names, templates=templates)
    np.testing.assert_allclose(w, named, atol=1e-6)


def test_zero_shot_default_templates(clip):
    w = zero_shot_weights(clip, [TENCH, TABBY])  # the 80 OpenAI templates
    assert w.shape == (2, clip.embed_dim)
    assert not np.allclose(w, zero_shot_weights(clip, [TENCH, TABBY], templates=["a photo of a {}."]))


def test_zero_shot_predict_constructed_embeddings(clip):
    wnids = [TENCH, GOLDFISH, SHARK, TABBY]
    w = zero_shot_weights(clip, wnids, templates=["a photo of a {}."])
    order = [2, 0, 3, 1, 2]
    top = zero_shot_predict(w[order], w, wnids, k=3)
    assert top.shape == (5, 3)
    assert top[:, 0].tolist() == [wnids[i] for i in order]
    assert all(len(set(row)) == 3 for row in top)


def test_zero_shot_predict_ranks_by_cosine():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(6, 8)).astype(np.float32)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    emb = rng.normal(size=(20, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = [f"c{i}" for i in range(6)]
    top = zero_shot_predict(emb, w, labels, k=6, device="cpu")
    expected = np.asarray(labels)[np.argsort(-(emb @ w.T), axis=1)]
    assert (top == expected).all()
    # a tie goes to the lower class row
    tied = np.vstack([w[:1], w[:1]])
    assert zero_shot_predict(w[:1], tied, ["b", "a"], k=2).tolist() == [["b", "a"]]


def test_zero_shot_bad_inputs(clip):
    with pytest.raises(ValueError, match="n00000000"):
        zero_shot_weights(clip, [TENCH, "n00000000"], templates=["{}"])
    with pytest.raises(ValueError, match="repeated"):
        zero_shot_weights(clip, [TENCH, TENCH], templates=["{}"])
    with pytest.raises(ValueError, match="classnames"):
        zero_shot_weights(clip, [TENCH, GOLDFISH], classnames=["tench"], templates=["{}"])
    with pytest.raises(ValueError, match="templates"):
        zero_shot_weights(clip, [TENCH], templates=["no placeholder"])
    w = np.eye(3, 4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"d=4.*d=5"):
        zero_shot_predict(np.ones((2, 5), np.float32), w, ["a", "b", "c"])
    with pytest.raises(ValueError, match="one wnid per row"):
        zero_shot_predict(np.ones((2, 4), np.float32), w, ["a", "b"])
    with pytest.raises(ValueError, match="k: expected at most the 3"):
        zero_shot_predict(np.ones((2, 4), np.float32), w, ["a", "b", "c"], k=4)


# --- timm classifiers ----------------------------------------------------------------------


def _reference_top5(model, images):
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=model), is_training=False)
    with torch.no_grad():
        logits = model(torch.stack([transform(im) for im in images]))
    return np.asarray(ilsvrc_wnids())[np.argsort(-logits.numpy(), axis=1, kind="stable")[:, :5]]


def test_timm_checkpoint_round_trip(tmp_path, images):
    import timm

    torch.manual_seed(1)
    model = timm.create_model(TIMM_ARCH, pretrained=False, num_classes=1000).eval()
    ckpt = tmp_path / "convnext.pth"
    torch.save(model.state_dict(), ckpt)

    clf = load_timm_classifier(TIMM_ARCH, ckpt)
    assert isinstance(clf, TimmClassifier)
    assert clf.model_id == f"timm:{TIMM_ARCH}/ckpt:convnext.pth"
    assert clf.data_config["input_size"] == (3, 160, 160)
    top = timm_predict(clf, iter(images), k=5, batch_size=3)  # 3 + 3 + 1
    assert top.shape == (len(images), 5)
    assert (top == _reference_top5(model, images)).all()
    assert len(set(top[:, 0])) > 1  # the random head does tell the images apart
    assert timm_predict(clf, [], k=2).shape == (0, 2)

    # a random-weight model under another seed predicts differently
    other = load_timm_classifier(TIMM_ARCH, None, seed=7)
    assert other.model_id == f"timm:{TIMM_ARCH}/random-seed7"
    assert (timm_predict(other, images, k=1) != top[:, :1]).any()


def test_timm_predict_converts_non_rgb(tmp_path, images):
    clf = load_timm_classifier(TIMM_ARCH, None, seed=0)
    gray = [im.convert("L") for im in images[:2]]
    assert (timm_predict(clf, gray, k=3) == timm_predict(clf, [g.convert("RGB") for g in gray], k=3)).all()
    with pytest.raises(ValueError, match=r"images\[0\]"):
        timm_predict(clf, [np.zeros((4, 4, 3))])
    with pytest.raises(ValueError, match="k"):
        timm_predict(clf, images, k=1001)


def test_timm_bad_inputs(tmp_path):
    import timm

    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_timm_classifier(TIMM_ARCH, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"unknown timm model 'resnet_5O'.*resnet50"):
        load_timm_classifier("resnet_5O", None)
    with pytest.raises(ValueError, match="not both"):
        load_timm_classifier(TIMM_ARCH, tmp_path / "x.pth", pretrained=True)

    ten_class = tmp_path / "ten.pth"
    torch.save(timm.create_model(TIMM_ARCH, num_classes=10).state_dict(), ten_class)
    with pytest.raises(ValueError, match="1000-class head"):
        load_timm_classifier(TIMM_ARCH, ten_class)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth could not be loaded"):
        load_timm_classifier(TIMM_ARCH, junk)


def test_timm_pretrained_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf

    # offline with an empty cache, whatever the environment of the test run
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RuntimeError, match=r"pretrained weights for timm model 'test_vit'.*HF_HUB_OFFLINE=1"):
        load_timm_classifier("test_vit", None, pretrained=True)


# --- image filter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, size, problem",
    [
        ("RGB", (20, 20), None),
        ("RGB", (10, 10), None),  # exactly 100 px is kept
        ("L", (20, 20), "mode L is not RGB"),
        ("RGBA", (20, 20), "mode RGBA is not RGB"),
        ("P", (20, 20), "mode P is not RGB"),
        ("RGB", (9, 10), "9x10 = 90 px is under 100 px"),
        ("RGB", (1000, 0), "1000x0 = 0 px is under 100 px"),
    ],
)
def test_usable_image(mode, size, problem):
    img = Image.new(mode, size)
    assert image_problem(img) == problem
    assert usable_image(img) is (problem is None)


def test_usable_image_options():
    assert usable_image(Image.new("L", (20, 20)), require_rgb=False)
    assert not usable_image(Image.new("RGB", (20, 20)), min_area=401)
    assert usable_image(Image.new("RGB", (9, 10)), min_area=0)
    with pytest.raises(ValueError, match="img"):
        image_problem(np.zeros((20, 20, 3)))
