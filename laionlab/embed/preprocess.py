"""open_clip's image preprocessing as uint8 tensor operations, and JPEG decoding on a device.

open_clip's eval transform (``open_clip.create_model_and_transforms``'s third value) works on
PIL images: ``Resize`` (shorter side to the model's size, bicubic with antialias; SigLIP
configs squash to a square, bilinear), ``CenterCrop``, convert to RGB, ``ToTensor`` (float32
in [0, 1]) and ``Normalize``. Done that way in DataLoader workers, each image costs a PIL
resize (0.59 ms for 256 -> 224 on one core here), two float passes and 600 KB of pickled
float32 between processes.

``TensorPreprocess`` reads the sizes, the interpolation and the mean/std off that transform
and runs the same steps on tensors:

- ``resize_crop``: uint8 in, uint8 out. On the CPU, torch's uint8 antialiased resize
  reproduces PIL's to within 1-2 grey levels on < 1 % of the pixels (PIL rounds its
  intermediate pass to uint8, torch keeps more precision) at 0.17 ms an image; on a CUDA
  device (after nvJPEG) the same filter runs in float and is rounded to whole levels.
- ``normalise``: a batch of uint8 images -> the model's dtype, ``(x / 255 - mean) / std``,
  on the model's device after a 150 KB (uint8) instead of 600 KB copy.

A transform with other steps (``ResizeKeepRatio``, ``CenterCropOrPad``, training
augmentation) is not translated: ``from_transform`` returns None and the caller keeps the
PIL path. ``decode_jpegs`` decodes a batch of JPEG files on a CUDA device with nvJPEG
(TorchCodec's ``decode_jpeg`` where installed, else torchvision's, deprecated since 0.29).
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

# transform steps that only convert the image (PIL -> RGB -> tensor): nothing to translate
_CONVERSIONS = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb", "PILToTensor"}


@dataclass(frozen=True)
class TensorPreprocess:
    """The eval transform of an open_clip model, on uint8 tensors (CHW, RGB).

    resize: torchvision ``Resize`` size: an int scales the shorter side to it (the longer
    side to ``int(resize * long / short)``), a pair ``(h, w)`` squashes to exactly that.
    crop: ``(h, w)`` of the centre crop (None: no crop; torchvision pads a too-small image
    with zeros, so do we). interpolation: ``bicubic`` or ``bilinear``, antialiased as
    torchvision does for PIL images. mean/std: per-channel ``Normalize`` values.
    """

    resize: int | tuple[int, int]
    crop: tuple[int, int] | None
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_transform(cls, transform) -> TensorPreprocess | None:
        """Read an open_clip eval transform (a torchvision ``Compose``); None when it has a step
        this class does not reproduce exactly (the caller then keeps the PIL path)."""
        from torchvision import transforms as T

        steps = getattr(transform, "transforms", None)
        if steps is None:
            return None
        resize = crop = interpolation = mean = std = None
        for step in steps:
            name = getattr(step, "__name__", type(step).__name__)
            if type(step) is T.Resize and resize is None and crop is None:
                if step.max_size is not None or step.antialias is False:
                    return None
                interpolation = step.interpolation.value
                if interpolation not in ("bicubic", "bilinear"):
                    return None
                size = step.size
                resize = size if isinstance(size, int) else (size[0] if len(size) == 1 else (size[0], size[1]))
            elif type(step) is T.CenterCrop and crop is None:
                crop = (step.size[0], step.size[1])
            elif type(step) is T.Normalize and mean is None:
                mean, std = tuple(float(m) for m in step.mean), tuple(float(s) for s in step.std)
            elif name not in _CONVERSIONS:
                return None
        if resize is None or mean is None or len(mean) != 3 or len(std) != 3:
            return None
        return cls(resize, crop, interpolation, mean, std)

    @property
    def output_size(self) -> tuple[int, int]:
        """(h, w) of every preprocessed image."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.resize, int):
            raise ValueError("a shorter-side resize without a crop gives images of varying shape")
        return self.resize

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) after the resize step (torchvision's rule for an int size, max_size None)."""
        if not isinstance(self.resize, int):
            return self.resize
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.resize * long / short)
        return (new_long, self.resize) if width <= height else (self.resize, new_long)

    def resize_crop(self, image: torch.Tensor) -> torch.Tensor:
        """A CHW image or NCHW batch (uint8, or float holding 0..255) -> uint8 at ``output_size``.

        uint8 on the CPU takes torch's uint8 antialiased kernels (PIL's filter); elsewhere
        (CUDA has no uint8 antialiased kernel) float, rounded back to whole levels.
        """
        height, width = image.shape[-2:]
        size = self.resized_size(height, width)
        if size != (height, width):
            x = image if image.ndim == 4 else image[None]
            if not (x.dtype == torch.uint8 and x.device.type == "cpu"):
                x = x.float()
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
            x = x if x.dtype == torch.uint8 else x.round_().clamp_(0, 255).to(torch.uint8)
            image = x if image.ndim == 4 else x[0]
        return self._center_crop(image)

    def _center_crop(self, image: torch.Tensor) -> torch.Tensor:
        if self.crop is None:
            return image.contiguous()
        (height, width), (ch, cw) = image.shape[-2:], self.crop
        if ch > height or cw > width:  # torchvision pads with zeros first
            pad_h, pad_w = max(ch - height, 0), max(cw - width, 0)
            image = F.pad(image, (pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2))
            height, width = image.shape[-2:]
        top, left = int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0))
        return image[..., top : top + ch, left : left + cw].contiguous()

    def normalise(self, images: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 (or 0..255 float) NCHW -> ``(x / 255 - mean) / std`` in ``dtype``, on the
        tensor's device (float32 arithmetic, as ToTensor + Normalize). ``out``: a float32
        buffer of the same shape to write into (a fresh 40 MB tensor per batch costs more in
        page faults than the arithmetic)."""
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1) * 255.0
        scale = 1.0 / (torch.tensor(self.std, device=images.device).view(1, 3, 1, 1) * 255.0)
        x = images.float() if out is None else out.copy_(images)
        return x.sub_(mean).mul_(scale).to(dtype)


def decode_rgb(data: bytes, prep: TensorPreprocess | None = None, draft: bool = True) -> torch.Tensor:
    """Encoded image bytes -> uint8 CHW RGB, resized and cropped by ``prep`` when given.

    PIL decodes (as webdataset's ``pilrgb`` and open_clip do: ``convert("RGB")``). With
    ``draft`` a JPEG at least twice the size the resize needs is decoded at 1/2, 1/4 or 1/8
    scale by libjpeg's DCT scaling (``Image.draft``; never below the needed size), which
    makes large photos several times cheaper to decode; the bicubic resize then starts
    from the reduced image, so pixels differ slightly from a full decode.
    """
    with Image.open(io.BytesIO(data)) as image:
        if draft and prep is not None and image.format == "JPEG":
            height, width = prep.resized_size(image.height, image.width)
            image.draft("RGB", (width, height))
        rgb = np.asarray(image.convert("RGB"))
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
    return prep.resize_crop(tensor) if prep is not None else tensor.contiguous()


def is_plain_jpeg(data: bytes) -> bool:
    """True for a baseline/progressive JPEG in RGB or greyscale (what nvJPEG decodes to RGB as
    PIL does); CMYK/YCCK files, other formats and unreadable headers are False."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format == "JPEG" and image.mode in ("RGB", "L")
    except Exception:  # noqa: BLE001 - an unreadable header is simply "not for the device"
        return False


@functools.cache
def _jpeg_decoder():
    """TorchCodec's batched ``decode_jpeg`` (the gpu extra), else torchvision's."""
    try:
        from torchcodec.decoders import decode_jpeg

        return lambda data, device: decode_jpeg(data, mode="RGB", device=device)
    except Exception as exc:  # noqa: BLE001 - not installed, or built for another torch
        log.info("TorchCodec unavailable (%s: %s); decoding JPEGs with torchvision.io", type(exc).__name__, exc)
        from torchvision.io import ImageReadMode, decode_jpeg

        return lambda data, device: decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def decode_jpegs(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode 1-D uint8 tensors of JPEG files on ``device`` in one batched call (nvJPEG on
    CUDA): a list of uint8 CHW RGB tensors on the device. Raises for the whole batch when one
    file is bad (the caller retries file by file)."""
    return list(_jpeg_decoder()(list(data), device))


def device_jpeg_decoding(device: torch.device) -> str | None:
    """Why JPEGs cannot be decoded on ``device`` (None when they can): tried once on a
    generated image, so a missing nvJPEG or a CUDA mismatch shows here, not mid-part."""
    if device.type != "cuda":
        return f"{device} is not a CUDA device"
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 60)).save(buf, format="JPEG")
    try:
        decode_jpegs([torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)], device)
    except Exception as exc:  # noqa: BLE001 - any failure means "use the CPU"
        return f"{type(exc).__name__}: {exc}"
    return None
