"""Mixed weight scales at initialisation: is "half the weights at 0.5, half at 1.5" fine?

Left: the gradient norm of every layer's weights at initialisation, one colour per scheme (uniform
reference in black): measured (dots, geometric mean over seeds) and the mixed-scale mean field
(dashed, ``grad_norm_theory``: how the gradient changes from layer to layer, anchored at the readout's
measured gradient). Right: the forward signal q^l, measured (dots) and predicted (dashed). The legend
gives each scheme's predicted factor per layer, chi (geometric mean over layers), and how large its
hidden layers' gradients are against the uniform network's (measured, geometric mean over layers).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from plots.common import describe, geometric_mean_over_seeds, hold_first, run_config
from sweep.measure.predictions import add_mixed_predictions

SCHEME_DIMS = ("mix", "layer_scales")
COLOURS = ("black", "tab:red", "tab:orange", "tab:blue", "tab:purple", "tab:green", "tab:brown")


def shows_mixed_scales(ds: xr.Dataset) -> bool:
    """The figure applies: per-layer gradients of a sweep over ``mix`` or ``layer_scales``."""
    return "layer" in ds.dims and bool(set(SCHEME_DIMS) & set(ds.dims))


def scheme_label(mix: str, layer_scales: str, model: dict) -> str:
    """A scheme in words, e.g. "50% of units x0.5, the rest x1.5" or "layers x0.5, x1.5, ... in turn"."""
    parts = []
    if mix != "none":
        what = "units" if mix == "units" else "weight entries"
        fraction, a, b = model["mix_fraction"], model["mix_scale_a"], model["mix_scale_b"]
        parts.append(rf"{fraction:.0%} of {what} $\times${a:g}, the rest $\times${b:g}")
    pattern = layer_scales.split()
    if set(pattern) - {"1", "1.0"}:
        parts.append("layers " + ", ".join(rf"$\times${s}" for s in pattern) + ", ... in turn")
    return " + ".join(parts) if parts else r"uniform (every weight $\times$1)"


def _schemes(ds: xr.Dataset) -> list[tuple[dict, str, str]]:
    """(selection, mix, layer_scales) of every scheme in the Dataset, the uniform one first."""
    model = run_config(ds)["model"]
    mixes = [str(v) for v in ds["mix"].values] if "mix" in ds.dims else [str(model.get("mix", "none"))]
    patterns = (
        [str(v) for v in ds["layer_scales"].values]
        if "layer_scales" in ds.dims
        else [str(model.get("layer_scales", "1"))]
    )
    out = []
    for pattern in patterns:
        for mix in mixes:
            where = {d: v for d, v in (("mix", mix), ("layer_scales", pattern)) if d in ds.dims}
            out.append((where, mix, pattern))
    uniform = [s for s in out if scheme_label(s[1], s[2], model).startswith("uniform")]
    return uniform + [s for s in out if s not in uniform]


def mixed_scales_figure(ds: xr.Dataset) -> Figure:
    """Two panels (module docstring). Needs a ``mix`` or ``layer_scales`` dim; seeds: geometric mean;
    other swept dims held at their first value."""
    if "grad_norm_theory" not in ds:
        ds = add_mixed_predictions(ds)
    config = run_config(ds)
    model = config["model"]
    keep = (*SCHEME_DIMS, "layer")
    grad = hold_first(geometric_mean_over_seeds(ds["grad_norm"].isel(step=0)), keep)
    theory = hold_first(geometric_mean_over_seeds(ds["grad_norm_theory"]), keep)
    q = hold_first(ds["q_layer"].mean("seed") if "seed" in ds["q_layer"].dims else ds["q_layer"], keep)
    q_theory = hold_first(ds["q_layer_theory"], (*keep, "seed")).pipe(hold_first, keep)
    chi = hold_first(ds["chi_mean"], SCHEME_DIMS)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), constrained_layout=True)
    schemes = _schemes(ds)
    hidden = slice(2, int(model["depth"]))  # layers 2..L: both neighbours are hidden layers
    reference = np.log(grad.sel(schemes[0][0]).sel(layer=hidden))
    for (where, mix, pattern), colour in zip(schemes, COLOURS, strict=False):
        uniform = not where or (mix == "none" and not set(pattern.split()) - {"1", "1.0"})
        width = 2.2 if uniform else 1.3
        label = rf"{scheme_label(mix, pattern, model)}: $\chi$ = {float(chi.sel(where)):.3g}/layer"
        if not uniform:
            level = float(np.exp((np.log(grad.sel(where).sel(layer=hidden)) - reference).mean()))
            label += rf", gradients $\times${level:.2g} uniform's"
        measured = grad.sel(where).dropna("layer")
        left.semilogy(measured["layer"], measured, "o-", ms=3.5, lw=width * 0.5, color=colour, label=label)
        predicted = theory.sel(where).dropna("layer")
        left.semilogy(predicted["layer"], predicted, "--", lw=width, color=colour, alpha=0.8)
        signal = q.sel(where).dropna("layer")
        right.semilogy(signal["layer"], signal, "o", ms=3.5, color=colour)
        signal_theory = q_theory.sel(where).dropna("layer")
        right.semilogy(signal_theory["layer"], signal_theory, "--", lw=width, color=colour, alpha=0.8)
    left.plot([], [], "k--", label="mean field (dashed; anchored at the readout layer)")
    left.set_xlabel("layer l (input side left; L+1 = readout)")
    left.set_ylabel(r"gradient norm $\|\partial \mathcal{L}/\partial W^l\|_F$ at initialisation")
    left.set_title("backward: dots measured, dashed mean field", fontsize=9)
    right.set_xlabel("layer l (L+1 = logits)")
    right.set_ylabel(r"forward signal $q^l$ = mean squared pre-activation")
    right.set_title("forward: dots measured, dashed mean field (from the inputs)", fontsize=9)
    fig.legend(*left.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=8)
    fig.suptitle(
        rf"Mixed weight scales, depth {model['depth']}, $\sigma_w^2$ = {model['sigma_w2']:g}, "
        rf"$\sigma_b^2$ = {model['sigma_b2']:g}: {describe(ds)}",
        fontsize=10,
    )
    return fig
