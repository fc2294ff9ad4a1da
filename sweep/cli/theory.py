"""``sweep theory``: mean-field numbers for one activation and bias variance, as a table or JSON.

    sweep theory --activation tanh --sigma-b2 0.05
    sweep theory --activation erf --sigma-b2 0.1 --sigma-w2 1 2 3 --json
    sweep theory --activation tanh --sigma-b2 0.05 --plot phase.png
    sweep theory --arch resnet --activation relu --sigma-b2 0 --depth 50 --branch-scale 0.5
    sweep theory --norm batch --activation relu --sigma-b2 0 --batch-size 8 32 128
    sweep theory --norm layer --activation tanh --sigma-b2 0.05
    sweep theory --arch cnn --activation tanh --sigma-b2 1e-4 --sigma-w2 1.086 --kernel-size 3 --positions 40

The main CLI (``sweep.cli``) builds the sub-parser with ``add_theory_arguments`` and calls ``run_theory``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import jax
import numpy as np

from sweep.nets.activations import ACTIVATIONS

DEFAULT_SIGMA_W2 = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
DEFAULT_BATCH_SIZES = (4, 8, 16, 32, 64, 128, 256)
FIELDS = ("q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c")
PLOT_SUFFIXES = (".png", ".pdf")


def add_theory_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sweep theory`` options to ``parser`` (its own sub-parser)."""
    parser.add_argument(
        "--activation", required=True, metavar="NAME", help=f"one of: {', '.join(sorted(ACTIVATIONS))}"
    )
    parser.add_argument("--sigma-b2", type=float, required=True, metavar="X", help="bias variance σ_b² ≥ 0")
    parser.add_argument(
        "--sigma-w2",
        type=float,
        nargs="+",
        default=None,
        metavar="A",
        help=f"weight variances σ_w² > 0 to tabulate (default: {' '.join(map(str, DEFAULT_SIGMA_W2))})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object {"activation", "sigma_b2", "critical_sigma_w2", "points": [{"sigma_w2", '
        '"sigma_b2", "q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c"}, ...]}; '
        "infinities (and a missing critical point) are null",
    )
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="FILE", help="also save the phase diagram (.png or .pdf)"
    )
    resnet = parser.add_argument_group("residual networks (--arch resnet; sweep.theory.residual)")
    parser.add_argument(
        "--arch", choices=("mlp", "resnet", "cnn"), default="mlp", help="mean field of (default mlp)"
    )
    resnet.add_argument("--depth", type=int, default=10, metavar="L", help="blocks (default 10)")
    resnet.add_argument("--branch", choices=("full", "reduced"), default="full")
    resnet.add_argument("--branch-scale", type=float, default=1.0, metavar="A", help="alpha (default 1)")
    resnet.add_argument("--branch-scaling", choices=("none", "inv_sqrt_depth"), default="none")
    cnn = parser.add_argument_group("Gaussian-kernel CNNs, circular padding (--arch cnn; sweep.theory.cnn)")
    cnn.add_argument("--kernel-size", type=int, default=3, metavar="K", help="taps per axis, odd (default 3)")
    cnn.add_argument("--positions", type=int, default=40, metavar="N", help="positions per axis (default 40)")
    cnn.add_argument("--ndim", type=int, choices=(1, 2), default=1, help="spatial axes (default 1)")
    norm = parser.add_argument_group("normalised networks (--norm; sweep.theory.normalisation)")
    norm.add_argument(
        "--norm",
        choices=("none", "layer", "batch"),
        default="none",
        help="layer: the layer-norm mean field per sigma_w2; batch: the gradient growth per batch size",
    )
    norm.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        default=list(DEFAULT_BATCH_SIZES),
        metavar="B",
        help=f"--norm batch: minibatch sizes (default: {' '.join(map(str, DEFAULT_BATCH_SIZES))})",
    )


def _error(message: str) -> int:
    print(f"sweep theory: error: {message}", file=sys.stderr)
    return 2


def _json_number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def theory_report(activation: str, sigma_b2: float, sigma_w2: list[float]) -> dict:
    """The numbers ``sweep theory`` prints, as a JSON-ready dict (float64; inf and NaN become None)."""
    from sweep.theory import mean_field as mf

    with jax.enable_x64(True):
        critical = float(mf.critical_sigma_w2(activation, np.float64(sigma_b2)))
        w2 = np.asarray(sigma_w2, dtype=np.float64)
        result = mf.mean_field(activation, w2, np.full_like(w2, sigma_b2))
        columns = {name: np.asarray(getattr(result, name), dtype=np.float64) for name in FIELDS}
    points = [
        {"sigma_w2": float(w), "sigma_b2": float(sigma_b2)}
        | {name: _json_number(columns[name][i]) for name in FIELDS}
        for i, w in enumerate(w2)
    ]
    return {
        "activation": activation,
        "sigma_b2": float(sigma_b2),
        "critical_sigma_w2": _json_number(critical),
        "points": points,
    }


RESIDUAL_FIELDS = ("p_first", "q_last", "p_last", "grad_ratio")


def residual_report(args: argparse.Namespace, sigma_w2: list[float]) -> dict:
    """``sweep theory --arch resnet``: per sigma_w2 the stream's mean square after the embedding
    (``p_first``, inputs of mean square 1) and after the last block (``p_last``), the last block's branch
    pre-activation ``q_last`` and the gradient norm of block 1 over block L (``grad_ratio``)."""
    from sweep.theory.residual import residual_profile

    alpha = args.branch_scale / (math.sqrt(args.depth) if args.branch_scaling == "inv_sqrt_depth" else 1.0)
    profile = residual_profile(
        args.activation, np.asarray(sigma_w2), args.sigma_b2, alpha, args.depth, args.branch
    )
    columns = {
        "p_first": profile.p_stream[:, 0],
        "q_last": profile.q_layer[:, -2],
        "p_last": profile.p_stream[:, -1],
        "grad_ratio": profile.grad_ratio,
    }
    points = [
        {"sigma_w2": float(w), "sigma_b2": float(args.sigma_b2)}
        | {name: _json_number(float(columns[name][i])) for name in RESIDUAL_FIELDS}
        for i, w in enumerate(sigma_w2)
    ]
    keys = ("activation", "depth", "branch", "branch_scale", "branch_scaling")
    return {"arch": "resnet", **{key: getattr(args, key) for key in keys}, "alpha": alpha, "points": points}


def _print_residual_table(report: dict) -> None:
    print(
        f"resnet, {report['branch']} branch, activation {report['activation']}, depth {report['depth']}, "
        f"a = {report['alpha']:.6g}, sigma_b2 = {report['points'][0]['sigma_b2']:g}"
    )
    _print_columns(("sigma_w2", *RESIDUAL_FIELDS), report["points"])
    print("(grad_ratio: |dL/dW| of block 1 over block L at initialisation; inf or NaN: not predicted)")


def cnn_report(args: argparse.Namespace, sigma_w2: list[float]) -> dict:
    """``sweep theory --arch cnn``: per sigma_w2 chi_c and the depth scale of a few spatial Fourier modes
    f (along the first axis) of a Gaussian-kernel CNN, ``xi_f = -1 / log|chi_c lambda(f)|``
    (``sweep.theory.cnn``; f = 0 is xi_c, and every mode of a delta-orthogonal CNN has xi_c)."""
    from sweep.theory.cnn import footprint_eigenvalues, mode_depth_scales
    from sweep.theory.mean_field import mean_field

    n, k, ndim = args.positions, args.kernel_size, args.ndim
    modes = sorted({f for f in (0, 1, 2, n // 8, n // 4, n // 2) if 0 <= f < n})
    lam = footprint_eigenvalues(k, n, ndim)
    pick = [(f, *(0,) * (ndim - 1)) for f in modes]
    xi = mode_depth_scales(args.activation, np.asarray(sigma_w2), args.sigma_b2, k, n, ndim)
    chi_c = np.asarray(mean_field(args.activation, np.asarray(sigma_w2), args.sigma_b2).chi_c)
    points = [
        {"sigma_w2": float(w), "chi_c": _json_number(float(chi_c[i]))}
        | {f"xi_f{f[0]}": _json_number(float(xi[(i, *f)])) for f in pick}
        for i, w in enumerate(sigma_w2)
    ]
    lambdas = {f"f{f[0]}": float(lam[f]) for f in pick}
    keys = ("activation", "sigma_b2", "kernel_size", "positions", "ndim")
    return {"arch": "cnn", **{key: getattr(args, key) for key in keys}, "lambda": lambdas, "points": points}


def _print_cnn_table(report: dict) -> None:
    lam = ", ".join(f"f = {name[1:]}: {value:.4g}" for name, value in report["lambda"].items())
    print(
        f"cnn, Gaussian {report['kernel_size']}-tap kernels, {report['positions']} circular positions per "
        f"axis ({report['ndim']}-D), activation {report['activation']}, sigma_b2 = {report['sigma_b2']:g}"
    )
    print(f"footprint eigenvalues lambda(f): {lam}")
    _print_columns(("sigma_w2", "chi_c", *[f"xi_f{name[1:]}" for name in report["lambda"]]), report["points"])
    print("(xi_fK: depth scale of Fourier mode f = K, -1/log|chi_c lambda(f)|; delta-orthogonal: all xi_c)")


LAYER_NORM_FIELDS = ("chi_1", "c_star", "chi_c", "xi_c")


def layer_norm_report(activation: str, sigma_b2: float, sigma_w2: list[float]) -> dict:
    """``sweep theory --norm layer``: chi_1 (the squared gradient's factor per layer), c*, chi_c and xi_c
    of a layer-normalised MLP per sigma_w2 (q is 1 at every layer), and its critical sigma_w2."""
    from sweep.theory.normalisation import layer_norm_critical_sigma_w2, layer_norm_mean_field

    points = [
        {"sigma_w2": float(w), "sigma_b2": float(sigma_b2)}
        | {k: _json_number(v) for k, v in layer_norm_mean_field(activation, w, sigma_b2)._asdict().items()}
        for w in sigma_w2
    ]
    critical = layer_norm_critical_sigma_w2(activation, sigma_b2)
    return {
        "norm": "layer",
        "activation": activation,
        "sigma_b2": sigma_b2,
        "critical_sigma_w2": _json_number(critical),
        "points": points,
    }


def batch_norm_report(activation: str, batch_sizes: list[int]) -> dict:
    """``sweep theory --norm batch``: the squared gradient norm's growth per layer toward the input at
    each minibatch size (any sigma_w2, sigma_b2); ``exact`` False: the large-batch limit."""
    from sweep.theory.normalisation import batch_norm_growth

    points = []
    for b in batch_sizes:
        growth = batch_norm_growth(activation, b)
        points.append({"batch_size": b, "growth": _json_number(growth.growth), "exact": growth.exact})
    return {"norm": "batch", "activation": activation, "points": points}


def _print_norm_table(report: dict) -> None:
    if report["norm"] == "batch":
        print(f"batch norm, activation {report['activation']}: squared gradient norm's growth per layer")
        _print_columns(("batch_size", "growth"), report["points"])
        if not all(p["exact"] for p in report["points"]):
            print("(a nonlinear activation's growth at finite batch sizes has no closed form: this is its")
            print(" large-batch limit E[phi'(z)^2] / Var phi(z); linear nets: (B - 2) / (B - 3) exactly)")
        return
    critical = report["critical_sigma_w2"]
    where = f"activation {report['activation']}, sigma_b2 = {report['sigma_b2']:g}"
    print(f"layer norm, {where} (q = 1 at every layer)")
    print(f"critical sigma_w2 (chi_1 = 1): {'none' if critical is None else f'{critical:.6g}'}")
    _print_columns(("sigma_w2", *LAYER_NORM_FIELDS), report["points"])
    print("(chi_1: the squared gradient's factor per layer; < 1 ordered, > 1 chaotic)")
    if any(p[name] is None for p in report["points"] for name in LAYER_NORM_FIELDS):
        print("(inf: no finite depth scale)")


def _format(x: float | None) -> str:
    return "inf" if x is None else f"{x:.6g}"


def _print_columns(header: tuple[str, ...], points: list[dict]) -> None:
    """One right-aligned column per name of ``header``, one row per point."""
    rows = [[_format(p[name]) for name in header] for p in points]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _print_table(report: dict) -> None:
    critical = report["critical_sigma_w2"]
    print(f"activation {report['activation']}, sigma_b2 = {report['sigma_b2']:g}")
    print(f"critical sigma_w2 (chi_1 = 1): {'none' if critical is None else f'{critical:.6g}'}")
    _print_columns(("sigma_w2", *FIELDS), report["points"])
    print("(chi_1 < 1: ordered phase, > 1: chaotic)")
    if any(p[name] is None for p in report["points"] for name in FIELDS):
        print("(inf: no finite fixed point or depth scale)")


def run_theory(args: argparse.Namespace) -> int:
    """Run ``sweep theory`` for parsed ``args``; returns the exit code (2 with one stderr line on bad input).

    Prints the critical σ_w² and a table of (σ_w², q*, c*, χ₁, χ_c, ξ_q, ξ_c), or with ``--json`` exactly one
    JSON object ``{"activation", "sigma_b2", "critical_sigma_w2", "points": [...]}`` where every point has
    ``sigma_w2, sigma_b2, q_star, c_star, chi_1, chi_c, xi_q, xi_c`` and infinities are encoded as null
    (``critical_sigma_w2`` is null where no critical point exists). ``--plot FILE`` also saves the phase
    diagram (``plots.order_chaos``); its suffix (.png or .pdf) picks the format.
    """
    if args.activation not in ACTIVATIONS:
        return _error(
            f"unknown --activation {args.activation!r}; choose from {', '.join(sorted(ACTIVATIONS))}"
        )
    if not (math.isfinite(args.sigma_b2) and args.sigma_b2 >= 0):
        return _error(f"--sigma-b2 must be a finite number >= 0, got {args.sigma_b2}")
    sigma_w2 = list(DEFAULT_SIGMA_W2 if args.sigma_w2 is None else args.sigma_w2)
    bad = [w for w in sigma_w2 if not (math.isfinite(w) and w > 0)]
    if bad:
        return _error(f"--sigma-w2 values must be finite and > 0, got {bad[0]}")
    if args.plot is not None and args.plot.suffix.lower() not in PLOT_SUFFIXES:
        return _error(f"--plot {str(args.plot)!r} must end in .png or .pdf")
    norm = getattr(args, "norm", "none")
    if norm != "none":
        if getattr(args, "arch", "mlp") != "mlp":
            return _error("--norm tabulates the normalised MLP's theory; leave --arch at mlp")
        if args.plot is not None:
            return _error("--plot draws the plain MLP's phase diagram; it has no --norm form")
        if norm == "batch" and any(b < 1 for b in args.batch_size):
            return _error(f"--batch-size values must be at least 1, got {min(args.batch_size)}")
        if norm == "layer":
            report = layer_norm_report(args.activation, args.sigma_b2, sigma_w2)
        else:
            report = batch_norm_report(args.activation, args.batch_size)
        if args.json:
            print(json.dumps(report))
        else:
            _print_norm_table(report)
        return 0
    if getattr(args, "arch", "mlp") == "resnet":
        if args.depth < 1:
            return _error(f"--depth must be at least 1, got {args.depth}")
        if not (math.isfinite(args.branch_scale) and args.branch_scale >= 0):
            return _error(f"--branch-scale must be a finite number >= 0, got {args.branch_scale}")
        if args.plot is not None:
            return _error("--plot draws the MLP's phase diagram; it has no --arch resnet form")
        report = residual_report(args, sigma_w2)
        if args.json:
            print(json.dumps(report))
        else:
            _print_residual_table(report)
        return 0

    if getattr(args, "arch", "mlp") == "cnn":
        if args.kernel_size < 1 or args.kernel_size % 2 == 0:
            return _error(f"--kernel-size must be an odd positive number of taps, got {args.kernel_size}")
        if args.positions < 1:
            return _error(f"--positions must be at least 1, got {args.positions}")
        if args.plot is not None:
            return _error("--plot draws the MLP's phase diagram; it has no --arch cnn form")
        report = cnn_report(args, sigma_w2)
        print(json.dumps(report)) if args.json else _print_cnn_table(report)
        return 0
    report = theory_report(args.activation, args.sigma_b2, sigma_w2)
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    if args.plot is not None:
        from plots.order_chaos import order_chaos_figure

        fig = order_chaos_figure(
            args.activation,
            sigma_b2_max=max(1.0, 2 * args.sigma_b2),
            mark=(sigma_w2, args.sigma_b2),
            mark_label=r"tabulated $\sigma_w^2$",
        )
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=120)
        print(f"figure: {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0
