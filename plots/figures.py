"""Draw every figure a results Dataset supports into a folder: PNG, and PDF when asked (``sweep plot
--pdf``; a figure's PDF costs about as much as its PNG), with the theory curves they draw kept beside
them (``plots.theory_curves``: the next drawing reads them instead of compiling the theory). The
standard figures are laid out once (``plots.layout``), not by constrained layout each time they are
drawn. Measured on 2 busy cores, ``sweep plot DIR`` of a run's standard four figures in a fresh process:
about 0.6 s of drawing after 1.5 s of imports (JAX, xarray, matplotlib) when the curves are kept, 2-3 s
more when they are not (the theory's programs compile, or load from JAX's compilation cache)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.cnn import cnn_depth_figure, fourier_modes_figure, shows_cnn_depth, shows_fourier_modes
from plots.common import THEORY_POINTS
from plots.correlation import correlation_maps_figure, order_chaos_theory_figure
from plots.gradients import gradient_norms_figure
from plots.init_schemes import init_schemes_figure
from plots.layout import DPI
from plots.mixed_scales import mixed_scales_figure, shows_mixed_scales
from plots.normalisation import (
    normalisation_depth_figure,
    normalisation_growth_figure,
    shows_normalisation_depth,
    shows_normalisation_growth,
)
from plots.phase_diagram import phase_diagram_figure
from plots.residual import (
    residual_gradients_figure,
    residual_trainability_figure,
    shows_residual_gradients,
    shows_residual_trainability,
)
from plots.signal import signal_propagation_figure
from plots.spectra import SPECTRA_FIGURES
from plots.theory_curves import CURVES, kept_in
from plots.training import training_curves_figure
from plots.vanishing import vanishing_figure
from sweep.theory.mean_field import chi_1, xi_c

Applies = Callable[[xr.Dataset], bool]

# zlib level 3 instead of Pillow's 6: the same pixels, 10 ms less a figure, files within a few % in size
SAVE_OPTIONS = {"png": {"pil_kwargs": {"compress_level": 3}}}


def needs(
    *dims: str, trained: bool = False, without: tuple[str, ...] = (), mean_field: bool = False
) -> Applies:
    """A test: the Dataset has all ``dims``, none of ``without``, (if ``trained``) recorded steps > 0,
    and (if ``mean_field``) the fully connected mean field's predictions (``chi_1``): the figures drawn
    around that theory apply only to architectures that follow it."""

    def applies(ds: xr.Dataset) -> bool:
        has_training = ds.sizes.get("step", 0) > 1
        return (
            all(d in ds.dims for d in dims)
            and not any(d in ds.dims for d in without)
            and (has_training or not trained)
            and ("chi_1" in ds or not mean_field)
        )

    return applies


# name -> (figure function, when it applies)
FIGURES: dict[str, tuple[Callable[[xr.Dataset], Figure], Applies]] = {
    # over several architectures it would take the best of them under the MLP's theory curve: those
    # runs get residual_trainability (one panel per architecture) instead
    "phase_diagram": (phase_diagram_figure, needs("sigma_w2", "depth", trained=True, without=("arch",))),
    "gradient_norms": (gradient_norms_figure, needs("layer", trained=True, without=("sigma_b2",))),
    "training_curves": (training_curves_figure, needs("step", trained=True)),
    "signal_propagation": (
        signal_propagation_figure,
        needs("sigma_w2", "layer", without=("sigma_b2", "activation"), mean_field=True),
    ),
    "correlation_maps": (
        correlation_maps_figure,
        needs("sigma_w2", "sigma_b2", "pair", without=("activation",), mean_field=True),
    ),
    "order_chaos": (
        order_chaos_theory_figure,
        needs("sigma_w2", "sigma_b2", without=("activation",), mean_field=True),
    ),
    "vanishing_exploding": (
        vanishing_figure,
        needs("sigma_w2", "layer", trained=True, without=("depth",), mean_field=True),
    ),
    "init_schemes": (init_schemes_figure, needs("sigma_w2", "depth", "init", trained=True)),
    "mixed_scales": (mixed_scales_figure, shows_mixed_scales),
    "residual_gradients": (residual_gradients_figure, shows_residual_gradients),
    "residual_trainability": (residual_trainability_figure, shows_residual_trainability),
    "normalisation_growth": (normalisation_growth_figure, shows_normalisation_growth),
    "normalisation_depth": (normalisation_depth_figure, shows_normalisation_depth),
    "cnn_depth": (cnn_depth_figure, shows_cnn_depth),
    "fourier_modes": (fourier_modes_figure, shows_fourier_modes),
} | {name: (make, needs(*dims)) for name, (make, dims) in SPECTRA_FIGURES.items()}


def draw_all(ds: xr.Dataset, folder: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write each applicable figure as NAME.png (and NAME.pdf if ``formats`` has "pdf") under ``folder``;
    return the PNG paths."""
    from sweep.storage.store import write_with  # atomic: a full disk leaves no half-written figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    # what is alive now (modules, the results) outlives the drawing: frozen, the garbage collector's passes
    # skip it (they were 10% of the standard figures' time); a caller's own freeze is left to the caller
    frozen = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        with kept_in(folder / CURVES):  # the theory curves of an earlier drawing of these results
            for name, (make, applies) in FIGURES.items():
                if not applies(ds):
                    continue
                fig = make(ds)
                try:
                    for suffix in dict.fromkeys(("png", *formats)):
                        save = partial(fig.savefig, format=suffix, dpi=DPI, **SAVE_OPTIONS.get(suffix, {}))
                        write_with(folder / f"{name}.{suffix}", save)
                finally:
                    plt.close(fig)
                written.append(folder / f"{name}.png")
    finally:
        if not frozen:
            gc.unfreeze()
    return written


def prepare(experiment: object) -> None:
    """Compile the mean-field curves the figures of ``experiment`` (a ``sweep.config.Experiment``) will
    draw: chi_1 (signal propagation) and xi_c (phase diagram) at ``THEORY_POINTS`` values of sigma_w2,
    when the activation and sigma_b2 are fixed. Compiling them is most of those figures' time; ``sweep
    run`` calls this (and so imports matplotlib) in a thread while its first program compiles, on a core
    that is otherwise idle. Only shapes matter for what is compiled; the values are placeholders."""
    swept = {axis.field for axis in experiment.axes}
    if {"model.activation", "model.sigma_b2"} & swept or "model.sigma_w2" not in swept:
        return
    model = experiment.to_toml_dict()["model"]
    sigma_w2 = np.linspace(1.0, 2.0, THEORY_POINTS)
    sigma_b2 = np.full_like(sigma_w2, float(model["sigma_b2"]))
    chi_1(str(model["activation"]), sigma_w2, sigma_b2)
    if "model.depth" in swept:
        xi_c(str(model["activation"]), sigma_w2, sigma_b2)
