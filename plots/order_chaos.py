"""The ordered/chaotic phase diagram of mean-field theory over (σ_w², σ_b²).

A heatmap of ξ_c (or χ₁) on a log colour scale, with the order-to-chaos line χ₁ = 1 on top. Pure theory:
nothing here trains or reads results. Figures are built with ``matplotlib.figure.Figure`` (no pyplot, no
GUI backend); save them with ``fig.savefig(path)``, whose suffix picks PNG or PDF.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from sweep.theory import mean_field as mf

_XI_MAX = 1e3  # top of the ξ_c colour scale (ξ_c diverges on the critical line)
_TITLES = {
    "xi_c": r"correlation depth scale $\xi_c$",
    "chi_1": r"$\chi_1$ (mean squared singular value of one layer's Jacobian)",
}


def order_chaos_figure(
    activation: mf.ActivationLike,
    sigma_b2_max: float = 2.0,
    sigma_w2_range: tuple[float, float] | None = None,
    resolution: tuple[int, int] = (200, 120),
    quantity: str = "xi_c",
    mark: tuple[Sequence[float], float | Sequence[float]] | None = None,
    mark_label: str = "requested",
) -> Figure:
    """Phase diagram of ``activation``: ``quantity`` ("xi_c" or "chi_1") over σ_w² (x) and σ_b² (y).

    ``sigma_w2_range`` defaults to (0.1, max(4, 1.5 × critical σ_w² at ``sigma_b2_max``, marked points));
    ``resolution`` is the number of (σ_w², σ_b²) grid points; ``mark = (sigma_w2_values, sigma_b2)`` draws
    those points (every pair if ``sigma_b2`` is a sequence too), each labelled with its σ_w², in the legend
    as ``mark_label``. ξ_c is infinite on the critical line; the colour scale stops at 1000. Grey: no finite
    q* (the length diverges, e.g. relu with σ_w² > 2).
    """
    if quantity not in _TITLES:
        raise ValueError(f"quantity must be one of {sorted(_TITLES)}, got {quantity!r}")
    b2 = np.linspace(0.0, sigma_b2_max, resolution[1])
    boundary = mf.order_chaos_boundary(activation, b2)
    line = np.asarray(boundary.sigma_w2, dtype=np.float64)
    if sigma_w2_range is None:
        top = np.nanmax(line) if np.isfinite(line).any() else 2.0
        marked = max(mark[0], default=0.0) if mark is not None else 0.0  # σ_w² values of the marks
        sigma_w2_range = (0.1, float(max(4.0, 1.5 * top, 1.05 * marked)))
    w2 = np.linspace(*sigma_w2_range, resolution[0])
    grid_w2, grid_b2 = np.meshgrid(w2, b2)
    result = mf.mean_field(activation, grid_w2, grid_b2)
    values = np.asarray(getattr(result, quantity), dtype=np.float64)
    no_fixed_point = ~np.isfinite(np.asarray(result.q_star))

    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.add_subplot()
    finite = values[np.isfinite(values) & (values > 0) & ~no_fixed_point]
    if quantity == "chi_1":
        span = max(float(np.max(np.abs(np.log10(finite)))), 1e-3) if finite.size else 1.0
        norm = LogNorm(10**-span, 10**span)
        cmap = colormaps["RdBu_r"]
    else:  # ξ_c = inf on the critical line: saturate at the top of the scale
        top = min(float(finite.max()), _XI_MAX) if finite.size else _XI_MAX
        norm = LogNorm(min(max(float(finite.min()), 1e-2), top / 10) if finite.size else 0.1, top)
        cmap = colormaps["viridis"]
        values = np.minimum(values, top)
    shown = np.ma.masked_where(no_fixed_point, values)
    mesh = ax.pcolormesh(w2, b2, shown, norm=norm, cmap=cmap.with_extremes(bad="0.8"), shading="auto")
    fig.colorbar(mesh, ax=ax, label=_TITLES[quantity])
    ax.plot(
        line, b2, color="white" if quantity == "xi_c" else "black", lw=2, label=r"$\chi_1 = 1$ (critical)"
    )
    if mark is not None:
        b2s = [float(b) for b in np.atleast_1d(mark[1])]
        points = [(float(w), b) for b in b2s for w in mark[0]]
        ax.plot(*zip(*points, strict=True), "o", color="red", mec="white", ms=6, label=mark_label)
        for w, b in points:
            ax.annotate(
                f"{w:g}",
                (w, b),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=7,
                color="white" if quantity == "xi_c" else "black",
            )
    ax.set_xlim(*sigma_w2_range)
    ax.set_ylim(0.0, sigma_b2_max)
    ax.set_xlabel(r"$\sigma_w^2$ (weight variance)")
    ax.set_ylabel(r"$\sigma_b^2$ (bias variance)")
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
    ax.set_title(f"{name}: ordered (left) and chaotic (right) phases")
    ax.legend(loc="upper left", fontsize="small")
    return fig
