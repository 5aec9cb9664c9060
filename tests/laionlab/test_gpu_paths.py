"""The device paths, on a GPU host only (marker ``gpu``: skipped where torch sees no CUDA device,
as on CI; `pytest -m gpu` runs just these on a lent GPU). Each compares the GPU result with the
CPU path on the same input."""

import numpy as np
import pytest

from tests.laionlab.test_encode import sample, write_shard

pytestmark = pytest.mark.gpu


def test_clip_on_cuda_embeds_as_on_cpu(tmp_path):
    from laionlab.embed.encode import encode_shards
    from laionlab.embed.model import ClipSpec, load_clip

    shards = [write_shard(tmp_path / "0.tar", [sample(i) for i in range(12)])]
    cpu = list(encode_shards(load_clip(ClipSpec("laionlab-tiny", device="cpu")), shards, batch_size=4, num_workers=0))
    gpu = list(encode_shards(load_clip(ClipSpec("laionlab-tiny", device="cuda")), shards, batch_size=4, num_workers=0))
    assert [u for b in gpu for u in b.uid] == [u for b in cpu for u in b.uid]
    for column in ("image_emb", "text_emb"):
        np.testing.assert_allclose(
            np.concatenate([getattr(b, column) for b in gpu]),
            np.concatenate([getattr(b, column) for b in cpu]),
            atol=2e-3,
        )


def test_kmeans_on_the_gpu_finds_the_cpu_clusters():
    faiss = pytest.importorskip("faiss")
    if not (hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0):
        pytest.skip("faiss has no GPU support here (install the gpu extra)")
    from laionlab.cluster import kmeans

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16)).astype(np.float32) * 10
    X = (centres[rng.integers(0, 8, 4000)] + rng.normal(size=(4000, 16))).astype(np.float32)
    cpu, gpu = kmeans(X, 8, seed=0, gpu=False), kmeans(X, 8, seed=0, gpu=True)
    assert sorted(cpu.sizes.tolist()) == sorted(gpu.sizes.tolist())
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)


def test_jpegs_decoded_on_the_gpu_embed_as_the_cpu_path(tmp_path):
    """nvJPEG + float resize on CUDA against the worker's uint8 path and open_clip's PIL path."""
    from laionlab.embed.encode import encode_shards
    from laionlab.embed.model import ClipSpec, load_clip
    from tests.laionlab.test_encode import MIXED

    shard = write_shard(tmp_path / "0.tar", [sample(i, image=data) for i, data in enumerate(MIXED)])
    clip = load_clip(ClipSpec("laionlab-tiny", device="cuda"))
    runs = {mode: list(encode_shards(clip, [shard], 4, 0, decode=mode)) for mode in ("device", "cpu", "pil")}
    reference = np.concatenate([b.image_emb for b in runs["pil"]])
    for mode in ("device", "cpu"):
        assert [u for b in runs[mode] for u in b.uid] == [u for b in runs["pil"] for u in b.uid]
        cosine = np.einsum("nd,nd->n", np.concatenate([b.image_emb for b in runs[mode]]), reference)
        assert cosine.min() >= 0.999, (mode, cosine)


def test_torch_kmeans_on_cuda_matches_faiss_cpu():
    from laionlab.cluster import kmeans

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 32)).astype(np.float32)
    cpu = kmeans(X, 64, seed=0, gpu=False)
    cuda = kmeans(X, 64, seed=0, torch_device="cuda")
    assert cuda.inertia == pytest.approx(cpu.inertia, rel=0.01)
