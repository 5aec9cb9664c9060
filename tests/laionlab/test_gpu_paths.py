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
