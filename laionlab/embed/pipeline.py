"""The CPU side of the embedding loop: webdataset shards -> DataLoader batches.

Shards are read sample by sample (webdataset) in DataLoader workers, so memory is bounded
by a few batches whatever the size of a part. What a worker does to each image depends on
the decode mode (``encode_shards(decode=...)``):

- ``cpu``: PIL decodes (JPEGs much larger than needed at reduced DCT scale), torch's uint8
  antialiased resize and the centre crop give a uint8 image at the model's size
  (``laionlab.embed.preprocess``); normalising happens on the model's device.
- ``device``: a plain JPEG is handed over still compressed (the device decodes it, nvJPEG
  on CUDA); other files (PNG, WebP, CMYK JPEG) are prepared as in ``cpu``.
- ``pil``: open_clip's own PIL transform (float32 tensors): the reference the other two
  are tested against, and the path for transforms ``TensorPreprocess`` does not translate.

Workers also collate: a batch's captions are tokenised in one call with a per-worker cache
of recent captions (LAION repeats many captions verbatim), and a batch crosses to the main
process as one ``LoaderBatch`` (150 KB an image as uint8 at 224 px, 600 KB as float32).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import OrderedDict
from typing import NamedTuple, Sequence

import fsspec
import fsspec.config
import torch
import webdataset as wds
from PIL import Image
from torch.utils.data import DataLoader
from webdataset.tariterators import group_by_keys

from laionlab.embed.preprocess import TensorPreprocess, decode_rgb, is_plain_jpeg
from laionlab.io.tar_stream import iter_files

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
DECODE_MODES = ("auto", "cpu", "device", "pil")
_WDS_META = re.compile(r"__[^/]*__($|/)")


class LoaderBatch(NamedTuple):
    """One collated batch. ``images[i]`` is sample ``slots[i]`` of the batch (uint8 CHW at the
    model's size, or float32 on the ``pil`` path); ``jpegs[j]`` (encoded files, 1-D uint8) is
    sample ``jpeg_slots[j]``; ``tokens`` and ``uids`` are in batch order."""

    images: torch.Tensor
    slots: torch.Tensor
    jpegs: list[torch.Tensor]
    jpeg_slots: torch.Tensor
    tokens: torch.Tensor | None
    uids: list[str]


class SkipLogger:
    """A webdataset handler: log a sample that fails to decode and go on (counted by the caller
    as the difference between samples in and rows out)."""

    def __call__(self, exn: Exception) -> bool:
        log.warning("skipping a sample that could not be decoded: %s", exn)
        return True


class PrepareSample:
    """webdataset sample (a dict of raw bytes by extension) -> ``(image, caption, uid)`` in a
    worker; a class so workers can unpickle it. ``image`` as the decode mode wants it."""

    def __init__(self, mode: str, prep: TensorPreprocess | None, pil_transform=None, draft: bool = True):
        if mode not in ("cpu", "device", "pil"):
            raise ValueError(f"decode mode must be cpu, device or pil here, got {mode!r}")
        if mode != "pil" and prep is None:
            raise ValueError(f"decode mode {mode!r} needs a TensorPreprocess")
        self.mode, self.prep, self.pil_transform, self.draft = mode, prep, pil_transform, draft

    def __call__(self, sample: dict) -> tuple[torch.Tensor, str, str]:
        key = sample.get("__key__")
        data = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if data is None:
            raise KeyError(f"sample {key!r} has no image ({'/'.join(IMAGE_EXTENSIONS)})")
        if "txt" not in sample or "json" not in sample:
            raise KeyError(f"sample {key!r} lacks its {'.txt' if 'txt' not in sample else '.json'} file")
        meta = json.loads(sample["json"])
        uid = meta.get("uid") if isinstance(meta, dict) else None
        if uid is None:
            raise KeyError(f"sample {key!r}: json has no 'uid' (download with save_additional_columns=['uid'])")
        return self.image(data), sample["txt"].decode("utf-8"), str(uid)

    def image(self, data: bytes) -> torch.Tensor:
        if self.mode == "device" and is_plain_jpeg(data):
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if self.mode == "pil":
            with Image.open(io.BytesIO(data)) as image:
                return self.pil_transform(image.convert("RGB"))
        return decode_rgb(data, self.prep, self.draft)


class Collate:
    """Samples -> ``LoaderBatch`` in the worker: images stacked, captions tokenised in one
    call, the token rows of the last ``cache_size`` distinct captions kept for repeats."""

    def __init__(self, tokenizer, cache_size: int = 8192):
        self.tokenizer, self.cache_size = tokenizer, cache_size
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def tokens(self, captions: Sequence[str]) -> torch.Tensor:
        new = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if new:
            for caption, row in zip(new, self.tokenizer(new)):
                self.cache[caption] = row.clone()
        rows = []
        for caption in captions:
            self.cache.move_to_end(caption)
            rows.append(self.cache[caption])
        while len(self.cache) > max(self.cache_size, len(set(captions))):
            self.cache.popitem(last=False)
        return torch.stack(rows)

    def __call__(self, samples: list[tuple[torch.Tensor, str, str]]) -> LoaderBatch:
        encoded = [i for i, (image, _, _) in enumerate(samples) if image.ndim == 1]
        ready = [i for i, (image, _, _) in enumerate(samples) if image.ndim != 1]
        images = torch.stack([samples[i][0] for i in ready]) if ready else torch.empty(0, dtype=torch.uint8)
        return LoaderBatch(
            images,
            torch.tensor(ready, dtype=torch.long),
            [samples[i][0] for i in encoded],
            torch.tensor(encoded, dtype=torch.long),
            self.tokens([caption or "" for _, caption, _ in samples]),
            [uid for _, _, uid in samples],
        )


def protocol(url: str) -> str:
    return fsspec.core.split_protocol(url)[0] or "file"


class OpenShards:
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
                stream = fsspec.open(url, "rb", **self.options.get(protocol(url), {})).open()
            except Exception as exn:  # noqa: BLE001 - the handler logs and skips the shard
                if self.handler(exn):
                    continue
                break
            try:
                yield {"url": url, "stream": stream}
            finally:
                stream.close()


class ExpandTars:
    """webdataset stage in place of ``tar_file_expander``: the files of each opened shard
    (``laionlab.io.tar_stream``, a quarter of ``tarfile``'s cost per sample), then the
    end-of-shard marker ``{}`` that keeps samples of two shards apart; webdataset's own
    metadata files (``__*__``) are left out as there. A damaged shard goes to the handler
    (logged, the rest of that shard skipped)."""

    def __init__(self, handler):
        self.handler = handler

    def __call__(self, sources):
        for source in sources:
            try:
                for name, data in iter_files(source["stream"]):
                    if not _WDS_META.match(name):
                        yield {"fname": name, "data": data, "__url__": source["url"]}
            except Exception as exn:  # noqa: BLE001 - the handler logs and skips the shard
                exn.args = exn.args + (source["url"],)
                if not self.handler(exn):
                    break
            yield {}


def shard_pipeline(shards: Sequence[str], prepare: PrepareSample) -> wds.DataPipeline:
    """The samples of ``shards`` (split across DataLoader workers shard by shard), prepared."""
    skip = SkipLogger()
    options = {p: dict(fsspec.config.conf[p]) for p in {protocol(s) for s in shards} if p in fsspec.config.conf}
    return wds.DataPipeline(
        wds.SimpleShardList(list(shards)),
        wds.single_node_only,
        wds.split_by_worker,
        OpenShards(skip, options),
        ExpandTars(skip),
        wds.pipelinefilter(group_by_keys)(handler=skip),
        wds.map(prepare, handler=skip),
    )


def make_loader(dataset, batch_size: int, num_workers: int, pin_memory: bool = False, collate_fn=None) -> DataLoader:
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
        collate_fn=collate_fn,
        persistent_workers=False,
        multiprocessing_context="forkserver" if num_workers > 0 else None,
    )
