"""Draw every figure a results Dataset supports into a folder (PNG and PDF)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import xarray as xr
from matplotlib.figure import Figure

from plots.correlation import correlation_maps_figure, order_chaos_theory_figure
from plots.gradients import gradient_norms_figure
from plots.init_schemes import init_schemes_figure
from plots.mixed_scales import mixed_scales_figure, shows_mixed_scales
from plots.phase_diagram import phase_diagram_figure
from plots.signal import signal_propagation_figure
from plots.spectra import SPECTRA_FIGURES
from plots.training import training_curves_figure
from plots.vanishing import vanishing_figure

Applies = Callable[[xr.Dataset], bool]


def needs(*dims: str, trained: bool = False, without: tuple[str, ...] = ()) -> Applies:
    """A test: the Dataset has all ``dims``, none of ``without``, and (if ``trained``) recorded steps > 0."""

    def applies(ds: xr.Dataset) -> bool:
        has_training = ds.sizes.get("step", 0) > 1
        return (
            all(d in ds.dims for d in dims)
            and not any(d in ds.dims for d in without)
            and (has_training or not trained)
        )

    return applies


# name -> (figure function, when it applies)
FIGURES: dict[str, tuple[Callable[[xr.Dataset], Figure], Applies]] = {
    "phase_diagram": (phase_diagram_figure, needs("sigma_w2", "depth", trained=True)),
    "gradient_norms": (gradient_norms_figure, needs("layer", trained=True, without=("sigma_b2",))),
    "training_curves": (training_curves_figure, needs("step", trained=True)),
    "signal_propagation": (signal_propagation_figure, needs("sigma_w2", "layer", without=("sigma_b2",))),
    "correlation_maps": (
        correlation_maps_figure,
        needs("sigma_w2", "sigma_b2", "pair", without=("activation",)),
    ),
    "order_chaos": (order_chaos_theory_figure, needs("sigma_w2", "sigma_b2", without=("activation",))),
    "vanishing_exploding": (vanishing_figure, needs("sigma_w2", "layer", trained=True, without=("depth",))),
    "init_schemes": (init_schemes_figure, needs("sigma_w2", "depth", "init", trained=True)),
    "mixed_scales": (mixed_scales_figure, shows_mixed_scales),
} | {name: (make, needs(*dims)) for name, (make, dims) in SPECTRA_FIGURES.items()}


def draw_all(ds: xr.Dataset, folder: str | Path) -> list[Path]:
    """Write each applicable figure as NAME.png and NAME.pdf under ``folder``; return the PNG paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (make, applies) in FIGURES.items():
        if not applies(ds):
            continue
        fig = make(ds)
        from functools import partial

        from sweep.store import write_with  # atomic: a full disk leaves no half-written figure

        try:
            for suffix in (".png", ".pdf"):
                write_with(folder / f"{name}{suffix}", partial(fig.savefig, format=suffix[1:], dpi=120))
        finally:
            plt.close(fig)
        written.append(folder / f"{name}.png")
    return written
