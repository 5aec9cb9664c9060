"""The one embedding loop: stream images (and captions), encode them, L2-normalise.

``encode_shards`` feeds it webdataset shards (LAION parts; the CPU side, DataLoader workers
decoding and collating, is ``laionlab.embed.pipeline``); ``encode_dataset`` takes any torch
dataset (reference image sets).

On the device side each batch is copied (pinned memory, a side CUDA stream, so the copy of
batch i+1 overlaps the forward pass of batch i), JPEGs handed over still compressed are
decoded there (nvJPEG), uint8 images are resized/normalised there, and the results come
back asynchronously: batch i's embeddings are copied to the host while batch i+1 is being
fetched and launched, and are only waited for after that.

Besides the unit-norm embeddings each batch keeps the norms of the raw projections, so the
raw (unnormalised) vectors some analyses use (seed 000 fits its photo classifier on raw
ViT-B/32 features) are ``emb * norm``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from laionlab.embed.model import LoadedClip
from laionlab.embed.pipeline import (
    DECODE_MODES,
    Collate,
    LoaderBatch,
    PrepareSample,
    make_loader,
    shard_pipeline,
)
from laionlab.embed.preprocess import TensorPreprocess, decode_jpegs, decode_rgb, device_jpeg_decoding
from laionlab.progress import Progress

log = logging.getLogger(__name__)


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


def resolve_decode(decode: str, clip: LoadedClip) -> tuple[str, TensorPreprocess | None]:
    """The decode mode to run (``cpu``, ``device`` or ``pil``; see ``laionlab.embed.pipeline``)
    and the tensor form of the model's transform.

    ``auto``: ``device`` when the model is on CUDA and a JPEG decodes there, else ``cpu``;
    ``pil`` when the model's transform has a step ``TensorPreprocess`` does not reproduce.
    An explicit ``cpu``/``device`` that cannot run is an error naming the reason.
    """
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {list(DECODE_MODES)}, got {decode!r}")
    prep = TensorPreprocess.from_transform(clip.preprocess)
    if decode == "pil":
        return "pil", prep
    if prep is None:
        if decode != "auto":
            raise ValueError(
                f"decode={decode!r}: the image transform of {clip.model_id} has a step laionlab cannot run on "
                f"tensors ({clip.preprocess}); use decode='pil'"
            )
        log.info("the image transform of %s is not translatable to tensors; decoding with PIL", clip.model_id)
        return "pil", None
    if decode == "auto":
        why_not = device_jpeg_decoding(clip.device)
        if why_not is not None and clip.device.type == "cuda":
            log.warning("JPEGs cannot be decoded on %s (%s); decoding on the CPU", clip.device, why_not)
        return ("device" if why_not is None else "cpu"), prep
    if decode == "device" and clip.device.type == "cuda":
        why_not = device_jpeg_decoding(clip.device)
        if why_not is not None:
            raise RuntimeError(f"decode='device': JPEGs cannot be decoded on {clip.device}: {why_not}")
    return decode, prep


class _DeviceSide:
    """A ``LoaderBatch`` -> model-ready images on the model's device (copies on a side CUDA
    stream; JPEGs decoded, resized and cropped there; normalised into the model's dtype)."""

    def __init__(self, clip: LoadedClip, prep: TensorPreprocess | None):
        self.clip, self.prep = clip, prep
        cuda = clip.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(clip.device) if cuda else None
        self._buffer: torch.Tensor | None = None

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised into a float32 buffer kept across batches: the previous batch's forward
        pass has consumed it (CPU) or is queued before this write on the same stream (CUDA)."""
        if self._buffer is None or self._buffer.shape != images.shape:
            self._buffer = torch.empty(images.shape, dtype=torch.float32, device=images.device)
        return self.prep.normalise(images, self.clip.dtype, out=self._buffer)

    def copy(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.copy_stream is None:
            return tensor.to(self.clip.device)
        with torch.cuda.stream(self.copy_stream):
            moved = tensor.to(self.clip.device, non_blocking=True)
        current = torch.cuda.current_stream(self.clip.device)
        current.wait_stream(self.copy_stream)
        moved.record_stream(current)
        return moved

    def images(self, batch: LoaderBatch) -> tuple[torch.Tensor, list[int]]:
        """(images in the model's dtype, batch positions of the samples that could not be decoded)."""
        images = self.copy(batch.images)
        if self.prep is None or images.dtype != torch.uint8 and not batch.jpegs:
            return images.to(self.clip.dtype), []  # the PIL path: already normalised floats
        if not batch.jpegs:
            return self.normalise(images), []
        size = self.prep.output_size
        out = torch.empty((len(batch.uids), 3, *size), dtype=torch.uint8, device=self.clip.device)
        if len(batch.slots):
            out[self.copy(batch.slots)] = images
        failed: list[int] = []
        if batch.jpegs:
            decoded, failed = self._decode(batch.jpegs, batch.jpeg_slots.tolist())
            for slots, resized in self._resize_by_shape(decoded):
                out[torch.tensor(slots, device=self.clip.device)] = resized
        return self.normalise(out), failed

    def _decode(self, jpegs: list[torch.Tensor], slots: list[int]) -> tuple[dict[int, torch.Tensor], list[int]]:
        """nvJPEG on the whole batch; when a file is bad, file by file, then PIL for those."""
        try:
            return dict(zip(slots, decode_jpegs(jpegs, self.clip.device))), []
        except Exception:  # noqa: BLE001 - retried one by one below
            pass
        decoded, failed = {}, []
        for slot, data in zip(slots, jpegs):
            try:
                decoded[slot] = decode_jpegs([data], self.clip.device)[0]
            except Exception:  # noqa: BLE001 - the CPU decoder gets its chance
                try:
                    decoded[slot] = decode_rgb(data.numpy().tobytes()).to(self.clip.device)
                except Exception as exc:  # noqa: BLE001 - logged and skipped as on the CPU path
                    log.warning("skipping a sample that could not be decoded: %s", exc)
                    failed.append(slot)
        return decoded, failed

    def _resize_by_shape(self, decoded: dict[int, torch.Tensor]):
        """One batched resize per image shape (img2dataset's border/center_crop modes make all
        of a part's images one shape)."""
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for slot, image in decoded.items():
            groups[tuple(image.shape)].append(slot)
        for slots in groups.values():
            yield slots, self.prep.resize_crop(torch.stack([decoded[s] for s in slots]))


class _Pending:
    """Embeddings of one batch on their way to the host: device -> pinned host copies are
    queued at once, waited for only in ``result`` (on the CPU they are already there)."""

    def __init__(self, uids: list[str], tensors: list[torch.Tensor | None]):
        self.uids, self.event = uids, None
        cuda = any(t is not None and t.is_cuda for t in tensors)
        self.host = [None if t is None else self._to_host(t, cuda) for t in tensors]
        if cuda:
            self.event = torch.cuda.Event()
            self.event.record()

    @staticmethod
    def _to_host(tensor: torch.Tensor, cuda: bool) -> torch.Tensor:
        if not cuda:
            return tensor
        host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        return host.copy_(tensor, non_blocking=True)

    def result(self) -> EmbeddedBatch:
        if self.event is not None:
            self.event.synchronize()
        image_emb, image_norm, text_emb, text_norm = (None if t is None else t.numpy() for t in self.host)
        return EmbeddedBatch(self.uids, image_emb, text_emb, image_norm, text_norm)


def _unit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 (unit-norm rows, raw norms), on x's device."""
    x = x.float()
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.clamp_min(1e-12), norm.squeeze(-1)


def _as_loader_batch(batch) -> LoaderBatch:
    """Batches of plain datasets (default collate: ``(images, tokens, uids)`` or ``(images, uids)``)."""
    if isinstance(batch, LoaderBatch):
        return batch
    images, tokens, uids = batch if len(batch) == 3 else (batch[0], None, batch[1])
    empty = torch.empty(0, dtype=torch.long)
    return LoaderBatch(images, torch.arange(len(uids)), [], empty, tokens, list(uids))


def encode_shards(
    clip: LoadedClip,
    shards: Sequence[str | Path],
    batch_size: int = 256,
    num_workers: int = 2,
    stats: EncodeStats | None = None,
    log_every_s: float = 30.0,
    total: int | None = None,
    decode: str = "auto",
    jpeg_draft: bool = True,
) -> Iterator[EmbeddedBatch]:
    """Encode every (image, caption) sample of the given webdataset shards.

    shards: tar paths or fsspec URIs written by img2dataset (each sample: image, ``.txt``
    caption and a ``.json`` holding the sample's ``uid``). Batches come out in shard order when
    ``num_workers <= 1``; with more workers the order interleaves, the content does not change.
    decode: ``auto`` / ``cpu`` / ``device`` / ``pil``, see ``resolve_decode``; jpeg_draft:
    decode JPEGs at least twice the needed size at reduced DCT scale (``preprocess.decode_rgb``).
    Progress (done/``total`` samples, images/s, ETA) is logged every ``log_every_s`` seconds.
    """
    shards = [str(s) for s in shards]
    if not shards:
        raise ValueError("no shards to encode")
    missing = [s for s in shards if not Path(s).exists() and "://" not in s]
    if missing:
        raise FileNotFoundError(f"shards not found: {missing[:5]}")
    mode, prep = resolve_decode(decode, clip)
    dataset = shard_pipeline(shards, PrepareSample(mode, prep, clip.preprocess, jpeg_draft))
    workers = max(0, min(num_workers, len(shards)))
    yield from encode_dataset(
        clip, dataset, batch_size, workers, stats, log_every_s, total, collate=Collate(clip.tokenizer), prep=prep
    )


def encode_dataset(
    clip: LoadedClip,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 256,
    num_workers: int = 2,
    stats: EncodeStats | None = None,
    log_every_s: float = 30.0,
    total: int | None = None,
    collate=None,
    prep: TensorPreprocess | None = None,
) -> Iterator[EmbeddedBatch]:
    """The embedding loop over any dataset of ``(image_tensor, caption_tokens, uid)`` or, for
    image-only data, ``(image_tensor, uid)`` samples (text_emb/text_norm are then None), or
    ``LoaderBatch``es from ``collate`` (uint8 images are normalised with ``prep``).
    Progress (done/``total``, images/s, ETA) is logged every ``log_every_s`` seconds."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    stats = stats if stats is not None else EncodeStats()
    _limit_heap_fragmentation()
    loader = make_loader(dataset, batch_size, num_workers, clip.device.type == "cuda", collate)
    device_side = _DeviceSide(clip, prep)
    start = time.perf_counter()
    progress = Progress("embedding", total, log_every_s, log, unit="images")
    pending: _Pending | None = None
    for raw in loader:
        batch = _as_loader_batch(raw)
        t0 = time.perf_counter()
        # grad mode is thread-local and the consumer (Lance) may resume this generator from
        # another thread, so the no-grad block must not span a yield
        with torch.inference_mode():
            launched = _launch(clip, device_side, batch)
        previous = pending.result() if pending is not None else None
        pending = launched
        stats.encode_seconds += time.perf_counter() - t0
        if previous is not None:
            stats.samples += len(previous)
            progress.update(len(previous))
            yield previous
    if pending is not None:
        t0 = time.perf_counter()
        last = pending.result()
        stats.encode_seconds += time.perf_counter() - t0
        stats.samples += len(last)
        progress.update(len(last))
        yield last
    stats.seconds = time.perf_counter() - start
    progress.close()


def _launch(clip: LoadedClip, device_side: _DeviceSide, batch: LoaderBatch) -> _Pending:
    """Queue one batch's forward passes and the copies of their results to the host."""
    images, failed = device_side.images(batch)
    uids, tokens = batch.uids, batch.tokens
    if failed:
        dropped = set(failed)
        keep = [i for i in range(len(uids)) if i not in dropped]
        images, uids = images[keep], [uids[i] for i in keep]
        tokens = tokens[keep] if tokens is not None else None
    image_emb, image_norm = _unit(clip.model.encode_image(images))
    text_emb = text_norm = None
    if tokens is not None:
        text_emb, text_norm = _unit(clip.model.encode_text(device_side.copy(tokens)))
    return _Pending(list(uids), [image_emb, image_norm, text_emb, text_norm])


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
            out[start : start + len(tokens)] = _unit(clip.model.encode_text(tokens))[0].cpu().numpy()
            progress.update(len(tokens))
    progress.close()
    return out
