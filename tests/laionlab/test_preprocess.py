"""laionlab.embed.preprocess: open_clip's PIL transform on uint8 tensors, against the transform itself."""

import io

import numpy as np
import pytest
import torch
from open_clip.transform import image_transform
from PIL import Image

from laionlab.embed.preprocess import TensorPreprocess, decode_jpegs, decode_rgb, is_plain_jpeg

RNG = np.random.default_rng(0)


def _photo(height, width, mode="RGB") -> Image.Image:
    """Smooth colour fields plus noise: JPEG-like content at any size."""
    coarse = RNG.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noisy = np.clip(base + RNG.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy).convert(mode)


def _encode(image: Image.Image, fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _chw(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)


VIT = image_transform(224, is_train=False)  # ViT-B-32's: shorter side bicubic, centre crop
SIGLIP = image_transform(224, is_train=False, resize_mode="squash", interpolation="bilinear")


def test_reads_open_clip_transforms():
    vit = TensorPreprocess.from_transform(VIT)
    assert (vit.resize, vit.crop, vit.interpolation) == (224, (224, 224), "bicubic")
    assert vit.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    squash = TensorPreprocess.from_transform(SIGLIP)
    assert (squash.resize, squash.crop, squash.interpolation) == ((224, 224), None, "bilinear")
    assert squash.output_size == (224, 224)
    assert TensorPreprocess.from_transform(image_transform(224, is_train=False, resize_mode="longest")) is None
    assert TensorPreprocess.from_transform(image_transform(224, is_train=True)) is None
    assert TensorPreprocess.from_transform(lambda image: image) is None


@pytest.mark.parametrize("transform", [VIT, SIGLIP], ids=["shortest-bicubic", "squash-bilinear"])
@pytest.mark.parametrize("size", [(256, 256), (300, 500), (777, 333), (64, 64), (224, 230), (31, 17)])
def test_matches_the_pil_transform(transform, size):
    image = _photo(*size)
    prep = TensorPreprocess.from_transform(transform)
    ours = prep.normalise(prep.resize_crop(_chw(image))[None], torch.float32)[0]
    theirs = transform(image)
    assert ours.shape == theirs.shape == (3, 224, 224)
    # PIL rounds its first (horizontal) pass to uint8, torch does not: off by a grey level or
    # two here and there (more of them the stronger the downscale), never more
    level = (ours - theirs).abs() * torch.tensor(prep.std).view(3, 1, 1) * 255
    assert level.max() <= 2.01 and level.mean() < 0.3


def test_float_path_as_on_cuda_and_batches_match_single_images():
    prep = TensorPreprocess.from_transform(VIT)
    images = torch.stack([_chw(_photo(256, 320)) for _ in range(3)])
    uint8 = prep.resize_crop(images)
    floats = prep.resize_crop(images.float())  # what a CUDA device runs (no uint8 antialias kernel there)
    assert uint8.dtype == floats.dtype == torch.uint8 and uint8.shape == (3, 3, 224, 224)
    difference = (uint8.int() - floats.int()).abs()
    assert difference.max() <= 3 and difference.float().mean() < 0.3
    assert torch.equal(uint8[1], prep.resize_crop(images[1]))


def test_centre_crop_pads_small_images_as_torchvision():
    from torchvision.transforms import functional as TF

    prep = TensorPreprocess((20, 30), (32, 25), "bicubic", (0.5,) * 3, (0.5,) * 3)
    image = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)
    assert torch.equal(prep.resize_crop(image), TF.center_crop(image, [32, 25]))


def test_decode_rgb_and_draft():
    prep = TensorPreprocess.from_transform(VIT)
    big = _photo(1200, 900)
    data = _encode(big)
    full = decode_rgb(data, prep, draft=False)
    drafted = decode_rgb(data, prep, draft=True)
    assert full.shape == drafted.shape == (3, 224, 224)
    reference = _chw(VIT.transforms[1](VIT.transforms[0](Image.open(io.BytesIO(data)))))
    assert (full.int() - reference.int()).abs().max() <= 2
    assert (drafted.float() - reference.float()).abs().mean() < 3  # DCT scaling, then bicubic: close, not equal
    png = _photo(40, 50)
    assert torch.equal(decode_rgb(_encode(png, "PNG")), _chw(png))
    grey = _photo(40, 50, "L")
    assert torch.equal(decode_rgb(_encode(grey, "PNG")), _chw(grey))
    with pytest.raises(Exception):
        decode_rgb(b"not an image")


def test_which_files_go_to_the_device_decoder():
    assert is_plain_jpeg(_encode(_photo(32, 32)))
    assert is_plain_jpeg(_encode(_photo(32, 32, "L")))
    assert not is_plain_jpeg(_encode(_photo(32, 32, "CMYK")))
    assert not is_plain_jpeg(_encode(_photo(32, 32), "PNG"))
    assert not is_plain_jpeg(b"garbage")


def test_batched_jpeg_decoding_equals_pil():
    images = [_photo(48, 40), _photo(33, 70, "L")]
    data = [torch.frombuffer(bytearray(_encode(im)), dtype=torch.uint8) for im in images]
    decoded = decode_jpegs(data, torch.device("cpu"))
    for tensor, blob in zip(decoded, data):
        assert torch.equal(tensor, _chw(Image.open(io.BytesIO(blob.numpy().tobytes()))))
    with pytest.raises(Exception):
        decode_jpegs([data[0], torch.frombuffer(bytearray(b"\xff\xd8broken"), dtype=torch.uint8)], torch.device("cpu"))


def test_torchvision_decodes_where_torchcodec_is_missing(monkeypatch):
    import sys

    from laionlab.embed import preprocess

    data = [torch.frombuffer(bytearray(_encode(_photo(40, 30))), dtype=torch.uint8)]
    with_torchcodec = decode_jpegs(data, torch.device("cpu"))
    preprocess._jpeg_decoder.cache_clear()
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import raises ImportError
    try:
        assert torch.equal(decode_jpegs(data, torch.device("cpu"))[0], with_torchcodec[0])
    finally:
        preprocess._jpeg_decoder.cache_clear()
