import numpy as np

from laionlab.embed.checks import embedding_health
from laionlab.io.lance import embeddings_batch


def test_embedding_health_finds_nan_and_off_norm_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x.copy()
    y[1, 0] = np.nan
    y[3] *= 1.01
    a = embeddings_batch([str(i) for i in range(5)], "p", "m1", x, y)
    b = embeddings_batch(["5"], "p", "m2", x[:1], x[:1])
    h = embedding_health([a, b])
    assert h.rows == 6 and h.non_finite_rows == 1
    assert abs(h.max_norm_deviation - 0.01) < 1e-5
    assert h.unit_norm(0.02) and not h.unit_norm(1e-3)
    assert h.dims == {4} and h.models == {"m1": 5, "m2": 1}
