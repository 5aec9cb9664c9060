import io
import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from laionlab.embed.encode import EncodeStats, encode_shards
from laionlab.embed.model import ClipSpec, load_clip
from laionlab.embed.preprocess import is_plain_jpeg


@pytest.fixture(scope="module")
def clip():
    return load_clip(ClipSpec("laionlab-tiny", device="cpu"))


def _jpeg(seed):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def write_shard(path, samples):
    with tarfile.open(path, "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def sample(i, uid=True, image=None):
    meta = {"uid": f"p:{i:09d}"} if uid else {"key": str(i)}
    return f"{i:09d}", {
        "jpg": image if image is not None else _jpeg(i),
        "txt": f"caption {i}".encode(),
        "json": json.dumps(meta).encode(),
    }


def test_embeddings_match_a_direct_forward_pass(tmp_path, clip):
    shards = [write_shard(tmp_path / f"{s}.tar", [sample(10 * s + i) for i in range(7)]) for s in range(2)]
    stats = EncodeStats()
    out = list(encode_shards(clip, shards, batch_size=4, num_workers=0, stats=stats, decode="pil"))
    uids = [u for b in out for u in b.uid]
    assert uids == [f"p:{i:09d}" for s in range(2) for i in range(10 * s, 10 * s + 7)]
    assert stats.samples == 14 and stats.images_per_second > 0
    image = np.concatenate([b.image_emb for b in out])
    text = np.concatenate([b.text_emb for b in out])
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)
    # reference: preprocess + encode each sample on its own, normalise by hand
    imgs = torch.stack([clip.preprocess(Image.open(io.BytesIO(_jpeg(i))).convert("RGB")) for i in range(7)])
    with torch.no_grad():
        ref_img = clip.model.encode_image(imgs)
        ref_txt = clip.model.encode_text(clip.tokenizer([f"caption {i}" for i in range(7)]))
    np.testing.assert_allclose(image[:7], (ref_img / ref_img.norm(dim=-1, keepdim=True)).numpy(), atol=1e-5)
    np.testing.assert_allclose(text[:7], (ref_txt / ref_txt.norm(dim=-1, keepdim=True)).numpy(), atol=1e-5)
    np.testing.assert_allclose(out[0].image_norm, ref_img[:4].norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out[0].clip_score, (out[0].image_emb * out[0].text_emb).sum(1), rtol=1e-5)


def test_workers_change_order_not_content(tmp_path, clip):
    shards = [write_shard(tmp_path / f"{s}.tar", [sample(10 * s + i) for i in range(5)]) for s in range(3)]
    serial = {u: e for b in encode_shards(clip, shards, 4, 0) for u, e in zip(b.uid, b.image_emb)}
    parallel = {u: e for b in encode_shards(clip, shards, 4, 2) for u, e in zip(b.uid, b.image_emb)}
    assert serial.keys() == parallel.keys()
    for uid in serial:
        np.testing.assert_allclose(serial[uid], parallel[uid], atol=1e-5)


def test_undecodable_sample_is_skipped_and_counted(tmp_path, clip, caplog):
    shard = write_shard(tmp_path / "0.tar", [sample(0), sample(1, image=b"garbage bytes"), sample(2)])
    out = list(encode_shards(clip, [shard], 8, 0))
    assert [u for b in out for u in b.uid] == ["p:000000000", "p:000000002"]
    assert "could not be decoded" in caplog.text


def test_missing_uid_and_missing_shard(tmp_path, clip, caplog):
    shard = write_shard(tmp_path / "0.tar", [sample(0, uid=False)])
    assert list(encode_shards(clip, [shard], 8, 0)) == []
    assert "no 'uid'" in caplog.text
    with pytest.raises(FileNotFoundError, match="nope.tar"):
        list(encode_shards(clip, [str(tmp_path / "nope.tar")], 8, 0))
    with pytest.raises(ValueError, match="no shards"):
        list(encode_shards(clip, [], 8, 0))


def test_workers_fork_from_a_server_that_has_the_heavy_imports(tmp_path, clip):
    """Without the preload every worker imports torch and open_clip itself: 37 images/s with 14
    workers on a 16-core GPU host, against 1,340 with it (benchmarks/gpu_estimate.py)."""
    import multiprocessing.forkserver as fs

    from laionlab.embed.pipeline import make_loader

    loader = make_loader([0, 1, 2, 3], batch_size=2, num_workers=2)
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    assert {"torch", "open_clip", "webdataset"} <= set(fs._forkserver._preload_modules)
    assert [b.tolist() for b in loader] == [[0, 1], [2, 3]]
    assert make_loader([0], batch_size=1, num_workers=0).multiprocessing_context is None


def _image(height, width, mode="RGB", fmt="JPEG", seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(coarse).resize((width, height), Image.BICUBIC).convert(mode).save(buf, fmt)
    return buf.getvalue()


MIXED = [
    _image(48, 40),
    _image(256, 256, seed=1),
    _image(300, 500, seed=2),
    _image(1024, 768, seed=3),  # decoded at 1/8 DCT scale (draft) on the cpu path
    _image(64, 64, fmt="PNG", seed=4),
    _image(200, 100, mode="L", seed=5),
    _image(120, 90, mode="CMYK", seed=6),  # not for nvJPEG: the worker decodes it in every mode
    _image(80, 80, fmt="WEBP", seed=7),
    _image(30, 20, seed=8),
]


@pytest.mark.parametrize("decode", ["cpu", "device", "auto"])
def test_decode_modes_embed_as_open_clips_pil_transform(tmp_path, clip, decode):
    """The uint8 paths (worker resize / device decode) against open_clip's PIL transform:
    same samples in the same order, image embeddings at cosine >= 0.999, same text."""
    shard = write_shard(tmp_path / "0.tar", [sample(i, image=data) for i, data in enumerate(MIXED)])
    reference = list(encode_shards(clip, [shard], 4, 0, decode="pil"))
    ours = list(encode_shards(clip, [shard], 4, 0, decode=decode))
    assert (
        [u for b in ours for u in b.uid]
        == [u for b in reference for u in b.uid]
        == [f"p:{i:09d}" for i in range(len(MIXED))]
    )
    cosine = np.einsum(
        "nd,nd->n", np.concatenate([b.image_emb for b in ours]), np.concatenate([b.image_emb for b in reference])
    )
    assert cosine.min() >= 0.999, cosine
    np.testing.assert_allclose(
        np.concatenate([b.text_emb for b in ours]), np.concatenate([b.text_emb for b in reference]), atol=1e-6
    )
    np.testing.assert_allclose(
        np.concatenate([b.image_norm for b in ours]), np.concatenate([b.image_norm for b in reference]), rtol=1e-2
    )


def test_device_decoding_skips_a_jpeg_that_only_its_header_makes_plain(tmp_path, clip, caplog):
    """A JPEG whose header parses but whose data is cut off goes to the device decoder, fails
    the batch there, then alone and on the CPU: skipped and logged; its batch-mates survive."""
    cut = _image(64, 64, seed=9)[:700]
    assert is_plain_jpeg(cut)
    shard = write_shard(tmp_path / "0.tar", [sample(0), sample(1, image=cut), sample(2), sample(3)])
    out = list(encode_shards(clip, [shard], 4, 0, decode="device"))
    assert [u for b in out for u in b.uid] == ["p:000000000", "p:000000002", "p:000000003"]
    assert "could not be decoded" in caplog.text
    reference = {u: e for b in encode_shards(clip, [shard], 4, 0, decode="pil") for u, e in zip(b.uid, b.text_emb)}
    for b in out:
        for uid, text in zip(b.uid, b.text_emb):
            np.testing.assert_allclose(text, reference[uid], atol=1e-6)  # rows stay with their captions


def test_collate_tokenises_each_distinct_caption_once(clip):
    from laionlab.embed.pipeline import Collate

    calls = []

    def counting(texts):
        calls.append(list(texts))
        return clip.tokenizer(texts)

    collate = Collate(counting, cache_size=3)
    image = torch.zeros((3, 8, 8), dtype=torch.uint8)
    captions = ["a dog", "a cat", "a dog", "", "a dog"]
    batch = collate([(image, c, str(i)) for i, c in enumerate(captions)])
    assert torch.equal(batch.tokens, clip.tokenizer(captions))
    assert calls == [["a dog", "a cat", ""]]
    collate([(image, c, "x") for c in ["a dog", "a bird"]])
    assert calls[-1] == ["a bird"] and len(collate.cache) == 3  # "a cat" (least recently used) went
    assert batch.uids == [str(i) for i in range(5)] and batch.images.shape == (5, 3, 8, 8)


def test_bad_decode_settings_are_named(tmp_path, clip):
    from open_clip.transform import image_transform

    from laionlab.embed.encode import resolve_decode

    shard = write_shard(tmp_path / "0.tar", [sample(0)])
    with pytest.raises(ValueError, match="decode must be one of"):
        list(encode_shards(clip, [shard], 4, 0, decode="gpu"))
    assert resolve_decode("auto", clip)[0] == "cpu"  # no CUDA here
    keep_ratio = type(clip)(**{**clip.__dict__, "preprocess": image_transform(64, False, resize_mode="longest")})
    assert resolve_decode("auto", keep_ratio)[0] == "pil"
    with pytest.raises(ValueError, match="use decode='pil'"):
        resolve_decode("cpu", keep_ratio)
