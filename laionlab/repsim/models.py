"""The models compared by seed 002 (Ciernik et al., ICML 2025) and their image features.

The catalog YAML (the dataset catalog's ``models:`` section)::

    models:
      clip_b32:
        kind: open_clip
        model: ViT-B-32
        pretrained: openai          # or checkpoint: /path/to/open_clip_model.bin
        objective: image-text       # image-text | supervised | self-supervised
      resnet50:
        kind: timm
        model: resnet50
        checkpoint: /models/resnet50.pth
        objective: supervised
        layer: final                # final (default) | penultimate

``layer``: ``final`` is the model's embedding (open_clip: the projected image embedding;
timm: the pooled features before the classifier, ``num_classes=0``, which the paper reads for
supervised models); ``penultimate`` is, for open_clip ViTs, the pooled features before the
projection. Features are returned (and stored by ``model_features``) as the layer outputs
them; the seed L2-normalises them at extraction (``Featurizer(normalize=True)``, the
``--normalize`` default) and every metric sees normalised rows, which
``representation_similarity`` reproduces with :func:`laionlab.repsim.l2_normalise` (its
``normalize`` option, on by default). Keeping the raw features lets that be switched off.

The paper subsamples each dataset to at most 10,000 images, the same images for every model:
:func:`sample_indices` depends only on the dataset size, the cap and the seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from laionlab.progress import Progress

__all__ = ["MAX_SAMPLES", "OBJECTIVES", "ModelSpec", "extract_features", "load_models", "sample_indices"]

log = logging.getLogger(__name__)

MAX_SAMPLES = 10_000  # the paper's cap per dataset
OBJECTIVES = ("image-text", "supervised", "self-supervised")
KINDS = ("open_clip", "timm")
LAYERS = ("final", "penultimate")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    model: str
    pretrained: str | None = None
    checkpoint: str | None = None
    objective: str = "supervised"
    layer: str = "final"
    seed: int = 0  # for randomly initialised models (the demo)


def load_models(path: str | Path) -> dict[str, ModelSpec]:
    """The ``models:`` section of a catalog file ({} when there is none), validated."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"catalog not found: {path}")
    raw = (yaml.safe_load(path.read_text()) or {}).get("models") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: 'models' must map a model name to its entry")
    out = {}
    for name, entry in raw.items():
        where = f"{path}: model {name!r}"
        if not isinstance(entry, dict) or "kind" not in entry or "model" not in entry:
            raise ValueError(f"{where} needs 'kind' ({' or '.join(KINDS)}) and 'model'")
        unknown = set(entry) - {"kind", "model", "pretrained", "checkpoint", "objective", "layer", "seed"}
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        spec = ModelSpec(name=str(name), **entry)
        if spec.kind not in KINDS:
            raise ValueError(f"{where}: kind must be one of {KINDS}, got {spec.kind!r}")
        if spec.objective not in OBJECTIVES:
            raise ValueError(f"{where}: objective must be one of {OBJECTIVES}, got {spec.objective!r}")
        if spec.layer not in LAYERS:
            raise ValueError(f"{where}: layer must be one of {LAYERS}, got {spec.layer!r}")
        if spec.checkpoint is not None:
            ckpt = (
                Path(spec.checkpoint)
                if Path(spec.checkpoint).is_absolute()
                else (path.parent / spec.checkpoint).resolve()
            )
            if not ckpt.exists():
                raise ValueError(f"{where}: checkpoint does not exist: {ckpt}")
            spec = ModelSpec(**{**spec.__dict__, "checkpoint": str(ckpt)})
        out[str(name)] = spec
    return out


def sample_indices(n: int, max_samples: int = MAX_SAMPLES, seed: int = 0) -> np.ndarray:
    """Ascending indices of at most ``max_samples`` of ``n`` samples (all when n is smaller),
    drawn without replacement from ``default_rng(seed)``: the same for every model."""
    if n < 1:
        raise ValueError(f"n: the dataset has no samples ({n})")
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


class _Timm(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def _load(spec: ModelSpec, device: str):
    """(module mapping a preprocessed batch to features, preprocess transform)."""
    if spec.kind == "open_clip":
        from laionlab.embed.model import ClipSpec, load_clip

        clip = load_clip(ClipSpec(spec.model, spec.pretrained, spec.checkpoint, device, "fp32", spec.seed))
        visual = clip.model.visual
        if spec.layer == "penultimate":
            if getattr(visual, "proj", None) is None:
                raise ValueError(
                    f"model {spec.name!r}: layer 'penultimate' needs an open_clip ViT with a projection "
                    f"({type(visual).__name__} has none)"
                )
            visual.proj = None  # the pooled features before the projection
        return visual, clip.preprocess, clip.device
    import timm

    if spec.layer == "penultimate":
        raise ValueError(f"model {spec.name!r}: timm models read 'final' (pooled pre-logits features) only")
    torch.manual_seed(spec.seed)
    try:
        model = timm.create_model(
            spec.model,
            pretrained=spec.pretrained is not None and spec.checkpoint is None,
            checkpoint_path=spec.checkpoint or "",
        )
    except RuntimeError as err:
        raise ValueError(f"model {spec.name!r}: cannot load {spec.model} ({err})") from None
    model.reset_classifier(0)
    model.eval()
    config = timm.data.resolve_data_config({}, model=model)
    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    return _Timm(model).to(dev), timm.data.create_transform(**config), dev


def extract_features(
    spec: ModelSpec,
    dataset_spec,
    indices: np.ndarray,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 0,
    log_every_s: float = 30.0,
) -> np.ndarray:
    """``(len(indices), d)`` float32 features of the dataset's images ``indices`` (ascending)
    under ``spec``'s layer, in index order; progress (images, rate, ETA) every ``log_every_s``."""
    from laionlab.io.reference import ReferenceImages

    module, preprocess, dev = _load(spec, device)
    images = ReferenceImages(dataset_spec, preprocess, indices=indices)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=num_workers)
    feats, uids = [], []
    progress = Progress(
        f"{spec.name} features of {dataset_spec.name}",
        len(indices),
        log_every_s,
        log,
        unit="images",
        quiet_below_s=log_every_s,
    )
    with torch.inference_mode():
        for x, uid in loader:
            feats.append(module(x.to(dev)).float().cpu().numpy())
            uids.extend(uid)
            progress.update(len(uid))
    progress.close()
    if not feats:
        raise ValueError(f"dataset {dataset_spec.name!r}: no image among the {len(indices)} requested")
    order = np.argsort(np.array([int(u.rsplit(":", 1)[1]) for u in uids]), kind="stable")
    return np.concatenate(feats)[order]
