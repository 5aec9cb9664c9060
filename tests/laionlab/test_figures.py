"""laionlab.figures: a matplotlib figure as PNG bytes, kept at a path when given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from laionlab.figures import figure_png  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figure():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    return fig


def test_figure_png_returns_png_bytes_and_closes_the_figure():
    fig = _figure()
    data = figure_png(fig)
    assert data.startswith(PNG_MAGIC) and len(data) > 100
    assert not plt.fignum_exists(fig.number)


def test_figure_png_writes_the_same_bytes_to_the_path(tmp_path):
    path = tmp_path / "plots" / "line.png"
    data = figure_png(_figure(), str(path))
    assert path.read_bytes() == data
    assert not list(path.parent.glob(".*"))  # no temporary file left beside it


def test_figure_png_dpi_sets_the_size():
    small, large = figure_png(_figure(), dpi=50), figure_png(_figure(), dpi=200)
    width = lambda png: int.from_bytes(png[16:20], "big")  # noqa: E731 - the IHDR width
    assert width(large) > 3 * width(small)


@pytest.mark.parametrize(
    "fig, dpi, match", [("not a figure", 90, "fig: expected a matplotlib Figure"), (None, 0, "dpi")]
)
def test_figure_png_names_the_bad_input(fig, dpi, match):
    with pytest.raises(ValueError, match=match):
        figure_png(_figure() if fig is None else fig, dpi=dpi)
