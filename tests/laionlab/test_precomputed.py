import numpy as np
import polars as pl
import pytest

from laionlab.io.precomputed import find_precomputed, iter_precomputed, part_index


def layout(root, index, n, dim=6, text=True, meta_rows=None):
    rng = np.random.default_rng(index)
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    img = rng.normal(size=(n, dim)).astype(np.float16)
    np.save(root / "img_emb" / f"img_emb_{index:04d}.npy", img)
    txt = rng.normal(size=(n, dim)).astype(np.float16)
    if text:
        np.save(root / "text_emb" / f"text_emb_{index:04d}.npy", txt)
    pl.DataFrame({"url": [f"u{i}" for i in range(meta_rows or n)], "caption": ["c"] * (meta_rows or n)}).write_parquet(
        root / "metadata" / f"metadata_{index:04d}.parquet"
    )
    return img.astype(np.float32), txt.astype(np.float32)


def test_part_index():
    assert part_index("part-00017") == 17 and part_index("metadata_0003") == 3
    with pytest.raises(ValueError, match="trailing number"):
        part_index("abc")


def test_import_streams_normalised_rows_with_uids(tmp_path):
    img, txt = layout(tmp_path, 2, 10)
    files = find_precomputed(tmp_path, "part-00002")
    batches = list(iter_precomputed(files, "part-00002", "ViT-L-14/openai", batch_rows=4))
    assert [b.num_rows for b in batches] == [4, 4, 2]
    uids = [u for b in batches for u in b.column("uid").to_pylist()]
    assert uids == [f"part-00002:{i:09d}" for i in range(10)]
    emb = np.concatenate([b.column("image_emb").values.to_numpy().reshape(-1, 6) for b in batches])
    np.testing.assert_allclose(emb, img / np.linalg.norm(img, axis=1, keepdims=True), rtol=1e-5)
    score = np.concatenate([b.column("clip_score").to_numpy() for b in batches])
    expected = (img * txt).sum(1) / np.linalg.norm(img, axis=1) / np.linalg.norm(txt, axis=1)
    np.testing.assert_allclose(score, expected, rtol=1e-4)


def test_missing_and_misaligned_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="img_emb_0005.npy"):
        find_precomputed(tmp_path, "part-5")
    layout(tmp_path, 1, 10, meta_rows=9)
    with pytest.raises(ValueError, match="10 rows but .*metadata_0001.parquet has 9"):
        find_precomputed(tmp_path, "part-1")
    layout(tmp_path, 3, 4, text=False)
    with pytest.raises(FileNotFoundError, match="text embeddings missing"):
        list(iter_precomputed(find_precomputed(tmp_path, "part-3"), "part-3", "m"))


def test_import_reads_an_object_store_root_in_row_blocks(tmp_path):
    """The same layout on fsspec's memory filesystem: files are found by listing, the arrays
    read by row ranges (NpyRows), and the batches equal the local import's."""
    import fsspec

    from laionlab.io.files import NpyRows

    layout(tmp_path, 4, 9)
    root = "memory://laionlab-precomputed/emb"
    fs = fsspec.filesystem("memory")
    for sub in ("img_emb", "text_emb", "metadata"):
        for p in (tmp_path / sub).iterdir():
            fs.pipe(f"{root}/{sub}/{p.name}", p.read_bytes())
    local, remote = find_precomputed(tmp_path, "part-00004"), find_precomputed(root, "part-00004")
    assert remote.image == f"{root}/img_emb/img_emb_0004.npy" and remote.rows == 9
    from laionlab.io.files import load_npy

    assert isinstance(load_npy(remote.image), NpyRows)
    a = list(iter_precomputed(local, "part-00004", "m", batch_rows=4))
    b = list(iter_precomputed(remote, "part-00004", "m", batch_rows=4))
    assert [x.equals(y) for x, y in zip(a, b)] == [True, True, True]
