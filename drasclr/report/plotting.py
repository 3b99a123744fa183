"""The one plotting toolkit of drasclr: a headless matplotlib figure, PNG to a file or to bytes.

Every figure of the project (preprocessing QC, evaluation figures, the report) is made with
:func:`new_figure` and written with :func:`save_png` or :func:`png_bytes`; no module touches
pyplot or the global backend.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drasclr.fsutil import atomic_path

__all__ = ["colours", "new_figure", "png_bytes", "save_png"]


def new_figure(
    width: float, height: float, *, dpi: float = 110.0, constrained: bool = True
) -> Figure:
    """A figure on its own Agg canvas (thread-safe, no global backend).

    Args:
        width: inches.
        height: inches.
        dpi: figure resolution.
        constrained: use matplotlib's constrained layout.
    """
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained" if constrained else None)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: float | None = None) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (``dpi``: default the figure's); returns it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi if dpi is not None else "figure")
    return path


def png_bytes(fig: Figure, dpi: float) -> bytes:
    """PNG bytes of ``fig`` without the software tag, so identical inputs give identical bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def colours(n: int) -> list[Any]:
    """``n`` distinct colours (tab10, cycled)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]
