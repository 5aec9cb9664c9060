"""The embedded demo: small LAION-like metadata parts whose URLs point at generated images.

Everything is drawn from one seeded generator, so two builds with the same arguments write
byte-identical parquet files and images. The parts carry LAION-400M's columns (SAMPLE_ID,
URL, TEXT, HEIGHT, WIDTH, LICENSE, NSFW, similarity); captions are templates around real
ILSVRC lemmas, mostly of eight demo classes (``DEMO_CLASSES``, whose photos share a tint), so
lemma matching and LAIONet (seed 001) and caption retrieval (seed 003) find something.

Three visual kinds are generated, so a photo classifier (seed 000) has something to separate:
- ``photo``: smooth multi-scale colour noise with a lighting gradient and sensor grain,
- ``clipart``: a flat background with a few solid shapes,
- ``text``: words rendered on a plain background.

Each part also holds deliberately broken rows: a URL whose file is missing, a file of
non-image bytes, a truncated JPEG, an empty caption, and rows flagged NSFW.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw, ImageFont

from laionlab.io.imagenet import ilsvrc_synsets

KINDS = ("photo", "clipart", "text")

CAPTION_TEMPLATES = {
    "photo": [
        "a photo of a {lemma}",
        "{lemma} in the garden, summer 2019",
        "close-up photograph of the {lemma}",
        "My {lemma} at home",
    ],
    "clipart": [
        "{lemma} clipart vector illustration",
        "cartoon {lemma} icon flat design",
        "drawing of a {lemma} for kids",
    ],
    "text": [
        "the word {lemma} in bold letters",
        "{lemma} quote poster typography",
    ],
}
# LAIONet (seed 001) needs classes with several images: most captions name one of these
# ILSVRC classes (their photos share a tint, so images of a class look alike); the rest name
# a random ILSVRC lemma. A labelled ImageNet-val-like folder and an ImageNet-Captions-like
# table cover the same classes.
DEMO_CLASSES = {
    "n01440764": (90, 120, 60),  # tench
    "n01443537": (240, 150, 30),  # goldfish
    "n02085620": (170, 120, 90),  # Chihuahua
    "n02123045": (130, 130, 130),  # tabby
    "n02690373": (60, 120, 220),  # airliner
    "n03792782": (200, 40, 40),  # mountain bike
    "n04254680": (240, 240, 240),  # soccer ball
    "n07747607": (250, 120, 0),  # orange
}
DEMO_CLASS_SHARE = 0.7
FILLER_CAPTIONS = ["Buy now - free shipping", "IMG_0042.JPG", "Holiday sale 50% off", "untitled"]
LICENSES = ["?", "?", "?", "creativecommons.org/licenses/by/4.0"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the embedded demo. The defaults keep the whole demo job well under 90 s."""

    n_parts: int = 3
    rows_per_part: int = 200
    min_side: int = 72
    max_side: int = 160
    nsfw_per_part: int = 4
    reference_images: int = 60
    reference_per_class: int = 6
    seed: int = 0


@dataclass
class DemoManifest:
    root: str
    parts: list[str] = field(default_factory=list)
    images: int = 0
    broken_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    nsfw_rows: dict[str, list[int]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def _photo(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """Multi-scale smooth colour noise plus a lighting gradient and fine grain."""
    img = np.zeros((h, w, 3), np.float32)
    for cells, weight in ((3, 0.6), (8, 0.3), (24, 0.15)):
        coarse = rng.random((cells, cells, 3)).astype(np.float32)
        layer = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
        img += weight * np.asarray(layer, np.float32) / 255
    ramp = np.linspace(0.7, 1.2, h, dtype=np.float32)[:, None, None]
    img = img / 1.05 * ramp + rng.normal(0, 0.04, size=img.shape).astype(np.float32)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def _tinted(img: Image.Image, colour: tuple[int, int, int], strength: float = 0.5) -> Image.Image:
    """Scale each channel of ``img`` towards a class colour, so images of one demo class look
    alike while the photo texture (relative variation) stays."""
    gain = (1 - strength) + strength * np.asarray(colour, np.float32) / 255 * 1.5
    return Image.fromarray(np.clip(np.asarray(img, np.float32) * gain, 0, 255).astype(np.uint8))


def _clipart(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    palette = rng.integers(0, 256, size=(4, 3))
    img = Image.new("RGB", (w, h), tuple(int(c) for c in palette[0]))
    draw = ImageDraw.Draw(img)
    for colour in palette[1 : 1 + rng.integers(1, 4)]:
        x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x1, y1 = int(rng.integers(x0 + 8, w)), int(rng.integers(y0 + 8, h))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=tuple(int(c) for c in colour))
    return img


def _text(rng: np.random.Generator, h: int, w: int, words: str) -> Image.Image:
    light = int(rng.integers(200, 256))
    img = Image.new("RGB", (w, h), (light, light, light - int(rng.integers(0, 40))))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i, line in enumerate([words[j : j + 12] for j in range(0, len(words), 12)][: h // 14]):
        draw.text((4, 4 + 14 * i), line, fill=(int(rng.integers(0, 80)),) * 3, font=font)
    return img


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _synthetic_responses(
    folder: Path, out: Path, rng: np.random.Generator, voxels: int = 40, sessions: int = 3
) -> None:
    """NSD-like trial responses to the images of ``folder`` (sorted as the catalog lists them):
    each image is shown once per session; a voxel's response is a fixed random linear map of
    the image's 4×4 colour layout plus trial noise; ncsnr per voxel, a few voxels pure noise."""
    files = sorted(folder.glob("*/*.png"))
    layout = np.stack(
        [
            np.asarray(Image.open(f).convert("RGB").resize((4, 4), Image.BILINEAR), np.float32).ravel() / 255
            for f in files
        ]
    )
    layout = (layout - layout.mean(0)) / (layout.std(0) + 1e-6)
    weights = rng.normal(size=(layout.shape[1], voxels)).astype(np.float32) / np.sqrt(layout.shape[1])
    weights[:, : voxels // 8] = 0  # noise-only voxels (noise ceiling 0)
    signal = layout @ weights
    order = [rng.permutation(len(files)) for _ in range(sessions)]
    betas = np.concatenate([signal[o] + rng.normal(0, 0.7, size=(len(o), voxels)) for o in order]).astype(np.float32)
    ncsnr = signal.std(0) / 0.7
    np.savez(
        out,
        betas=(betas * 300).astype(np.int16),  # NSD stores betas ×300 as int16
        session=np.repeat(np.arange(sessions), len(files)),
        stimulus_ids=np.concatenate(order),
        ncsnr=ncsnr.astype(np.float32),
    )


def _reference_sets(root: Path, rng: np.random.Generator, config: DemoConfig) -> None:
    """Two reference datasets and their catalog (``datasets.yaml``):

    - ``demo_broad``: an image folder (THINGS layout ``<concept>/<i>.png``) with all three
      visual kinds in the pool's proportions: it covers the demo pool broadly; it carries
      synthetic NSD-like responses (``broad_responses.npz``) for the neural-target analyses;
    - ``demo_narrow``: an HDF5 array (NSD layout, dataset ``imgBrick``, uint8 N×64×64×3) of
      clipart with one palette only: it covers a small corner of the pool.
    """
    import h5py

    n = config.reference_images
    broad = root / "reference" / "broad"
    for i in range(n):
        kind = KINDS[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        h, w = (int(x) for x in rng.integers(config.min_side, config.max_side + 1, size=2))
        img = (
            _photo(rng, h, w)
            if kind == "photo"
            else _clipart(rng, h, w)
            if kind == "clipart"
            else _text(rng, h, w, "REFERENCE")
        )
        (broad / kind).mkdir(parents=True, exist_ok=True)
        img.save(broad / kind / f"{i:04d}.png")
    _synthetic_responses(broad, root / "reference" / "broad_responses.npz", rng)
    narrow = np.zeros((n, 64, 64, 3), np.uint8)
    for i in range(n):
        img = Image.new("RGB", (64, 64), (230, 230, 230))
        r = int(rng.integers(10, 24))
        cx, cy = (int(v) for v in rng.integers(r, 64 - r, size=2))
        ImageDraw.Draw(img).ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 30, 30))
        narrow[i] = np.asarray(img)
    (root / "reference").mkdir(exist_ok=True)
    with h5py.File(root / "reference" / "narrow.hdf5", "w") as f:
        f.create_dataset("imgBrick", data=narrow, chunks=(16, 64, 64, 3))
    _imagenet_like(root, rng, config)
    (root / "datasets.yaml").write_text(
        "# Reference datasets of the demo (see laionlab/io/reference.py for the format)\n"
        "datasets:\n"
        "  demo_broad:\n"
        "    kind: image_folder\n"
        "    path: reference/broad\n"
        '    glob: "*/*.png"\n'
        "    description: all visual kinds of the demo pool (broad coverage)\n"
        "    responses: reference/broad_responses.npz\n"
        "  demo_narrow:\n"
        "    kind: hdf5\n"
        "    path: reference/narrow.hdf5\n"
        "    dataset: imgBrick\n"
        "    description: red discs only (narrow coverage)\n"
        "  demo_imagenet_val:\n"
        "    kind: image_folder\n"
        "    path: reference/imagenet_val\n"
        '    glob: "*/*.jpg"\n'
        '    description: "labelled photos of the demo\'s ILSVRC classes (ImageNet-val layout <wnid>/<image>)"\n'
        "  demo_imagenet_captions:\n"
        "    kind: parquet\n"
        "    path: reference/imagenet_captions.parquet\n"
        "    image_column: path\n"
        "    label_column: wnid\n"
        "    caption_column: caption\n"
        '    description: "the same photos with captions (ImageNet-Captions layout: path, caption, wnid)"\n'
        "# Retrieval targets (seed 003, see laionlab/swat/targets.py)\n"
        "targets:\n"
        "  demo_target:\n"
        "    metrics: demo_target_metrics.json\n"
        "    fewshot_dataset: demo_imagenet_val\n"
        "    fewshot_labels: {" + ", ".join(f"{w}: {i}" for i, w in enumerate(DEMO_CLASSES)) + "}\n"
        "    description: the eight demo classes, synonyms = their ILSVRC lemmas (REAL metrics format)\n"
    )
    _target_metrics(root)
    with open(root / "datasets.yaml", "a") as f:
        f.write(
            "# Models compared by seed 002 (see laionlab/repsim/models.py): tiny, randomly initialised\n"
            "models:\n"
            "  clip_tiny_vit:\n    kind: open_clip\n    model: laionlab-tiny\n    objective: image-text\n"
            "  clip_tiny_conv:\n    kind: open_clip\n    model: laionlab-tiny-conv\n    objective: image-text\n"
            "  timm_test_vit:\n    kind: timm\n    model: test_vit\n    objective: supervised\n"
            "  timm_test_convnext:\n    kind: timm\n    model: test_convnext\n    objective: supervised\n"
        )


def _target_metrics(root: Path) -> None:
    """``demo_target_metrics.json`` in REAL/SWAT's metrics format: class id → name,
    alternates (synonym → count; here the ILSVRC lemmas of each demo class), most_common_name."""
    synsets = ilsvrc_synsets()
    lemmas = dict(zip(synsets["wnid"], synsets["lemmas"].to_list()))
    metrics = {
        str(i): {
            "name": lemmas[w][0],
            "most_common_name": lemmas[w][0],
            "alternates": {lemma: 0 for lemma in lemmas[w]},
        }
        for i, w in enumerate(DEMO_CLASSES)
    }
    (root / "demo_target_metrics.json").write_text(json.dumps(metrics, indent=1))


def _imagenet_like(root: Path, rng: np.random.Generator, config: DemoConfig) -> None:
    """``reference/imagenet_val/<wnid>/<i>.jpg``: ``reference_per_class`` tinted photos of each
    demo class (the role of ILSVRC-2012 val in LAIONet), and ``imagenet_captions.parquet``
    giving each of them a caption and its wnid (the role of ImageNet-Captions)."""
    synsets = ilsvrc_synsets()
    first_lemma = dict(zip(synsets["wnid"], synsets["name"]))
    rows = []
    for wnid, colour in DEMO_CLASSES.items():
        folder = root / "reference" / "imagenet_val" / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(config.reference_per_class):
            h, w = (int(x) for x in rng.integers(config.min_side, config.max_side + 1, size=2))
            path = folder / f"{i:04d}.jpg"
            _tinted(_photo(rng, h, w), colour).save(path, quality=90)
            template = CAPTION_TEMPLATES["photo"][int(rng.integers(len(CAPTION_TEMPLATES["photo"])))]
            rows.append({"path": str(path), "caption": template.format(lemma=first_lemma[wnid]), "wnid": wnid})
    pl.DataFrame(rows).write_parquet(root / "reference" / "imagenet_captions.parquet")


def build_demo(root: str | Path, config: DemoConfig = DemoConfig()) -> DemoManifest:
    """Write the demo under ``root``: ``laion_parts/part-0000k.parquet``, ``images/``,
    ``demo_labels.parquet`` (URL → visual kind, for training a photo classifier) and two
    reference datasets with their catalog ``datasets.yaml``.

    Returns a manifest (also written to ``root/manifest.json``) listing the parts, the row
    index of each deliberately broken row and the rows flagged NSFW.
    """
    root = Path(root).resolve()
    if config.n_parts < 1 or config.rows_per_part < 10:
        raise ValueError(
            f"DemoConfig needs n_parts >= 1 and rows_per_part >= 10, got {config.n_parts}, {config.rows_per_part}"
        )
    rng = np.random.default_rng(config.seed)
    synsets = ilsvrc_synsets()
    lemmas = [(lemma, wnid) for wnid, group in zip(synsets["wnid"], synsets["lemmas"].to_list()) for lemma in group]
    by_wnid = dict(zip(synsets["wnid"], synsets["lemmas"].to_list()))
    class_lemmas = {wnid: by_wnid[wnid] for wnid in DEMO_CLASSES}
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "laion_parts").mkdir(parents=True, exist_ok=True)
    manifest = DemoManifest(root=str(root), config=asdict(config))
    label_rows = []
    sample_id = 1_000_000
    for p in range(config.n_parts):
        part = f"part-{p:05d}"
        rows = []
        n = config.rows_per_part
        broken = {"missing_file": 0, "not_an_image": 1, "truncated_jpeg": 2, "empty_caption": 3}
        nsfw_rows = set(rng.choice(np.arange(4, n), size=config.nsfw_per_part, replace=False))
        for i in range(n):
            kind = KINDS[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
            if rng.random() < DEMO_CLASS_SHARE:
                wnid = list(DEMO_CLASSES)[int(rng.integers(len(DEMO_CLASSES)))]
                lemma = class_lemmas[wnid][int(rng.integers(len(class_lemmas[wnid])))]
            else:
                lemma, wnid = lemmas[int(rng.integers(len(lemmas)))]
            if rng.random() < 0.15:
                caption = FILLER_CAPTIONS[int(rng.integers(len(FILLER_CAPTIONS)))]
            else:
                templates = CAPTION_TEMPLATES[kind]
                caption = templates[int(rng.integers(len(templates)))].format(lemma=lemma)
            h, w = (int(x) for x in rng.integers(config.min_side, config.max_side + 1, size=2))
            fmt = "JPEG" if kind == "photo" else "PNG"
            path = root / "images" / part / f"{i:05d}.{'jpg' if fmt == 'JPEG' else 'png'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind == "photo":
                img = _photo(rng, h, w)
                if wnid in DEMO_CLASSES:
                    img = _tinted(img, DEMO_CLASSES[wnid])
            elif kind == "clipart":
                img = _clipart(rng, h, w)
            else:
                img = _text(rng, h, w, lemma.upper())
            data = _encode(img, fmt)
            if i == broken["not_an_image"]:
                data = b"<html><body>404 not found</body></html>"
            elif i == broken["truncated_jpeg"]:
                data = _encode(img, "JPEG")[:200]
                path = path.with_suffix(".jpg")
            if i == broken["empty_caption"]:
                caption = ""
            if i != broken["missing_file"]:
                path.write_bytes(data)
                manifest.images += 1
            else:
                path = path.with_name(f"{i:05d}_missing.jpg")
            rows.append(
                {
                    "SAMPLE_ID": sample_id,
                    "URL": path.as_uri(),
                    "TEXT": caption,
                    "HEIGHT": h,
                    "WIDTH": w,
                    "LICENSE": LICENSES[int(rng.integers(len(LICENSES)))],
                    "NSFW": "NSFW" if i in nsfw_rows else ("UNSURE" if rng.random() < 0.05 else "UNLIKELY"),
                    "similarity": float(np.round(rng.uniform(0.28, 0.42), 6)),
                }
            )
            label_rows.append({"URL": path.as_uri(), "kind": kind, "is_photo": kind == "photo"})
            sample_id += 1
        frame = pl.DataFrame(
            rows,
            schema={
                "SAMPLE_ID": pl.Int64,
                "URL": pl.String,
                "TEXT": pl.String,
                "HEIGHT": pl.Int32,
                "WIDTH": pl.Int32,
                "LICENSE": pl.String,
                "NSFW": pl.String,
                "similarity": pl.Float64,
            },
        )
        frame.write_parquet(root / "laion_parts" / f"{part}.parquet")
        manifest.parts.append(part)
        manifest.broken_rows[part] = broken
        manifest.nsfw_rows[part] = sorted(int(x) for x in nsfw_rows)
    pl.DataFrame(label_rows).write_parquet(root / "demo_labels.parquet")
    _reference_sets(root, rng, config)
    (root / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
    return manifest
