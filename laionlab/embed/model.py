"""Loading open_clip models: real ones by name + pretrained tag or local checkpoint, and the
tiny randomly initialised configs this project registers for the demo and the tests.

The project's configs (``laionlab-tiny``: a 2-layer ViT on 64×64 images, ``laionlab-tiny-conv``:
a small ModifiedResNet) live in ``model_configs/`` and are created with ``pretrained=None``
under a fixed torch seed, so every machine gets the same weights without any download.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

PROJECT_MODEL_DIR = Path(__file__).parent / "model_configs"
PROJECT_MODELS = tuple(sorted(p.stem for p in PROJECT_MODEL_DIR.glob("*.json")))
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def register_project_models() -> None:
    """Make the project's model configs known to open_clip (idempotent)."""
    import open_clip

    if not set(PROJECT_MODELS) <= set(open_clip.list_models()):
        open_clip.add_model_config(PROJECT_MODEL_DIR)


@dataclass(frozen=True)
class ClipSpec:
    """Which open_clip model to load and how.

    model_name: an open_clip architecture (``ViT-B-32``) or a project config (``laionlab-tiny``).
    pretrained: an open_clip pretrained tag (``laion2b_s34b_b79k``, ``openai``) or None.
    checkpoint: a local checkpoint file; takes the place of ``pretrained``.
    device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
    precision: ``fp32``, ``fp16`` or ``bf16`` (fp16 falls back to fp32 on a CPU).
    seed: torch seed for randomly initialised models (no pretrained, no checkpoint).
    """

    model_name: str = "laionlab-tiny"
    pretrained: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    seed: int = 0

    @property
    def weights(self) -> str:
        if self.checkpoint:
            return f"ckpt:{Path(self.checkpoint).name}"
        return self.pretrained or f"random-seed{self.seed}"

    @property
    def model_id(self) -> str:
        """A stable name for the weights, stored with every embedding row."""
        return f"{self.model_name}/{self.weights}"


@dataclass
class LoadedClip:
    spec: ClipSpec
    model: torch.nn.Module
    preprocess: Callable[[Any], torch.Tensor]
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device
    dtype: torch.dtype
    embed_dim: int

    @property
    def model_id(self) -> str:
        return self.spec.model_id


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but torch sees no CUDA device")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return torch.device(device)


def _resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        log.warning("precision fp16 is not supported on the CPU; using fp32")
        return torch.float32
    return PRECISIONS[precision]


def validate_spec(spec: ClipSpec) -> None:
    """Raise a clear error for an unknown model, an unknown pretrained tag or a missing
    checkpoint, before anything heavy is loaded."""
    import open_clip

    register_project_models()
    known = open_clip.list_models()
    if spec.model_name not in known and not spec.model_name.startswith(("hf-hub:", "local-dir:")):
        close = difflib.get_close_matches(spec.model_name, known, n=5, cutoff=0.5)
        raise ValueError(
            f"unknown open_clip model {spec.model_name!r}. Close matches: {close or 'none'}; "
            f"project models: {list(PROJECT_MODELS)}; all {len(known)} names: open_clip.list_models()"
        )
    if spec.checkpoint and spec.pretrained:
        raise ValueError(f"give either pretrained={spec.pretrained!r} or checkpoint={spec.checkpoint!r}, not both")
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint file for model {spec.model_name!r} not found: {spec.checkpoint}")
    if spec.pretrained:
        tags = open_clip.list_pretrained_tags_by_model(spec.model_name)
        if spec.pretrained not in tags:
            raise ValueError(
                f"model {spec.model_name!r} has no pretrained tag {spec.pretrained!r}; "
                f"available tags: {tags or 'none (use checkpoint= or pretrained=None)'}"
            )


def load_clip(spec: ClipSpec) -> LoadedClip:
    """Load the model in eval mode with its preprocessing transform and tokenizer."""
    import open_clip

    validate_spec(spec)
    device = resolve_device(spec.device)
    dtype = _resolve_dtype(spec.precision, device)
    weights = spec.checkpoint or spec.pretrained
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.model_name, pretrained=weights, device=device
            )
        except Exception as exc:  # network/cache/format problems from deep inside open_clip
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            hint = (
                " HF_HUB_OFFLINE=1 is set, so weights must already be in the Hugging Face cache "
                "(HF_HOME) or be given as a local checkpoint file."
                if offline
                else ""
            )
            raise RuntimeError(
                f"could not load weights {weights!r} for open_clip model {spec.model_name!r}: "
                f"{type(exc).__name__}: {exc}.{hint}"
            ) from exc
    model = model.to(dtype=dtype).eval()
    tokenizer = open_clip.get_tokenizer(spec.model_name)
    with torch.no_grad():
        embed_dim = int(model.encode_text(tokenizer([""]).to(device)).shape[-1])
    return LoadedClip(spec, model, preprocess, tokenizer, device, dtype, embed_dim)
