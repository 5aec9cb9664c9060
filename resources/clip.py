"""The ClipEncoder resource: which open_clip model embeds images and captions, and how."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:  # laionlab.embed.model imports torch: loaded on first use, not with the code location
    from laionlab.embed.model import ClipSpec, LoadedClip


class ClipEncoder(ConfigurableResource):
    """An open_clip model by name with a pretrained tag (``ViT-B-32`` + ``laion2b_s34b_b79k``)
    or a local checkpoint file; ``laionlab-tiny`` (random, seeded) for the demo.

    The model is loaded once per process, on first use.
    """

    model_name: str = Field("laionlab-tiny", description="open_clip architecture or project model")
    pretrained: str | None = Field(None, description="open_clip pretrained tag, e.g. laion2b_s34b_b79k")
    checkpoint: str | None = Field(None, description="local checkpoint file (instead of a tag)")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda, cuda:N")
    precision: Literal["fp32", "fp16", "bf16"] = Field("fp32", description="fp16 on GPU only")
    batch_size: int = Field(256, ge=1, description="images per forward pass")
    num_workers: int = Field(2, ge=0, description="DataLoader workers decoding images")
    decode: Literal["auto", "cpu", "device", "pil"] = Field(
        "auto",
        description="where images are decoded and resized: cpu (workers, uint8 at the model's size), device "
        "(JPEGs by nvJPEG on the model's GPU), pil (open_clip's PIL transform in the workers, the reference); "
        "auto: device when the model is on a GPU that decodes JPEGs, else cpu",
    )
    jpeg_draft: bool = Field(True, description="decode JPEGs >= 2x the model's input size at 1/2-1/8 DCT scale")
    seed: int = Field(0, description="torch seed for randomly initialised models")
    ray_address: str | None = Field(
        None, description="embed on this Ray cluster (Ray Data actor pool) instead of in the step's process"
    )
    ray_actors: int = Field(2, ge=1, description="model replicas (actors) on the Ray cluster")
    ray_gpus_per_actor: float = Field(0.0, ge=0, description="GPUs per actor on GPU clusters (e.g. 1)")

    _loaded: LoadedClip | None = PrivateAttr(default=None)
    _lease: object = PrivateAttr(default=None)

    @property
    def spec(self) -> ClipSpec:
        from laionlab.embed.model import ClipSpec

        return ClipSpec(self.model_name, self.pretrained, self.checkpoint, self.device, self.precision, self.seed)

    @property
    def loader_options(self) -> dict:
        """How encode_shards reads images (the same on every executor)."""
        return {"decode": self.decode, "jpeg_draft": self.jpeg_draft}

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def validate(self) -> None:
        """Fail fast on an unknown model, tag or missing checkpoint (no weights loaded)."""
        from laionlab.embed.model import validate_spec

        validate_spec(self.spec)

    def load(self) -> LoadedClip:
        """The model; with device "auto" on a GPU host, on a GPU leased for this process
        (laionlab.devices: one lock per GPU), so concurrent steps never share a GPU by accident."""
        if self._loaded is None:
            from laionlab.embed.model import ClipSpec, load_clip

            spec = self.spec
            if self.device == "auto":
                import torch

                if torch.cuda.is_available():
                    from laionlab.devices import lease_device, torch_device

                    # held until the process ends (the kernel drops the lock even on SIGKILL)
                    self._lease = lease_device(owner=f"ClipEncoder pid {os.getpid()}")
                    spec = ClipSpec(
                        self.model_name,
                        self.pretrained,
                        self.checkpoint,
                        torch_device(self._lease.__enter__()),
                        self.precision,
                        self.seed,
                    )
            self._loaded = load_clip(spec)
        return self._loaded
