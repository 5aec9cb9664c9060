"""Figures as files: a matplotlib figure rendered to PNG bytes, and kept beside an output when
a path is given (the plots every pipeline shows in its metadata). matplotlib is imported by
whoever made the figure; this module imports it only when called."""

from __future__ import annotations

import io

from laionlab.io.files import atomic_write_bytes

PNG_DPI = 90


def figure_jpeg(fig, path: str | None = None, dpi: int = PNG_DPI, quality: int = 80) -> bytes:
    """As :func:`figure_png`, as a JPEG: photographs (galleries) are a fifth of the PNG's size."""
    return _figure_bytes(fig, path, dpi, "jpeg", {"quality": quality})


def figure_png(fig, path: str | None = None, dpi: int = PNG_DPI) -> bytes:
    """``fig`` (a matplotlib ``Figure``) as PNG bytes at ``dpi``, cropped to what it draws;
    the figure is closed. With ``path`` (a local path or fsspec URI) the PNG is also written
    there atomically (a reader never sees half a file)."""
    return _figure_bytes(fig, path, dpi, "png", None)


def _figure_bytes(fig, path: str | None, dpi: int, fmt: str, pil_kwargs: dict | None) -> bytes:
    if not hasattr(fig, "savefig"):
        raise ValueError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    if dpi <= 0:
        raise ValueError(f"dpi must be > 0, got {dpi}")
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight", pil_kwargs=pil_kwargs)
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        atomic_write_bytes(path, data)
    return data
