"""The one embedding loop: stream images (and captions), encode them, L2-normalise.

``encode_shards`` feeds it webdataset shards (LAION parts); ``encode_dataset`` takes any
torch dataset (reference image sets).

Shards are read sample by sample (webdataset), decoded and preprocessed in DataLoader workers
and encoded in batches, so memory is bounded by a few batches whatever the size of a part.
Besides the unit-norm embeddings each batch keeps the norms of the raw projections, so the
raw (unnormalised) vectors some analyses use (seed 000 fits its photo classifier on raw
ViT-B/32 features) are ``emb * norm``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import fsspec
import fsspec.config
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader
from webdataset.tariterators import group_by_keys, tar_file_expander

from laionlab.embed.model import LoadedClip
from laionlab.progress import Progress

log = logging.getLogger(__name__)

IMAGE_KEYS = "jpg;jpeg;png;webp"


@dataclass
class EmbeddedBatch:
    """One encoded batch; arrays are float32, embeddings L2-normalised, shapes (n, d) / (n,)."""

    uid: list[str]
    image_emb: np.ndarray
    text_emb: np.ndarray | None
    image_norm: np.ndarray
    text_norm: np.ndarray | None

    @property
    def clip_score(self) -> np.ndarray:
        """Cosine similarity of each image with its own caption."""
        return np.einsum("nd,nd->n", self.image_emb, self.text_emb).astype(np.float32)

    def __len__(self) -> int:
        return len(self.uid)


@dataclass
class EncodeStats:
    samples: int = 0
    skipped: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0
    skipped_examples: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


class _SkipLogger:
    """A webdataset handler: log a sample that fails to decode and go on (counted by the caller
    as the difference between samples in and rows out)."""

    def __call__(self, exn: Exception) -> bool:
        log.warning("skipping a sample that could not be decoded: %s", exn)
        return True


class _Prepare:
    """Decoded sample → (image tensor, caption tokens, uid); a class so workers can unpickle it."""

    def __init__(self, preprocess, tokenizer):
        self.preprocess, self.tokenizer = preprocess, tokenizer

    def __call__(self, sample: tuple) -> tuple[torch.Tensor, torch.Tensor, str]:
        image, caption, meta = sample
        uid = meta.get("uid") if isinstance(meta, dict) else None
        if uid is None:
            raise KeyError("sample json has no 'uid' (download with save_additional_columns=['uid'])")
        return self.preprocess(image), self.tokenizer([caption or ""])[0], str(uid)


def _protocol(url: str) -> str:
    return fsspec.core.split_protocol(url)[0] or "file"


class _OpenShards:
    """webdataset stage: open each shard with fsspec (local paths, file://, s3://, gs://...; the
    webdataset opener only knows local files and command-line tools). ``options`` (fsspec's
    configuration of the shards' protocols in the process that built the pipeline) travel with
    it to the DataLoader workers."""

    def __init__(self, handler, options: dict[str, dict]):
        self.handler, self.options = handler, options

    def __call__(self, sources):
        for source in sources:
            url = source["url"]
            try:
                stream = fsspec.open(url, "rb", **self.options.get(_protocol(url), {})).open()
            except Exception as exn:  # noqa: BLE001 - the handler logs and skips the shard
                if self.handler(exn):
                    continue
                break
            try:
                yield {"url": url, "stream": stream}
            finally:
                stream.close()


def _shard_pipeline(shards: Sequence[str], clip: LoadedClip) -> wds.DataPipeline:
    skip = _SkipLogger()
    return wds.DataPipeline(
        wds.SimpleShardList(list(shards)),
        wds.single_node_only,
        wds.split_by_worker,
        _OpenShards(
            skip, {p: dict(fsspec.config.conf[p]) for p in {_protocol(s) for s in shards} if p in fsspec.config.conf}
        ),
        wds.pipelinefilter(tar_file_expander)(handler=skip),
        wds.pipelinefilter(group_by_keys)(handler=skip),
        wds.decode("pilrgb", handler=skip),
        wds.to_tuple(IMAGE_KEYS, "txt", "json", handler=skip),
        wds.map(_Prepare(clip.preprocess, clip.tokenizer), handler=skip),
    )


def _limit_heap_fragmentation(threshold: int = 128 * 1024) -> None:
    """Serve allocations >= ``threshold`` bytes from mmap (glibc ``M_MMAP_THRESHOLD``).

    LanceDB's merge keeps every batch of a partition until it commits; their vectors sit in
    the glibc heap between the (much larger) freed image batches, which the heap then cannot
    return: measured +10 MB per batch, 2.38 GiB peak on a 20k-image part. With large blocks
    on mmap each freed image batch goes back to the OS. Set at run time this only partly
    helps (2.23 GiB): the environment variables MALLOC_MMAP_THRESHOLD_=131072 and
    MALLOC_ARENA_MAX=2 (the Makefile sets them; set them in your launcher too) act from
    process start (1.73 GiB). A no-op where glibc is not the allocator.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, threshold)  # -3 = M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def _normalise(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = x.float()
    norm = x.norm(dim=-1, keepdim=True)
    return (x / norm.clamp_min(1e-12)).cpu().numpy(), norm.squeeze(-1).cpu().numpy()


def encode_shards(
    clip: LoadedClip,
    shards: Sequence[str | Path],
    batch_size: int = 256,
    num_workers: int = 2,
    stats: EncodeStats | None = None,
    log_every_s: float = 30.0,
    total: int | None = None,
) -> Iterator[EmbeddedBatch]:
    """Encode every (image, caption) sample of the given webdataset shards.

    shards: tar paths or fsspec URIs written by img2dataset (each sample: image, ``.txt``
    caption and a ``.json`` holding the sample's ``uid``). Batches come out in shard order when
    ``num_workers <= 1``; with more workers the order interleaves, the content does not change.
    Progress (done/``total`` samples, images/s, ETA) is logged every ``log_every_s`` seconds.
    """
    shards = [str(s) for s in shards]
    if not shards:
        raise ValueError("no shards to encode")
    missing = [s for s in shards if not Path(s).exists() and "://" not in s]
    if missing:
        raise FileNotFoundError(f"shards not found: {missing[:5]}")
    workers = max(0, min(num_workers, len(shards)))
    yield from encode_dataset(clip, _shard_pipeline(shards, clip), batch_size, workers, stats, log_every_s, total)


def make_loader(dataset, batch_size: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """The DataLoader of the embedding loop (also what the benchmarks time).

    Workers come from a forkserver, not fork: the caller holds LanceDB's async runtime (and
    possibly CUDA), which are not safe to fork. The server imports torch, webdataset and
    open_clip once and forks each worker from there; without that preload every worker imports
    them itself (seconds each, and open_clip pulls in transformers where it is installed).
    The preload only acts when the process's forkserver starts, so it is set on every call.
    """
    if num_workers:
        torch.multiprocessing.set_forkserver_preload(["torch", "webdataset", "open_clip", __name__])
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        multiprocessing_context="forkserver" if num_workers > 0 else None,
    )


def encode_dataset(
    clip: LoadedClip,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 256,
    num_workers: int = 2,
    stats: EncodeStats | None = None,
    log_every_s: float = 30.0,
    total: int | None = None,
) -> Iterator[EmbeddedBatch]:
    """The embedding loop over any dataset of ``(image_tensor, caption_tokens, uid)`` or, for
    image-only data, ``(image_tensor, uid)`` samples (text_emb/text_norm are then None).
    Progress (done/``total``, images/s, ETA) is logged every ``log_every_s`` seconds."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stats = stats if stats is not None else EncodeStats()
    _limit_heap_fragmentation()
    loader = make_loader(dataset, batch_size, num_workers, pin_memory=clip.device.type == "cuda")
    start = time.perf_counter()
    progress = Progress("embedding", total, log_every_s, log, unit="images")
    for batch in loader:
        images, tokens, uids = batch if len(batch) == 3 else (batch[0], None, batch[1])
        t0 = time.perf_counter()
        # grad mode is thread-local and the consumer (Lance) may resume this generator from
        # another thread, so the no-grad block must not span a yield
        with torch.inference_mode():
            images = images.to(clip.device, dtype=clip.dtype, non_blocking=True)
            image_emb, image_norm = _normalise(clip.model.encode_image(images))
            text_emb = text_norm = None
            if tokens is not None:
                text_emb, text_norm = _normalise(clip.model.encode_text(tokens.to(clip.device, non_blocking=True)))
        now = time.perf_counter()
        stats.encode_seconds += now - t0
        stats.samples += len(uids)
        progress.update(len(uids))
        yield EmbeddedBatch(list(uids), image_emb, text_emb, image_norm, text_norm)
    stats.seconds = time.perf_counter() - start
    progress.close()


def encode_texts(
    clip: LoadedClip, texts: Sequence[str | None], batch_size: int = 256, log_every_s: float = 30.0
) -> np.ndarray:
    """Unit-norm CLIP text embeddings ``(n, d)`` float32 of ``texts`` (captions, prompts,
    synset queries), ``batch_size`` at a time; None becomes "" (the tokenizer truncates at the
    context length, 77 tokens for OpenAI CLIP, as the seeds' tokenizers did)."""
    texts = ["" if t is None else str(t) for t in texts]
    out = np.empty((len(texts), clip.embed_dim), np.float32)
    progress = Progress("text embedding", len(texts), log_every_s, log, unit="texts", quiet_below_s=log_every_s)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = clip.tokenizer(texts[start : start + batch_size]).to(clip.device)
            out[start : start + len(tokens)] = _normalise(clip.model.encode_text(tokens))[0]
            progress.update(len(tokens))
    progress.close()
    return out
