"""Helpers that turn library results into Dagster metadata (tables, plots)."""

from __future__ import annotations

import polars as pl
from dagster import MetadataValue


def markdown_table(frame: pl.DataFrame, max_rows: int = 50) -> MetadataValue:
    """A small frame as a Markdown table the UI renders."""
    if frame.height == 0:
        return MetadataValue.md("_(none)_")
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join(
        "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |\n" for row in shown.rows()
    )
    more = f"\n_{frame.height - max_rows} more rows_" if frame.height > max_rows else ""
    return MetadataValue.md(header + body + more)


def png_markdown(fig, path: str | None = None) -> MetadataValue:
    """A matplotlib figure as a Markdown image the UI shows inline (also saved to ``path``)."""
    import base64

    from laionlab.figures import figure_png

    data = figure_png(fig, path)
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(data).decode()})")


def value_label(value: float) -> str:
    """A number as a plot label: whole numbers as integers ("19", "1,204"), others to four
    significant digits ("0.0625", "12.35"), so small shares do not round to "0.1"."""
    value = float(value)
    if value != value:  # NaN
        return "n/a"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def jpeg_markdown(fig, path: str | None = None) -> MetadataValue:
    """A matplotlib figure of photographs (a gallery) as an inline Markdown JPEG (saved to ``path``)."""
    import base64

    from laionlab.figures import figure_jpeg

    data = figure_jpeg(fig, path)
    return MetadataValue.md(f"![gallery](data:image/jpeg;base64,{base64.b64encode(data).decode()})")


def gallery_metadata(fig, path: str, rows, images) -> dict:
    """A contact sheet's metadata: the sheet (``jpeg_markdown``, saved to ``path``), the images
    shown and those missing (tiles whose uid was not in the shards: failed downloads)."""
    uids = {tile.uid for _, tiles in rows for tile in tiles}
    return {
        "gallery": jpeg_markdown(fig, path),
        "images_shown": len(uids & set(images)),
        "images_missing": len(uids - set(images)),
    }


def nothing_to_show(reason: str) -> dict:
    """A gallery's metadata when there is nothing to show (no duplicates found): ``applicable:
    False`` and why, instead of a failure that would stop "Materialize all"."""
    return {"applicable": MetadataValue.bool(False), "reason": reason}


def bar_plot(labels: list[str], values: list[float], title: str, ylabel: str, path: str | None = None) -> MetadataValue:
    """Bars with their values written on them (``value_label``); x labels slanted and anchored
    at their end so long names do not overlap, the figure widened with the longest label."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [str(label) for label in labels]
    longest = max((len(label) for label in labels), default=1)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(labels) + 2 + 0.04 * longest), 3.4 + 0.05 * min(longest, 40)))
    positions = list(range(len(labels)))
    ax.bar(positions, values, color="#4c72b0")
    ax.set_xticks(positions, labels, rotation=35 if len(labels) < 12 else 60, ha="right", rotation_mode="anchor")
    ax.set_title("\n".join(textwrap.wrap(title, 70)))
    ax.set_ylabel(ylabel)
    for i, v in enumerate(values):
        ax.annotate(value_label(v), (i, v), ha="center", va="bottom", fontsize=8)
    ax.margins(y=0.12)
    return png_markdown(fig, path)


def heatmap(matrix, labels: list[str], title: str, path: str | None = None) -> MetadataValue:
    """A square matrix of values in [min(0, min), 1] with its labels and the values written in
    the cells; the title as a wrapped figure title (an axes title is cut by the colour bar)."""
    import textwrap

    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    side = max(3.5, 1.2 + 0.6 * len(labels))
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    im = ax.imshow(matrix, vmin=min(0.0, float(np.nanmin(matrix))), vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("\n".join(textwrap.wrap(title, int(9 * (side + 1.0)))), fontsize=9)
    return png_markdown(fig, path)


def line_plot(
    x: list,
    series: dict[str, list],
    xlabel: str,
    title: str,
    path: str | None = None,
    logx: bool = True,
    ylabel: str = "accuracy",
) -> MetadataValue:
    """One line per series over shared x values, as an inline Markdown image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, ys in series.items():
        ax.plot(x, ys, marker="o", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return png_markdown(fig, path)


def histogram(
    values,
    xlabel: str,
    title: str,
    path: str | None = None,
    bins: int = 30,
    series: dict | None = None,
    mark: tuple[float, str] | None = None,
    ylabel: str | None = None,
) -> MetadataValue:
    """A histogram of ``values`` (or, with ``series``, one normalised histogram per named
    array), with an optional vertical line ``mark = (x, label)`` (e.g. a threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, vals in (series or {"": values}).items():
        # float64: float32 similarities that differ only in the last bits cannot be cut into bins
        vals = np.asarray(vals, dtype=np.float64)
        ax.hist(vals[np.isfinite(vals)], bins=bins, alpha=0.6, label=label or None, density=series is not None)
    if mark is not None:
        ax.axvline(mark[0], color="#c44e52", linestyle="--", label=mark[1])
    if series or mark is not None:
        ax.legend()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel or ("density" if series else "count"))
    ax.set_title(title)
    return png_markdown(fig, path)


def quantile_table(values, name: str, quantiles=(0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)) -> MetadataValue:
    """The distribution of ``values`` as a small table (the companion of a histogram)."""
    import numpy as np

    vals = np.asarray(values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return markdown_table(pl.DataFrame({"quantile": [], name: []}))
    labels = {0.0: "min", 0.5: "median", 1.0: "max"}
    return markdown_table(
        pl.DataFrame(
            {
                "quantile": [labels.get(q, f"p{round(q * 100)}") for q in quantiles],
                name: np.quantile(vals, quantiles).round(4),
            }
        )
    )


def largest_clusters(sizes, n: int = 10) -> MetadataValue:
    """The ``n`` largest clusters (id, rows) as a table."""
    import numpy as np

    sizes = np.asarray(sizes)
    order = np.argsort(-sizes, kind="stable")[:n]
    return markdown_table(pl.DataFrame({"cluster": order, "rows": sizes[order]}))


def scatter_plot(
    x, y, xlabel: str, ylabel: str, title: str, path: str | None = None, logx: bool = False
) -> MetadataValue:
    """One point per (x, y) pair (e.g. one per cluster), as an inline Markdown image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.scatter(x, y, s=8, color="#4c72b0", alpha=0.7)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return png_markdown(fig, path)
