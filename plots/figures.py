"""Draw every figure a results Dataset supports into a folder (PNG and PDF)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure

from plots.gradients import gradient_norms_figure
from plots.phase_diagram import phase_diagram_figure
from plots.signal import signal_propagation_figure
from plots.training import training_curves_figure

# name -> (figure function, dims the Dataset must have)
FIGURES: dict[str, tuple[Callable[[xr.Dataset], Figure], tuple[str, ...]]] = {
    "phase_diagram": (phase_diagram_figure, ("sigma_w2", "depth")),
    "gradient_norms": (gradient_norms_figure, ("layer",)),
    "training_curves": (training_curves_figure, ("step",)),
    "signal_propagation": (signal_propagation_figure, ("sigma_w2", "layer")),
}


def draw_all(ds: xr.Dataset, folder: str | Path) -> list[Path]:
    """Write each applicable figure as NAME.png and NAME.pdf under ``folder``; return the PNG paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (make, needs) in FIGURES.items():
        if not all(dim in ds.dims for dim in needs):
            continue
        fig = make(ds)
        for suffix in (".png", ".pdf"):
            fig.savefig(folder / f"{name}{suffix}", dpi=120)
        plt.close(fig)
        written.append(folder / f"{name}.png")
    return written
