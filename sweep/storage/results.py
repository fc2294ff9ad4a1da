"""Per-variant outputs -> one labelled ``xarray.Dataset`` over the sweep grid.

Dimensions: one per swept field (named after its last component: ``sigma_w2``, ``depth``, ``seed``, ...),
then ``step`` (the union of all groups' recorded steps) and ``layer`` (1..L+1; NaN beyond a shallower
net's readout). Variables:

=================  ==========================  ===================================================
name               dims                        meaning
=================  ==========================  ===================================================
train_loss         (*grid, step)               cross-entropy on the fixed training subset
train_accuracy     (*grid, step)               accuracy on the fixed training subset
test_accuracy      (*grid, step)               accuracy on the test set
grad_norm          (*grid, step, layer)        Frobenius norm of dLoss/dW^l on the training subset
q_layer            (*grid, layer)              mean squared pre-activation at initialisation
c_layer            (*grid, layer, pair)        correlation of two inputs' pre-activations at init
mode_power         (*grid, layer, mode)        networks with positions (CNNs): power of each spatial
                                               Fourier mode of the covariance across positions at init
diverged           (*grid)                     loss or parameters became non-finite (then frozen)
diverged_step      (*grid)                     step whose update went non-finite (-1: never)
completed          (*grid)                     this variant's results are present
=================  ==========================  ===================================================

Measurements after divergence are NaN.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import xarray as xr

from sweep.config import FIELDS, Experiment, axis_name, new_field

# name -> trailing dims after the grid dims
PER_VARIANT_DIMS: dict[str, tuple[str, ...]] = {
    "train_loss": ("step",),
    "train_accuracy": ("step",),
    "test_accuracy": ("step",),
    "grad_norm": ("step", "layer"),
    "q_layer": ("layer",),
    "c_layer": ("layer", "pair"),
    "mode_power": ("layer", "mode"),
    "diverged": (),
    "diverged_step": (),
    # only when [measure] jacobian = true (NaN at steps where the spectrum was not measured)
    "jacobian_log10_sv": ("step", "jacobian_input", "sv"),
    "jacobian_mean_sq_sv": ("step",),
    "jacobian_max_sv": ("step",),
    "jacobian_min_sv": ("step",),
    "jacobian_log10_condition": ("step",),
    "jacobian_eig_variance_rel": ("step",),
}
# what every run records (the Jacobian's variables only when asked): an empty grid still has these
ALWAYS_RECORDED = tuple(
    name for name in PER_VARIANT_DIMS if not name.startswith("jacobian_") and name != "mode_power"
)
FILL = {"diverged": False, "diverged_step": -1}
DTYPES = {"diverged": bool, "diverged_step": np.int32}

Part = tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]  # (grid_index [V, n_axes], outputs, steps)

# CF-style ``long_name`` of every variable and coordinate a results Dataset can hold (all are pure
# numbers, so none has ``units``). Swept fields are labelled from their config field name.
LONG_NAMES: dict[str, str] = {
    "train_loss": "cross-entropy loss on the fixed training subset",
    "train_accuracy": "accuracy on the fixed training subset",
    "test_accuracy": "accuracy on the test set",
    "grad_norm": "Frobenius norm of the loss gradient with respect to weight matrix W^l",
    "q_layer": "mean squared pre-activation q^l at initialisation",
    "c_layer": "correlation c^l of two inputs' pre-activations at initialisation",
    "mode_power": "power of spatial Fourier mode f of the covariance across positions (off its diagonal) at "
    "initialisation",
    "diverged": "loss or parameters became non-finite (the variant was then frozen)",
    "diverged_step": "step whose update went non-finite (-1: never)",
    "completed": "this variant's results are present",
    "jacobian_log10_sv": "log10 of the singular values of the input-output Jacobian dx^L/dx^1",
    "jacobian_mean_sq_sv": "mean squared singular value of the input-output Jacobian",
    "jacobian_max_sv": "largest singular value of the input-output Jacobian",
    "jacobian_min_sv": "smallest singular value of the input-output Jacobian",
    "jacobian_log10_condition": "log10 of the input-output Jacobian's condition number",
    "jacobian_eig_variance_rel": "variance over squared mean of the eigenvalues of J J^T",
    "q_star": "mean-field fixed point q* of the pre-activation length map",
    "c_star": "mean-field fixed point c* of the correlation map",
    "chi_1": "mean-field chi_1 = sigma_w2 E[phi'(h)^2] at q*",
    "xi_c": "mean-field depth scale of correlations xi_c = -1/log chi_c",
    "step": "optimizer step (0: at initialisation)",
    "layer": "weight matrix index: hidden layers 1..L, then the readout L+1",
    "pair": "index of the input pair whose correlation is measured",
    "jacobian_input": "index of the training input at which the Jacobian is measured",
    "sv": "singular value index, largest first",
    "mode": "spatial Fourier mode f of the body's positions, numpy.fft order (flattened for 2-D)",
}
SWEPT_NAMES = {"depth": "depth L (hidden layers)", "width": "width (units per hidden layer)"}


def label(ds: xr.Dataset, names: dict[str, str] | None = None) -> xr.Dataset:
    """Give every variable and coordinate of ``ds`` without one a ``long_name`` (in place; returns
    ``ds``): from ``names`` first (a theory's own variables), then ``LONG_NAMES``, then the field (an
    architecture's new field: its ``doc``, else its name)."""
    fields = {axis_name(field): field for field in FIELDS}
    known = LONG_NAMES | (names or {})
    for name in [*ds.data_vars, *ds.coords]:
        if "long_name" in ds[name].attrs:
            continue
        if name in known:
            ds[name].attrs["long_name"] = known[name]
        elif name in fields:  # a swept field: its dimension is named after it
            ds[name].attrs["long_name"] = SWEPT_NAMES.get(
                name, fields[name].replace(".", " ").replace("_", " ")
            )
        elif (declared := new_field(f"model.{name}")) is not None:  # an architecture's own field
            ds[name].attrs["long_name"] = declared.doc or f"model {name}".replace("_", " ")
        ds[name].attrs.pop("description", None)
    return ds


def assemble(
    experiment: Experiment, parts: Iterable[Part], attrs: dict[str, Any] | None = None
) -> xr.Dataset:
    """Scatter every part's per-variant outputs into grid-shaped arrays; absent variants stay NaN.

    Trailing axes other than ``step`` (layer, sv, ...) are padded with NaN to the longest part."""
    parts = list(parts)
    steps = np.unique(np.concatenate([p[2] for p in parts])) if parts else np.zeros(0, np.int64)
    names = [n for n in PER_VARIANT_DIMS if any(n in p[1] for p in parts)] or list(ALWAYS_RECORDED)
    sizes = {"step": len(steps)}
    for name in names:
        for axis, dim in enumerate(PER_VARIANT_DIMS[name]):
            if dim != "step":
                lengths = [p[1][name].shape[1 + axis] for p in parts if name in p[1]]
                sizes[dim] = max([sizes.get(dim, 0), *lengths])
    sizes.setdefault("layer", 0)
    grid_shape = experiment.shape
    arrays = {
        name: np.full(
            grid_shape + tuple(sizes[d] for d in PER_VARIANT_DIMS[name]),
            FILL.get(name, np.nan),
            DTYPES.get(name, np.float32),
        )
        for name in names
    }
    completed = np.zeros(grid_shape, bool)
    for grid_index, outputs, part_steps in parts:
        where = tuple(grid_index.T)  # selects this part's variants in the grid
        step_at = np.searchsorted(steps, part_steps)
        for name in names:
            if name not in outputs:
                continue
            dims, value = PER_VARIANT_DIMS[name], outputs[name]
            if "step" in dims:  # place this part's records at their positions on the common step axis
                full = np.full((len(value), len(steps), *value.shape[2:]), np.nan, np.float32)
                full[:, step_at] = value
                value = full
            pad = [(0, 0)] + [
                (0, 0) if d == "step" else (0, sizes[d] - n)
                for d, n in zip(dims, value.shape[1:], strict=True)
            ]
            if any(p[1] for p in pad):  # shallower or narrower nets: NaN beyond their own axes
                value = np.pad(value, pad, constant_values=np.nan)
            arrays[name][where] = value if where else value[0]  # no swept axes: a single variant
        completed[where] = True
    grid_dims = tuple(axis.name for axis in experiment.axes)
    data_vars = {name: (grid_dims + PER_VARIANT_DIMS[name], arrays[name]) for name in names}
    data_vars["completed"] = (grid_dims, completed)
    coords: dict[str, Any] = {axis.name: list(axis.values) for axis in experiment.axes}
    coords["step"] = steps
    coords["layer"] = np.arange(1, sizes["layer"] + 1)
    return label(xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {})))
