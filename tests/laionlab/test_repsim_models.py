"""Tests of laionlab.repsim.models: seed 002's models catalog, the paper's seeded ≤ 10k
subsample shared by every model, and the layer a model's features are read from."""

import numpy as np
import pytest
from PIL import Image

from laionlab.io.reference import DatasetSpec
from laionlab.repsim.models import ModelSpec, extract_features, load_models, sample_indices


def catalog(tmp_path, body: str):
    path = tmp_path / "datasets.yaml"
    path.write_text(body)
    return path


def entry(**fields) -> str:
    lines = "".join(f"    {k}: {v}\n" for k, v in {"kind": "timm", "model": "resnet18", **fields}.items())
    return f"models:\n  net:\n{lines}"


# --- the catalog -----------------------------------------------------------------------------


def test_load_models_defaults_and_checkpoint_relative_to_the_catalog(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "r18.pth").write_bytes(b"")
    body = (
        "models:\n  clip:\n    kind: open_clip\n    model: ViT-B-32\n    pretrained: openai\n"
        "    objective: image-text\n    layer: penultimate\n"
        "  net:\n    kind: timm\n    model: resnet18\n    checkpoint: ckpt/r18.pth\n"
    )
    models = load_models(catalog(tmp_path, body))
    assert list(models) == ["clip", "net"]
    assert models["clip"] == ModelSpec(
        "clip", "open_clip", "ViT-B-32", pretrained="openai", objective="image-text", layer="penultimate"
    )
    net = models["net"]
    assert (net.objective, net.layer, net.seed) == ("supervised", "final", 0)
    assert net.checkpoint == str((tmp_path / "ckpt" / "r18.pth").resolve())
    assert load_models(catalog(tmp_path, "datasets: {}\n")) == {}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"kind": "hf"}, r"model 'net': kind must be one of \('open_clip', 'timm'\), got 'hf'"),
        ({"objective": "ssl"}, r"model 'net': objective must be one of .*'self-supervised'.*got 'ssl'"),
        ({"layer": "middle"}, r"model 'net': layer must be one of \('final', 'penultimate'\), got 'middle'"),
        ({"checkpoint": "missing.pth"}, r"model 'net': checkpoint does not exist: .*missing\.pth"),
        ({"extra": 1, "pretraind": "x"}, r"model 'net': unknown keys \['extra', 'pretraind'\]"),
    ],
)
def test_load_models_names_the_bad_entry(tmp_path, fields, message):
    with pytest.raises(ValueError, match=message):
        load_models(catalog(tmp_path, entry(**fields)))


def test_load_models_missing_parts(tmp_path):
    with pytest.raises(ValueError, match=r"model 'net' needs 'kind' \(open_clip or timm\) and 'model'"):
        load_models(catalog(tmp_path, "models:\n  net:\n    kind: timm\n"))
    with pytest.raises(ValueError, match="'models' must map a model name to its entry"):
        load_models(catalog(tmp_path, "models:\n  - net\n"))
    with pytest.raises(FileNotFoundError, match="catalog not found: .*nowhere.yaml"):
        load_models(tmp_path / "nowhere.yaml")


# --- the shared subsample --------------------------------------------------------------------


def test_sample_indices_capped_sorted_and_seeded():
    a = sample_indices(25_000, 10_000, seed=0)
    assert len(a) == 10_000 and len(np.unique(a)) == 10_000
    assert np.all(np.diff(a) > 0) and a[0] >= 0 and a[-1] < 25_000
    np.testing.assert_array_equal(a, sample_indices(25_000, 10_000, seed=0))  # every model: the same images
    b = sample_indices(25_000, 10_000, seed=1)
    assert np.all(np.diff(b) > 0) and not np.array_equal(a, b)
    assert len(np.intersect1d(a, b)) < 6_000  # two independent 40 % draws share ~16 % of 25k
    assert sample_indices(25_000).size == 10_000  # the paper's cap is the default
    np.testing.assert_array_equal(sample_indices(300, 10_000, seed=5), np.arange(300))  # small: all of it
    with pytest.raises(ValueError, match="n: the dataset has no samples"):
        sample_indices(0)


# --- layers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(6):
        (root / f"c{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(root / f"c{i % 2}" / f"{i}.png")
    return DatasetSpec("imgs", "image_folder", str(root), glob="*/*.png")


def test_penultimate_layer_is_the_pre_projection_width_of_a_vit(images):
    from laionlab.embed.model import ClipSpec, load_clip

    idx = np.array([0, 2, 3, 5])
    final = extract_features(ModelSpec("vit", "open_clip", "laionlab-tiny"), images, idx, device="cpu", batch_size=3)
    pen = extract_features(
        ModelSpec("vit", "open_clip", "laionlab-tiny", layer="penultimate"), images, idx, device="cpu", batch_size=3
    )
    proj = load_clip(ClipSpec("laionlab-tiny", device="cpu")).model.visual.proj.detach().numpy()
    assert proj.shape == (128, 64)  # laionlab-tiny: width 128, embed_dim 64
    assert final.shape == (4, 64) and pen.shape == (4, 128)
    np.testing.assert_allclose(pen @ proj, final, rtol=1e-4, atol=1e-5)  # the projection is all that differs


def test_penultimate_layer_refused_where_unsupported(images):
    idx = np.arange(2)
    with pytest.raises(
        ValueError,
        match=r"model 'conv': layer 'penultimate' needs an open_clip ViT with a projection \(ModifiedResNet has none\)",
    ):
        extract_features(
            ModelSpec("conv", "open_clip", "laionlab-tiny-conv", layer="penultimate"), images, idx, device="cpu"
        )
    with pytest.raises(ValueError, match=r"model 'tv': timm models read 'final'"):
        extract_features(ModelSpec("tv", "timm", "test_vit", layer="penultimate"), images, idx, device="cpu")
