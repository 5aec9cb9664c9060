"""Exact cosine-similarity search between CLIP embedding sets (seed 004: Mayilvahanan et al.,
"Does CLIP's Generalization Performance Mainly Stem from High Train-Test Similarity?",
ICLR 2024; public code brendel-group/clip-ood, ``src/sims_and_paths/``).

The seed's scripts, as library functions:

* ``compute_sims.py`` (the top-``n_candidates`` LAION or ImageNet-train rows of every eval
  sample, one embedding chunk at a time) → :func:`topk_similar`;
* ``combine_sims.py`` (the per-chunk top-k lists merged into one overall top-k) →
  :func:`merge_topk`;
* ``compute_max_sims.py`` / ``combine_max_sims.py`` (each LAION row's highest similarity to
  any eval sample, chunks concatenated) → :func:`max_similarity`; concatenating the results
  of several chunks is ``np.concatenate``;
* the three over a table streamed part by part (one LAION part in memory at a time) →
  :func:`search_parts`.

Embeddings are L2-normalised, so cosine similarity is the inner product; nothing here
re-normalises or checks norms. Every result is exact (a brute-force matrix product, no
index): the work is cut into ``(block_rows, d) x (d, query_block_rows)`` matrix products,
NumPy sgemm on the CPU or torch on a CUDA device, so memory is bounded by the blocks, not
by the inputs, and memory-mapped ``.npy`` files are read one block at a time.

Ranking is a total order: higher similarity first, equal similarities by lower id, so
results do not depend on the block sizes or on the backend. On CUDA the products use
torch's float32 matmul (IEEE unless the process turned TF32 on), so scores can differ from
the CPU's in the last bits.

Both searches log progress lines over the corpus (rows done, rate, ETA) every
``log_every_s`` seconds through the ``laionlab`` logger; a call shorter than that logs nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from laionlab import validate
from laionlab.progress import Progress

if TYPE_CHECKING:
    import torch

__all__ = ["PartsSearch", "TopK", "max_similarity", "merge_topk", "search_parts", "topk_similar"]

log = logging.getLogger(__name__)

# topk_similar: corpus rows per block (the seed's chunks are ~1M LAION rows read in
# minibatches of n_candidates / 2) and queries per block; the (queries, corpus) similarity
# block is 256 x 65,536 float32 = 64 MiB, plus argpartition's int64 indices (128 MiB).
TOPK_BLOCK_ROWS = 65_536
TOPK_QUERY_BLOCK_ROWS = 256
# max_similarity: a 16,384 x 2,048 float32 block (128 MiB) keeps sgemm at full speed (on a
# 2-core AVX-512 host, 65,536 x 1,024 and 4,096 x 4,096 are as fast) while the row max over
# it costs a few percent.
MAX_SIM_BLOCK_ROWS = 16_384
MAX_SIM_QUERY_BLOCK_ROWS = 2_048


@dataclass(frozen=True)
class TopK:
    """The ``k`` most similar corpus rows of each query.

    Attributes:
        scores: ``(q, k)`` float32 similarities, each row in descending order.
        ids: ``(q, k)`` ids of those rows (int64 row numbers, or the caller's
            ``corpus_ids``); equal scores are ordered by lower id.
    """

    scores: np.ndarray
    ids: np.ndarray

    @property
    def k(self) -> int:
        return self.scores.shape[1]


def topk_similar(
    queries,
    corpus,
    k: int,
    corpus_ids=None,
    *,
    block_rows: int = TOPK_BLOCK_ROWS,
    query_block_rows: int = TOPK_QUERY_BLOCK_ROWS,
    device: str | torch.device = "auto",
    log_every_s: float = 30.0,
) -> TopK:
    """Each query's exact top-``k`` corpus rows by cosine similarity (``compute_sims.py``).

    Args:
        queries: ``(q, d)`` float, L2-normalised (the eval set, e.g. ImageNet-Sketch).
        corpus: ``(n, d)`` float, L2-normalised (one LAION or ImageNet-train chunk); may be a
            memory-mapped array, read ``block_rows`` rows at a time.
        k: candidates per query, ``1 <= k <= n`` (the seed: 20,000 for LAION-200M, 10,000
            for LAION-400M, 5,000 for ImageNet-train).
        corpus_ids: optional ``(n,)`` integer ids of the corpus rows (the seed's LAION
            ``image_path`` numbers, or global row numbers of a chunk); default ``0..n-1``.
        block_rows, query_block_rows: block shape of each matrix product; results do not
            depend on them.
        device: ``"auto"`` (torch on CUDA when torch sees a GPU, else NumPy), ``"cpu"``
            (NumPy), ``"cuda"``/``"cuda:N"``, or a ``torch.device`` (torch on that device).
        log_every_s: seconds between progress lines (corpus rows searched, rate, ETA).

    Returns:
        :class:`TopK` with ``(q, k)`` float32 scores in descending order and the ids of
        those rows; ties are broken by lower id. The top ``k`` rows of each query are
        found with a running merge over corpus blocks, so only ``(q, k)`` results and one
        block of similarities are held at a time.
    """
    queries = validate.matrix("queries", queries)
    corpus = validate.matrix("corpus", corpus)
    validate.same_dim("queries", queries, "corpus", corpus)
    n = corpus.shape[0]
    k = validate.int_at_least("k", k, 1)
    if k > n:
        raise ValueError(f"k: expected at most the {n} corpus rows, got {k}")
    ids = _corpus_ids(corpus_ids, n)
    block_rows = validate.int_at_least("block_rows", block_rows, 1)
    query_block_rows = validate.int_at_least("query_block_rows", query_block_rows, 1)
    backend = _backend(device)

    q = queries.shape[0]
    query_blocks = [_f32(queries[s:e]) for s, e in _spans(q, query_block_rows)]
    if backend is not None:
        query_blocks = [_to_device(b, backend) for b in query_blocks]
    best_s: list[np.ndarray | None] = [None] * len(query_blocks)
    best_i: list[np.ndarray | None] = [None] * len(query_blocks)
    progress = Progress(f"top-{k} search of {q:,} queries", n, log_every_s, log, quiet_below_s=log_every_s)
    for start, end in _spans(n, block_rows):
        block = _f32(corpus[start:end])
        block_ids = np.arange(start, end, dtype=np.int64) if ids is None else ids[start:end]
        if backend is not None:
            block = _to_device(block, backend)
        for j, qb in enumerate(query_blocks):
            if backend is None:
                s, i = _select(qb @ block.T, block_ids, k)
            else:
                s, i = _select_torch(qb @ block.T, block_ids, k)
            if best_s[j] is not None:
                s, i = _select(np.hstack([best_s[j], s]), np.hstack([best_i[j], i]), k)
            best_s[j], best_i[j] = s, i
        progress.update(end - start)
    progress.close()
    return _sorted(np.vstack(best_s), np.vstack(best_i))


def merge_topk(parts: Sequence[TopK], k: int) -> TopK:
    """The exact top-``k`` over several corpus parts from their own top-k lists
    (``combine_sims.py``: the top-k of each LAION chunk combined into the overall top-k).

    Exact whenever each part holds its own corpus part's top ``k`` (or more, or all its
    rows) with ids unique across parts; ties are broken by lower id, as in
    :func:`topk_similar`. Parts are folded in one at a time, so memory is ``(q, k)`` plus
    one part.

    Args:
        parts: :class:`TopK` results for the same ``q`` queries, e.g. ``topk_similar`` over
            each chunk with global ``corpus_ids``; parts may have different widths.
        k: candidates to keep, at most the total width of the parts.
    """
    if isinstance(parts, TopK) or not isinstance(parts, Sequence) or len(parts) == 0:
        raise ValueError(f"parts: expected a non-empty list of TopK, got {type(parts).__name__}")
    checked = []
    for j, part in enumerate(parts):
        if not isinstance(part, TopK):
            raise ValueError(f"parts[{j}]: expected a TopK, got {type(part).__name__}")
        scores, ids = np.asarray(part.scores), np.asarray(part.ids)
        if scores.ndim != 2 or scores.shape != ids.shape:
            raise ValueError(
                f"parts[{j}]: expected 2-D scores and ids of one shape (q, k), got {scores.shape} and {ids.shape}"
            )
        if scores.shape[0] != np.shape(parts[0].scores)[0]:
            raise ValueError(
                f"parts[{j}]: expected {np.shape(parts[0].scores)[0]} query rows as in parts[0], got {scores.shape[0]}"
            )
        checked.append((scores.astype(np.float32, copy=False), ids))
    k = validate.int_at_least("k", k, 1)
    width = sum(s.shape[1] for s, _ in checked)
    if k > width:
        raise ValueError(f"k: expected at most the {width} candidates the parts hold, got {k}")
    best_s, best_i = _select(*checked[0], k)
    for scores, ids in checked[1:]:
        best_s, best_i = _select(np.hstack([best_s, scores]), np.hstack([best_i, ids]), k)
    return _sorted(best_s, best_i)


@dataclass(frozen=True)
class PartsSearch:
    """Outcome of :func:`search_parts`.

    Attributes:
        top: each query's top ``k`` over all parts; ``ids`` are row numbers of the
            concatenation of the parts (:meth:`in_part` maps them back to a part's rows).
        offsets: ``(n_parts + 1,)`` int64: part ``j`` holds rows ``offsets[j]:offsets[j + 1]``.
    """

    top: TopK
    offsets: np.ndarray

    @property
    def rows(self) -> int:
        return int(self.offsets[-1])

    def in_part(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The top-k entries that fall in part ``j``: ``(query, rank, row)`` arrays, ``row``
        counted within the part (so ``part_uids[row]`` names each candidate)."""
        start, stop = int(self.offsets[j]), int(self.offsets[j + 1])
        query, rank = np.nonzero((self.top.ids >= start) & (self.top.ids < stop))
        return query, rank, self.top.ids[query, rank] - start


def search_parts(
    queries,
    parts: Iterable[tuple[Sequence, np.ndarray]],
    k: int,
    *,
    on_part: Callable[[int, Sequence, np.ndarray], None] | None = None,
    block_rows: int = TOPK_BLOCK_ROWS,
    max_sim_block_rows: int = MAX_SIM_BLOCK_ROWS,
    device: str | torch.device = "auto",
    log_every_s: float = 30.0,
) -> PartsSearch:
    """:func:`topk_similar` and :func:`max_similarity` of a corpus that comes part by part
    (seed 004's LAION chunks: ``compute_sims.py`` + ``combine_sims.py``, ``compute_max_sims.py``
    + ``combine_max_sims.py``), holding one part and a ``(q, k)`` running top-k at a time:
    no row id or max similarity of an earlier part is kept, so memory does not grow with the
    corpus (LAION-2B: 2.3 billion rows).

    Each part's top ``min(k, n_part)`` is folded into the running top-k with
    :func:`merge_topk`, so the result is the exact top-``k`` of the concatenated parts, ties
    broken by lower concatenated row number (tested against brute force).

    Args:
        queries: ``(q, d)`` float, L2-normalised (the eval set).
        parts: an iterable of ``(uids, vectors)``: ``(n_part,)`` ids and ``(n_part, d)``
            L2-normalised rows; a part with no rows adds nothing.
        k: candidates per query, ``1 <= k <=`` total rows of the parts.
        on_part: called as ``on_part(j, uids, max_sims)`` after part ``j``, with ``max_sims``
            ``(n_part,)`` float32, each row's highest similarity to any query (empty for an
            empty part): the caller writes or summarises them.
        block_rows: corpus rows per block of the top-k search (:func:`topk_similar`).
        max_sim_block_rows: corpus rows per block of :func:`max_similarity`.
        device, log_every_s: as in :func:`topk_similar`.
    """
    queries = validate.matrix("queries", queries)
    k = validate.int_at_least("k", k, 1)
    top, offsets = None, [0]
    for j, (part_uids, X) in enumerate(parts):
        if len(part_uids) != len(X):
            raise ValueError(f"parts[{j}]: {len(part_uids)} uids for {len(X)} vectors")
        if len(X) == 0:
            sims = np.empty(0, np.float32)
        else:
            X = validate.matrix(f"parts[{j}]", X)
            validate.same_dim(f"parts[{j}]", X, "queries", queries)
            ids = np.arange(offsets[-1], offsets[-1] + len(X), dtype=np.int64)
            found = topk_similar(
                queries,
                X,
                min(k, len(X)),
                corpus_ids=ids,
                block_rows=block_rows,
                device=device,
                log_every_s=log_every_s,
            )
            top = found if top is None else merge_topk([top, found], min(k, top.k + found.k))
            sims = max_similarity(X, queries, block_rows=max_sim_block_rows, device=device, log_every_s=log_every_s)
        offsets.append(offsets[-1] + len(X))
        if on_part is not None:
            on_part(j, part_uids, sims)
    if k > offsets[-1]:
        raise ValueError(f"k: expected at most the {offsets[-1]} rows of the parts, got {k}")
    return PartsSearch(top=top, offsets=np.asarray(offsets, dtype=np.int64))


def max_similarity(
    corpus,
    queries,
    *,
    block_rows: int = MAX_SIM_BLOCK_ROWS,
    query_block_rows: int = MAX_SIM_QUERY_BLOCK_ROWS,
    device: str | torch.device = "auto",
    log_every_s: float = 30.0,
) -> np.ndarray:
    """Each corpus row's highest cosine similarity to any query (``compute_max_sims.py``).

    Args:
        corpus: ``(n, d)`` float, L2-normalised (a LAION chunk); may be memory-mapped.
        queries: ``(q, d)`` float, L2-normalised (the eval set); may be memory-mapped too.
        block_rows, query_block_rows: block shape of each ``corpus_block @ query_block.T``
            product; the result does not depend on them.
        device: as in :func:`topk_similar`.
        log_every_s: seconds between progress lines (corpus rows done, rate, ETA).

    Returns:
        ``(n,)`` float32, ``max_j <corpus[i], queries[j]>``. The max sims of several chunks
        are combined by concatenation (``combine_max_sims.py``).
    """
    return _max_similarity(
        corpus,
        queries,
        "corpus",
        "queries",
        block_rows=block_rows,
        query_block_rows=query_block_rows,
        device=device,
        log_every_s=log_every_s,
    )


def _max_similarity(
    corpus,
    queries,
    corpus_name: str,
    queries_name: str,
    *,
    block_rows: int,
    query_block_rows: int,
    device: str | torch.device,
    log_every_s: float = 30.0,
) -> np.ndarray:
    """:func:`max_similarity`, with the names its errors use."""
    corpus = validate.matrix(corpus_name, corpus)
    queries = validate.matrix(queries_name, queries)
    validate.same_dim(queries_name, queries, corpus_name, corpus)
    block_rows = validate.int_at_least("block_rows", block_rows, 1)
    query_block_rows = validate.int_at_least("query_block_rows", query_block_rows, 1)
    backend = _backend(device)
    n, q = corpus.shape[0], queries.shape[0]
    out = np.empty(n, dtype=np.float32)
    query_spans = list(_spans(q, query_block_rows))
    progress = Progress(f"max similarity to {q:,} queries", n, log_every_s, log, quiet_below_s=log_every_s)

    if backend is None:
        # One buffer for every product (matmul into it, row max out of it), so the loop
        # allocates nothing of block size.
        buf = np.empty(min(n, block_rows) * min(q, query_block_rows), dtype=np.float32)
        row_max = np.empty(min(n, block_rows), dtype=np.float32)
        for start, end in _spans(n, block_rows):
            block = _f32(corpus[start:end])
            best = out[start:end]
            for j, (qs, qe) in enumerate(query_spans):
                sims = buf[: (end - start) * (qe - qs)].reshape(end - start, qe - qs)
                np.matmul(block, _f32(queries[qs:qe]).T, out=sims)
                if j == 0:
                    sims.max(axis=1, out=best)
                else:
                    m = row_max[: end - start]
                    sims.max(axis=1, out=m)
                    np.maximum(best, m, out=best)
            progress.update(end - start)
        progress.close()
        return out

    import torch

    with torch.inference_mode():
        query_blocks = None
        if len(query_spans) == 1 or n <= block_rows:
            # Queries are read once either way: move them once.
            query_blocks = [_to_device(_f32(queries[s:e]), backend) for s, e in query_spans]
        for start, end in _spans(n, block_rows):
            block = _to_device(_f32(corpus[start:end]), backend)
            best = None
            for j, (qs, qe) in enumerate(query_spans):
                qb = query_blocks[j] if query_blocks else _to_device(_f32(queries[qs:qe]), backend)
                m = (block @ qb.T).amax(dim=1)
                best = m if best is None else torch.maximum(best, m)
            out[start:end] = best.cpu().numpy()
            progress.update(end - start)
    progress.close()
    return out


# --- helpers ------------------------------------------------------------------------------


def _spans(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _f32(a: np.ndarray) -> np.ndarray:
    """C-contiguous float32 (no copy when it already is); reads a memory-mapped block."""
    return np.ascontiguousarray(a, dtype=np.float32)


def _corpus_ids(corpus_ids, n: int) -> np.ndarray | None:
    if corpus_ids is None:
        return None
    ids = np.asarray(corpus_ids)
    if ids.ndim != 1 or ids.shape[0] != n or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(
            f"corpus_ids: expected a 1-D integer array of the {n} corpus rows' ids, got "
            f"shape {ids.shape} dtype {ids.dtype}"
        )
    return ids


def _backend(device) -> torch.device | None:
    """``None`` for NumPy, else the torch device to compute on."""
    if isinstance(device, str):
        if device == "cpu" or (device == "auto" and not _may_have_gpu()):
            return None
        from laionlab.embed.model import resolve_device

        resolved = resolve_device(device)
        return None if resolved.type == "cpu" else resolved
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(device, torch.device):
        return device
    raise ValueError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}")


def _may_have_gpu() -> bool:
    """False when torch cannot see a GPU for sure, decided without importing torch (whose
    import alone adds ~0.5 GiB of RSS): torch is not loaded and no NVIDIA or ROCm driver
    device exists."""
    if "torch" in sys.modules:
        return True
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd"))


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    import torch

    return torch.from_numpy(a).to(device)


def _select(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top ``k`` under (higher score, then lower id), in no particular order.

    ``scores``: ``(m, c)``; ``ids``: ``(m, c)``, or ``(c,)`` shared by all rows. A plain
    argpartition may cut a run of equal scores anywhere; rows where that run crosses the
    k-th place (more entries ``>=`` the k-th score than ``k``) are redone by sorting the
    entries ``>=`` that score by (score, id).
    """
    m, c = scores.shape
    if c <= k:
        full = ids if ids.ndim == 2 else np.broadcast_to(ids, (m, c))
        return scores, np.array(full)
    part = np.argpartition(scores, c - k, axis=1)[:, c - k :]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    ties = np.flatnonzero(np.count_nonzero(scores >= kth[:, None], axis=1) > k)
    for r in ties:
        row_ids = ids[r] if ids.ndim == 2 else ids
        cand = np.flatnonzero(scores[r] >= kth[r])
        part[r] = cand[np.lexsort((row_ids[cand], -scores[r, cand]))[:k]]
    top_ids = np.take_along_axis(ids, part, axis=1) if ids.ndim == 2 else ids[part]
    return np.take_along_axis(scores, part, axis=1), top_ids


def _select_torch(sims: torch.Tensor, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_select` for a block of similarities on a torch device; tie rows go to NumPy."""
    import torch

    m, c = sims.shape
    if c <= k:
        return _select(sims.cpu().numpy(), ids, k)
    vals, part = torch.topk(sims, k, dim=1, sorted=False)
    kth = vals.amin(dim=1, keepdim=True)
    tie_rows = torch.nonzero((sims >= kth).sum(dim=1) > k).flatten()
    vals, part = vals.cpu().numpy(), part.cpu().numpy()
    top_ids = ids[part]
    if tie_rows.numel():
        rows = tie_rows.cpu().numpy()
        vals[rows], top_ids[rows] = _select(sims[tie_rows].cpu().numpy(), ids, k)
    return vals, top_ids


def _sorted(scores: np.ndarray, ids: np.ndarray) -> TopK:
    order = np.lexsort((ids, -scores), axis=1)
    return TopK(
        scores=np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False),
        ids=np.take_along_axis(ids, order, axis=1),
    )
