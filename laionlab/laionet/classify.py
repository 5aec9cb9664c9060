"""ImageNet classifiers evaluated on LAIONet and ImageNet-val (seed 001: Shirali & Hardt, "What
Makes ImageNet Look Unlike LAION", TMLR 2025; public code alishiraliGit/eval-on-laion,
``core/retrieve_image.py``, ``core/ilsvrc_predictors.py``, ``core/queries.py``).

The seed scores ImageNet-1k classifiers and CLIP ViT-B/32 zero-shot by top-1/top-5 recall.
Here:

* **CLIP zero-shot** (:func:`zero_shot_weights`, :func:`zero_shot_predict`): one unit vector
  per class, the renormalised mean of its prompt embeddings (open_clip's
  ``build_zero_shot_classifier``); by default open_clip's ``IMAGENET_CLASSNAMES`` with the 80
  ``OPENAI_IMAGENET_TEMPLATES`` of Radford et al. 2021. An image's classes are ranked by
  cosine similarity. The seed's own CLIP zero-shot notebook
  (``notebooks/calc_clip_zero_shot_accuracy.ipynb``) instead ranks by the similarity to a
  single "NAME_DEF" query per class, "<name> which is <definition>":
  :func:`name_def_queries` builds it, to be used with ``templates=("{}",)``.
* **ImageNet-1k classifiers** (:func:`load_timm_classifier`, :func:`timm_predict`): the seed
  loads Hugging Face ``transformers`` ResNet/ViT/BEiT/ConvNeXt checkpoints; here any timm
  architecture with a 1000-class head, from a local checkpoint (no download unless
  ``pretrained=True`` is asked for), preprocessed with the transform timm resolves for it.
* **Image filter** (:func:`usable_image`, :func:`image_problem`): the seed's
  ``verify_image``, which drops images whose PIL mode is not ``RGB`` (grayscale, RGBA and
  palette images included) and images of fewer than 10×10 = 100 pixels.

Class index ``i`` of a 1000-way output is the ``i``-th wnid of
:func:`laionlab.io.imagenet.ilsvrc_synsets` (the standard ILSVRC-2012 order, which open_clip's
``IMAGENET_CLASSNAMES`` and timm's ImageNet heads share). Nothing here imports Dagster.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from laionlab import validate
from laionlab.io.imagenet import ilsvrc_synsets

if TYPE_CHECKING:  # torch is imported by the functions that run a model, not with the package
    import torch

    from laionlab.embed.model import LoadedClip

log = logging.getLogger(__name__)

__all__ = [
    "TimmClassifier",
    "TimmSpec",
    "ilsvrc_wnids",
    "image_problem",
    "load_timm_classifier",
    "name_def_queries",
    "timm_predict",
    "usable_image",
    "zero_shot_classifier",
    "zero_shot_predict",
    "zero_shot_weights",
]

# The seed's configs.RetrieveConfig.MIN_IMAGE_SIZE = 10*10, compared with width * height.
MIN_IMAGE_AREA = 100
N_ILSVRC_CLASSES = 1000
# Zero-shot prompt sets: open_clip's class names x 80 OpenAI templates, "a photo of a {}.",
# or the seed's notebook's single "<name> which is <definition>" query per class.
PROMPT_KINDS = ("openai", "simple", "name_def")


# --- classes -------------------------------------------------------------------------------


def ilsvrc_wnids() -> list[str]:
    """The 1000 ILSVRC-2012 wnids in class-index order."""
    return ilsvrc_synsets()["wnid"].to_list()


def _class_indices(wnids: Sequence[str]) -> list[int]:
    """ILSVRC class index of each wnid; ValueError naming the wnids that are not ILSVRC classes."""
    index = {w: i for i, w in enumerate(ilsvrc_wnids())}
    unknown = [w for w in wnids if w not in index]
    if unknown:
        raise ValueError(f"wnids: {len(unknown)} not among the 1000 ILSVRC-2012 classes, e.g. {unknown[:5]}")
    return [index[w] for w in wnids]


def _wnid_list(wnids) -> list[str]:
    if isinstance(wnids, str) or not isinstance(wnids, Iterable):
        raise ValueError(f"wnids: expected a list of wnid strings, got {type(wnids).__name__}")
    wnids = list(wnids)
    if not wnids:
        raise ValueError("wnids: expected at least one wnid")
    bad = [w for w in wnids if not isinstance(w, str)]
    if bad:
        raise ValueError(f"wnids: expected str items, got {bad[0]!r}")
    seen: set[str] = set()
    dupes = sorted({w for w in wnids if w in seen or seen.add(w)})
    if dupes:
        raise ValueError(f"wnids: expected unique wnids, repeated: {dupes[:5]}")
    return wnids


def name_def_queries(wnids: Sequence[str]) -> list[str]:
    """The seed's NAME_DEF zero-shot query of each wnid: ``"<name> which is <definition>"``.

    ``name`` is the synset's first lemma lowercased (what NLTK's ``synset.name()`` yields, the
    seed's source) and ``definition`` its WordNet gloss, both from
    :func:`laionlab.io.imagenet.ilsvrc_synsets`. Use as
    ``zero_shot_weights(clip, wnids, classnames=name_def_queries(wnids), templates=("{}",))``.
    """
    from laionlab.laionet.queries import synset_queries

    wnids = _wnid_list(wnids)
    synsets = ilsvrc_synsets()[_class_indices(wnids)]
    return synset_queries(synsets, kind="name_def")["query"].to_list()


# --- CLIP zero-shot ------------------------------------------------------------------------


def zero_shot_weights(
    clip: LoadedClip,
    wnids: Sequence[str],
    classnames: Sequence[str] | None = None,
    templates: Sequence[str | Callable[[str], str]] | None = None,
    batch_size: int = 10,
) -> np.ndarray:
    """CLIP zero-shot classifier: one L2-normalised text vector per class.

    Each class's prompts (every template applied to its class name) are encoded and
    L2-normalised, averaged, and the mean renormalised (open_clip's
    ``build_zero_shot_classifier``, as in CLIP and clip_benchmark).

    Args:
        clip: the loaded CLIP model (:func:`laionlab.embed.model.load_clip`).
        wnids: the classes, unique; row ``i`` of the result belongs to ``wnids[i]``.
        classnames: one name per wnid, or None for open_clip's ``IMAGENET_CLASSNAMES`` (then
            every wnid must be an ILSVRC-2012 class; with explicit names any labels will do).
        templates: format strings with one ``{}`` or callables ``name -> prompt``, all of one
            kind; None for open_clip's 80 ``OPENAI_IMAGENET_TEMPLATES``.
        batch_size: classes per text-encoder forward (each sends ``len(templates)`` prompts).

    Returns:
        ``(len(wnids), d)`` float32, rows L2-normalised, ``d = clip.embed_dim``.
    """
    from open_clip import build_zero_shot_classifier
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES

    wnids = _wnid_list(wnids)
    if classnames is None:
        classnames = [IMAGENET_CLASSNAMES[i] for i in _class_indices(wnids)]
    else:
        if isinstance(classnames, str) or not isinstance(classnames, Sequence):
            raise ValueError(f"classnames: expected a list of str, got {type(classnames).__name__}")
        classnames = list(classnames)
        if len(classnames) != len(wnids):
            raise ValueError(f"classnames: expected one name per wnid ({len(wnids)}), got {len(classnames)}")
        if not all(isinstance(c, str) and c.strip() for c in classnames):
            raise ValueError("classnames: expected non-empty strings")
    templates = OPENAI_IMAGENET_TEMPLATES if templates is None else tuple(templates)
    if not templates:
        raise ValueError("templates: expected at least one template")
    if not (all(isinstance(t, str) for t in templates) or all(callable(t) for t in templates)):
        raise ValueError("templates: expected all format strings or all callables, not a mix")
    if isinstance(templates[0], str) and not all("{}" in t for t in templates):
        raise ValueError(f"templates: every format string needs a '{{}}' for the class name, got {templates!r}")
    batch_size = validate.int_at_least("batch_size", batch_size, 1)

    weights = build_zero_shot_classifier(
        clip.model,
        clip.tokenizer,
        classnames,
        templates,
        num_classes_per_batch=batch_size,
        device=clip.device,
    )  # (d, n_classes)
    return weights.T.float().cpu().numpy()


def zero_shot_classifier(clip: LoadedClip, wnids: Sequence[str], prompts: str = "openai") -> np.ndarray:
    """:func:`zero_shot_weights` for one of the prompt sets of :data:`PROMPT_KINDS`.

    ``openai``: open_clip's ``IMAGENET_CLASSNAMES`` with the 80 OpenAI templates (CLIP's
    ImageNet protocol); ``simple``: the class names in ``"a photo of a {}."``; ``name_def``:
    the seed's notebook, one ``"<name> which is <definition>"`` query per class
    (:func:`name_def_queries`). Returns ``(len(wnids), d)`` unit rows.
    """
    if prompts == "name_def":
        return zero_shot_weights(clip, wnids, classnames=name_def_queries(wnids), templates=("{}",))
    if prompts in ("openai", "simple"):
        return zero_shot_weights(clip, wnids, templates=None if prompts == "openai" else ("a photo of a {}.",))
    raise ValueError(f"prompts: expected one of {', '.join(PROMPT_KINDS)}, got {prompts!r}")


def zero_shot_predict(
    image_emb,
    weights,
    wnids: Sequence[str],
    k: int = 5,
    device: str = "auto",
) -> np.ndarray:
    """Top-``k`` classes of each image by cosine similarity to the zero-shot weights.

    Args:
        image_emb: ``(n, d)`` float image embeddings, L2-normalised (the embedding loop's
            ``image_emb``); may be memory-mapped.
        weights: ``(n_classes, d)`` from :func:`zero_shot_weights`.
        wnids: the ``n_classes`` labels of the rows of ``weights``.
        k: classes per image, ``1 <= k <= n_classes`` (the seed reports top-1 and top-5).
        device: where the products run, as in :func:`laionlab.neighbours.topk_similar`.

    Returns:
        ``(n, k)`` array of wnid strings, best first; equal scores by lower class row.
    """
    from laionlab.neighbours import topk_similar

    image_emb = validate.matrix("image_emb", image_emb)
    weights = validate.matrix("weights", weights)
    validate.same_dim("image_emb", image_emb, "weights", weights)
    wnids = np.asarray(_wnid_list(wnids))
    if len(wnids) != weights.shape[0]:
        raise ValueError(f"wnids: expected one wnid per row of weights ({weights.shape[0]}), got {len(wnids)}")
    k = validate.int_at_least("k", k, 1)
    if k > len(wnids):
        raise ValueError(f"k: expected at most the {len(wnids)} classes, got {k}")
    top = topk_similar(image_emb, weights, k, device=device)
    return wnids[top.ids]


# --- timm ImageNet-1k classifiers ----------------------------------------------------------


@dataclass(frozen=True)
class TimmSpec:
    """Which timm ImageNet-1k classifier to load and how.

    model_name: a timm architecture, optionally with a pretrained tag (``resnet50``,
        ``vit_base_patch16_224.augreg_in21k_ft_in1k``).
    checkpoint: a local checkpoint file (state dict or timm training checkpoint).
    pretrained: download timm's pretrained weights (needs the network or a filled
        Hugging Face cache); only without ``checkpoint``.
    device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    seed: torch seed for randomly initialised weights (neither checkpoint nor pretrained).
    """

    model_name: str
    checkpoint: str | None = None
    pretrained: bool = False
    device: str = "cpu"
    seed: int = 0

    @property
    def weights(self) -> str:
        if self.checkpoint:
            return f"ckpt:{Path(self.checkpoint).name}"
        return "pretrained" if self.pretrained else f"random-seed{self.seed}"

    @property
    def model_id(self) -> str:
        """A stable name for the weights, stored with every prediction row."""
        return f"timm:{self.model_name}/{self.weights}"


@dataclass
class TimmClassifier:
    spec: TimmSpec
    model: torch.nn.Module
    transform: Callable[[Any], torch.Tensor]
    data_config: dict
    device: torch.device

    @property
    def model_id(self) -> str:
        return self.spec.model_id


def _validate_timm_spec(spec: TimmSpec) -> None:
    import timm
    from timm.models import parse_model_name

    if not isinstance(spec.model_name, str) or not spec.model_name:
        raise ValueError(f"name: expected a timm model name, got {spec.model_name!r}")
    source, _ = parse_model_name(spec.model_name)
    if source is None and not timm.is_model(spec.model_name):
        known = timm.list_models()
        close = difflib.get_close_matches(spec.model_name.split(".")[0], known, n=5, cutoff=0.5)
        raise ValueError(
            f"unknown timm model {spec.model_name!r}. Close matches: {close or 'none'}; "
            f"all {len(known)} names: timm.list_models()"
        )
    if spec.checkpoint and spec.pretrained:
        raise ValueError(
            f"give either pretrained=True or checkpoint={spec.checkpoint!r} for timm model "
            f"{spec.model_name!r}, not both"
        )
    if spec.checkpoint and not Path(spec.checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint file for timm model {spec.model_name!r} not found: {spec.checkpoint}")


def load_timm_classifier(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cpu",
    *,
    pretrained: bool = False,
    seed: int = 0,
) -> TimmClassifier:
    """A timm ImageNet-1k classifier in eval mode with its evaluation transform.

    The model is ``timm.create_model(name, num_classes=1000)`` with weights from
    ``checkpoint`` (a local file), from timm's hub weights when ``pretrained=True`` (a
    download, unless already in the Hugging Face cache), or else random under ``seed``
    (for tests). The transform is timm's eval transform for the model's pretrained config
    (``resolve_data_config`` + ``create_transform``: resize, center crop, normalise).

    Raises:
        ValueError: unknown model name (with close matches), both checkpoint and pretrained,
            or a checkpoint that does not fit the architecture with a 1000-class head.
        FileNotFoundError: the checkpoint file does not exist.
        RuntimeError: pretrained weights could not be fetched (e.g. HF_HUB_OFFLINE=1 and
            nothing cached).
    """
    import timm
    import torch
    from timm.data import create_transform, resolve_data_config

    from laionlab.embed.model import resolve_device

    spec = TimmSpec(
        model_name=name,
        checkpoint=None if checkpoint is None else str(checkpoint),
        pretrained=bool(pretrained),
        device=device,
        seed=seed,
    )
    _validate_timm_spec(spec)
    torch_device = resolve_device(spec.device)
    if not spec.checkpoint and not spec.pretrained:
        log.warning("timm model %s has random weights (no checkpoint, pretrained=False)", name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        try:
            model = timm.create_model(
                name,
                pretrained=spec.pretrained,
                num_classes=N_ILSVRC_CLASSES,
                checkpoint_path=spec.checkpoint,
            )
        except Exception as exc:
            if spec.checkpoint:
                # unreadable file, missing/unexpected keys, size mismatches
                raise ValueError(
                    f"checkpoint {spec.checkpoint} could not be loaded into timm model {name!r} "
                    f"with a {N_ILSVRC_CLASSES}-class head: {type(exc).__name__}: {exc}"
                ) from exc
            if not spec.pretrained:
                raise
            offline = os.environ.get("HF_HUB_OFFLINE") == "1"
            hint = (
                " HF_HUB_OFFLINE=1 is set, so the weights must already be in the Hugging Face "
                "cache (HF_HOME); otherwise pass a local checkpoint file."
                if offline
                else " Pass a local checkpoint file to avoid the download."
            )
            raise RuntimeError(
                f"could not fetch pretrained weights for timm model {name!r}: "
                f"{type(exc).__name__}: {str(exc).rstrip('.')}.{hint}"
            ) from exc
    model = model.to(torch_device).eval()
    data_config = resolve_data_config({}, model=model)
    transform = create_transform(**data_config, is_training=False)
    return TimmClassifier(spec, model, transform, data_config, torch_device)


def timm_predict(
    classifier: TimmClassifier,
    images: Iterable,
    k: int = 5,
    batch_size: int = 64,
) -> np.ndarray:
    """Top-``k`` ILSVRC classes of each image by the classifier's logits.

    Args:
        classifier: from :func:`load_timm_classifier`.
        images: PIL images (any iterable, consumed once). Non-RGB images are converted to
            RGB; filter them first with :func:`usable_image` to follow the seed.
        k: classes per image, ``1 <= k <= 1000``.
        batch_size: images per forward (the seed's ImageNetModelsConfig.BATCH_SIZE is 64).

    Returns:
        ``(n, k)`` array of wnid strings, best first; logit ``i`` is the ``i``-th ILSVRC wnid.
    """
    k = validate.int_at_least("k", k, 1)
    if k > N_ILSVRC_CLASSES:
        raise ValueError(f"k: expected at most {N_ILSVRC_CLASSES} classes, got {k}")
    batch_size = validate.int_at_least("batch_size", batch_size, 1)
    import torch

    wnids = np.asarray(ilsvrc_wnids())
    out: list[np.ndarray] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        with torch.inference_mode():
            x = torch.stack(batch).to(classifier.device)
            logits = classifier.model(x)
            if logits.shape[-1] != N_ILSVRC_CLASSES:
                raise ValueError(f"classifier: expected {N_ILSVRC_CLASSES} logits per image, got {logits.shape[-1]}")
            out.append(torch.topk(logits.float(), k, dim=1).indices.cpu().numpy())
        batch.clear()

    for i, image in enumerate(images):
        if not hasattr(image, "convert"):
            raise ValueError(f"images[{i}]: expected a PIL image, got {type(image).__name__}")
        batch.append(classifier.transform(image if image.mode == "RGB" else image.convert("RGB")))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    if not out:
        return np.empty((0, k), dtype=wnids.dtype)
    return wnids[np.concatenate(out)]


# --- image filter --------------------------------------------------------------------------


def image_problem(img, min_area: int = MIN_IMAGE_AREA, require_rgb: bool = True) -> str | None:
    """Why the seed's ``verify_image`` would drop this image, or None if it is usable.

    The seed raises for a PIL mode other than ``RGB`` (so grayscale ``L``, ``RGBA``, ``P``,
    ``CMYK`` are dropped, not converted) and for ``width * height < 100``.
    """
    if not hasattr(img, "mode") or not hasattr(img, "size"):
        raise ValueError(f"img: expected a PIL image, got {type(img).__name__}")
    min_area = validate.int_at_least("min_area", min_area, 0)
    if require_rgb and img.mode != "RGB":
        return f"mode {img.mode} is not RGB"
    width, height = img.size
    if width * height < min_area:
        return f"{width}x{height} = {width * height} px is under {min_area} px"
    return None


def usable_image(img, min_area: int = MIN_IMAGE_AREA, require_rgb: bool = True) -> bool:
    """True if the seed's ``verify_image`` keeps this image (see :func:`image_problem`)."""
    return image_problem(img, min_area=min_area, require_rgb=require_rgb) is None
