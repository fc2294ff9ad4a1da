"""Mean-field predictions beside the measurements, and how well they agree.

``add_predictions`` puts the theory's q*, c*, chi_1 and xi_c for every variant into a results Dataset
(so a user can plot measured against predicted without recomputing) and records the trainability
agreement score: the fraction of (sigma_w2, depth) cells where "trained" (final training accuracy
above ``measure.trained_accuracy``, seeds averaged) agrees with the rule "depth <= n * xi_c"
(``n = measure.xi_multiple``, default 6; Schoenholz et al. 2017).

Runs with mixed weight scales (``model.mix`` or ``model.layer_scales``) also get the mixed-scale mean
field (``sweep.theory.mixed_scales``): ``grad_norm_theory``, ``q_layer_theory``, ``chi_layer`` and
``chi_mean`` (see ``add_mixed_predictions``); q_star, chi_1 and xi_c stay those of the unmixed network.
Normalised MLPs (``model.norm``) get ``grad_growth_theory`` (``add_normalisation_predictions``) instead
of the plain network's q*, c*, chi_1 and xi_c, which do not describe them.
"""

from __future__ import annotations

import threading
import tomllib

import numpy as np
import xarray as xr

from sweep.config import Experiment, parse_layer_scales
from sweep.storage.results import label
from sweep.theory.mean_field import critical_sigma_w2, mean_field
from sweep.theory.mixed_scales import geometric_mean_chi, mixed_profile

PREDICTED = {"q_star": "q_star", "c_star": "c_star", "chi_1": "chi_1", "xi_c": "xi_c"}


def _config(ds: xr.Dataset) -> dict:
    return tomllib.loads(ds.attrs["config"])


def _field(ds: xr.Dataset, section: str, key: str) -> xr.DataArray:
    """A config field as a DataArray over the grid dims it varies along (a scalar if fixed)."""
    if key in ds.dims:
        return ds[key]
    return xr.DataArray(_config(ds)[section][key])


def final_value(da: xr.DataArray) -> xr.DataArray:
    """Each variant's value at its last finite step (groups may record different steps)."""
    values = np.moveaxis(da.values, da.get_axis_num("step"), -1)
    finite = np.isfinite(values)
    last = np.where(finite.any(-1), values.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1), 0)
    picked = np.take_along_axis(values, last[..., None], axis=-1)[..., 0]
    dims = [d for d in da.dims if d != "step"]
    return xr.DataArray(picked, dims=dims, coords={d: da.coords[d] for d in dims if d in da.coords})


def gradient_growth(grad_norm: xr.DataArray, skip: int = 3) -> xr.DataArray:
    """The measured growth per layer of the squared gradient norm toward the input: ``exp(-slope)`` of
    a least-squares line through ``log |dL/dW^l|^2`` over each variant's layers ``skip+1 .. n-skip`` (n:
    its finite layers; the hidden layers away from the input and the readout, whose gradients follow
    the data and the loss rather than the recursion); NaN where fewer than 3 remain. The grid's dims
    without ``layer``."""
    values = np.moveaxis(grad_norm.values, grad_norm.get_axis_num("layer"), -1).astype(np.float64)
    out = np.full(values.shape[:-1], np.nan)
    for index in np.ndindex(out.shape):
        g = values[index]
        n = int(np.sum(np.isfinite(g)))
        inner = g[skip : n - skip]
        if len(inner) >= 3 and np.all(inner > 0):
            out[index] = np.exp(-np.polyfit(np.arange(len(inner)), np.log(inner**2), 1)[0])
    dims = [d for d in grad_norm.dims if d != "layer"]
    coords = {d: grad_norm.coords[d] for d in dims if d in grad_norm.coords}
    return xr.DataArray(out, dims=dims, coords=coords)


def final_accuracy(ds: xr.Dataset, variable: str = "train_accuracy") -> xr.DataArray:
    """Accuracy at the end of training; diverged or missing variants count as chance (1 / n_classes)."""
    chance = 1.0 / float(ds.attrs.get("n_classes", 10))
    failed = ds["diverged"] | ~ds["completed"]
    return final_value(ds[variable]).where(~failed, chance)


def theory_of(arch: str) -> str | None:
    """The mean-field family architecture ``arch`` follows (``Architecture.theory``); None for none, or
    for an architecture that cannot be imported here (its results carry no predictions)."""
    from sweep.nets.contract import ArchitectureError, resolve

    try:
        return resolve(arch).theory
    except ArchitectureError:
        return None


def add_predictions(ds: xr.Dataset) -> xr.Dataset:
    """Add ``q_star``, ``c_star``, ``chi_1``, ``xi_c`` (grid dims they vary along) and, when the grid has
    sigma_w2 and depth, the attribute ``trainability_agreement``. Only variants whose architecture
    follows the MLP's mean field (``theory == "mlp"``) get them; a run of architectures without a
    theory gets none."""
    arch = _field(ds, "model", "arch")
    theories = {str(name): theory_of(str(name)) for name in np.unique(np.atleast_1d(arch.values))}
    plain = _field(ds, "model", "norm") == "none" if "norm" in _config(ds)["model"] else xr.DataArray(True)
    if not bool(plain.all()):
        ds = add_normalisation_predictions(ds)
    if "resnet" in theories.values():
        ds = add_residual_predictions(ds, {name for name, theory in theories.items() if theory == "resnet"})
    follows = xr.apply_ufunc(np.vectorize(lambda name: theories[str(name)] == "mlp", otypes=[bool]), arch)
    follows = follows & plain  # a normalised network follows its own theory (add_normalisation_predictions)
    if not bool(follows.any()):
        return ds
    ds = _add_mlp_predictions(ds)
    if not bool(follows.all()):  # model.arch swept over architectures with and without the theory
        for key in PREDICTED:
            ds[key] = ds[key].where(follows)
    score = agreement(ds)  # over the variants the theory describes
    if score is not None:
        ds.attrs["trainability_agreement"] = score
    return ds


def _add_mlp_predictions(ds: xr.Dataset) -> xr.Dataset:
    activation = _field(ds, "model", "activation")
    sigma_w2, sigma_b2 = _field(ds, "model", "sigma_w2"), _field(ds, "model", "sigma_b2")
    if activation.ndim == 0 and sigma_b2.ndim == 0:
        ds.attrs["critical_sigma_w2"] = float(critical_sigma_w2(str(activation.values), float(sigma_b2)))
    activation, sigma_w2, sigma_b2 = xr.broadcast(activation, sigma_w2, sigma_b2)
    out = _theory_on_grid(activation.values, sigma_w2.values, sigma_b2.values)
    ds = label(ds.assign({key: (sigma_w2.dims, out[key]) for key in PREDICTED}))
    if uses_mixed_scales(ds):
        ds = add_mixed_predictions(ds)
    return ds


MIXED_INPUTS = (
    ("model", "activation"),
    ("model", "sigma_w2"),
    ("model", "sigma_b2"),
    ("model", "width"),
    ("model", "depth"),
    ("model", "mix"),
    ("model", "mix_scale_a"),
    ("model", "mix_scale_b"),
    ("model", "mix_fraction"),
    ("model", "layer_scales"),
)


MIXED_PREDICTED = {
    "grad_norm_theory": "mixed-scale mean field: gradient norm per layer at init, anchored at the readout",
    "q_layer_theory": "mixed-scale mean field: mean squared pre-activation per layer at init",
    "chi_layer": "mixed-scale mean field: the factor chi^l the backward signal gains at layer l",
    "chi_mean": "mixed-scale mean field: geometric mean of chi^l over layers 1..L",
}


RESIDUAL_INPUTS = (
    "arch",
    "norm",
    "activation",
    "sigma_w2",
    "sigma_b2",
    "depth",
    "branch",
    "branch_scale",
    "branch_scaling",
)
RESIDUAL_PREDICTED = {
    "q_layer_theory": "residual mean field: mean square of each layer's tap at init (embed, blocks, logits)",
    "q_last_theory": "residual mean field: mean square of the last block's branch pre-activation, q^L",
    "grad_ratio_theory": "residual mean field: gradient norm of block 1 over block L at init",
}


def add_residual_predictions(ds: xr.Dataset, archs: set[str]) -> xr.Dataset:
    """The residual mean field (``sweep.theory.residual``) of every variant whose architecture is in
    ``archs``: ``q_layer_theory`` (*grid, layer), ``q_last_theory`` and ``grad_ratio_theory`` (*grid);
    NaN elsewhere."""
    from sweep.theory.residual import residual_profile

    grid = ds["completed"].dims
    shape = tuple(ds.sizes[d] for d in grid)
    fields = {
        key: xr.broadcast(_field(ds, "model", key), ds["completed"])[0].transpose(*grid).values
        for key in RESIDUAL_INPUTS
        if key in _config(ds)["model"] or key in ds.dims
    }
    q_input = float(ds.attrs.get("input_mean_square", 1.0))
    q_layer = np.full((*shape, ds.sizes["layer"]), np.nan)
    q_last, ratio = np.full(shape, np.nan), np.full(shape, np.nan)
    for index in np.ndindex(shape):
        v = {key: values[index].item() for key, values in fields.items()}
        if str(v["arch"]) not in archs or v.get("norm", "none") != "none":
            continue
        depth = int(v["depth"])
        alpha = float(v["branch_scale"]) / (
            np.sqrt(depth) if v["branch_scaling"] == "inv_sqrt_depth" else 1.0
        )
        profile = residual_profile(
            str(v["activation"]), v["sigma_w2"], v["sigma_b2"], alpha, depth, str(v["branch"]), q_input
        )
        q_layer[index][: depth + 2] = profile.q_layer
        q_last[index], ratio[index] = profile.q_layer[-2], profile.grad_ratio
    ds = ds.assign(
        q_layer_theory=((*grid, "layer"), q_layer),
        q_last_theory=(grid, q_last),
        grad_ratio_theory=(grid, ratio),
    )
    return label(ds, RESIDUAL_PREDICTED)


NORMALISATION_PREDICTED = {
    "grad_growth_theory": "normalisation mean field: growth per layer of the squared gradient norm toward "
    "the input at init (batch norm: (B-2)/(B-3) for linear nets, else its large-batch limit; "
    "layer norm: chi_1)",
}


def add_normalisation_predictions(ds: xr.Dataset) -> xr.Dataset:
    """``grad_growth_theory`` (*grid) of every normalised MLP (``sweep.theory.normalisation``): batch
    norm's growth at the variant's ``train.batch_size`` (the size of its measured minibatches), layer
    norm's chi_1; NaN for other variants (a normalised residual branch has no such theory here)."""
    from sweep.theory.normalisation import batch_norm_growth, layer_norm_mean_field

    grid = ds["completed"].dims
    inputs = [("model", "arch"), ("model", "norm"), ("model", "activation"), ("model", "sigma_w2")]
    inputs += [("model", "sigma_b2"), ("train", "batch_size")]
    values = {
        key: xr.broadcast(_field(ds, section, key), ds["completed"])[0].transpose(*grid).values
        for section, key in inputs
    }
    growth = np.full(ds["completed"].shape, np.nan)
    for index in np.ndindex(growth.shape):
        v = {key: array[index].item() for key, array in values.items()}
        if v["arch"] != "mlp" or v["norm"] == "none":
            continue
        if v["norm"] == "batch":
            growth[index] = batch_norm_growth(str(v["activation"]), int(v["batch_size"])).growth
        else:
            growth[index] = layer_norm_mean_field(str(v["activation"]), v["sigma_w2"], v["sigma_b2"]).chi_1
    return label(ds.assign(grad_growth_theory=(grid, growth)), NORMALISATION_PREDICTED)


def uses_mixed_scales(ds: xr.Dataset) -> bool:
    """Whether any variant has mixed weight scales (``model.mix`` or ``model.layer_scales``)."""
    model = _config(ds)["model"]
    mixes = np.atleast_1d(model.get("mix", "none"))
    patterns = np.atleast_1d(model.get("layer_scales", "1"))
    return bool(np.any(mixes != "none") or any(set(parse_layer_scales(str(p))) != {1.0} for p in patterns))


def add_mixed_predictions(ds: xr.Dataset) -> xr.Dataset:
    """The mixed-scale mean field of every variant (``sweep.theory.mixed_scales.mixed_profile``):

    - ``grad_norm_theory`` (*grid, layer): the gradient norm of every layer at initialisation,
      sqrt(E‖∂L/∂W^l‖²) from the one-example recursions, anchored at the variant's measured readout
      gradient (the theory says how the gradient changes from layer to layer, not the loss's gradient
      at the logits);
    - ``q_layer_theory`` (*grid, layer): the mean squared pre-activation over the units, from the
      inputs' mean square; ``chi_layer`` (*grid, layer): the factor χ^l of layers 1..L (NaN at the
      readout); ``chi_mean`` (*grid): their geometric mean, the factor per layer on average.
    """
    config = _config(ds)
    grid = ds["completed"].dims
    shape = tuple(ds.sizes[d] for d in grid)
    n_layers = ds.sizes["layer"]
    fields = {
        key: xr.broadcast(_field(ds, section, key), ds["completed"])[0].transpose(*grid)
        for section, key in MIXED_INPUTS
    }
    q_input = float(ds.attrs.get("input_mean_square", 1.0))
    input_dim = int(ds.attrs.get("input_dim", config["data"]["input_dim"]))
    readout = ds["grad_norm"].isel(step=0).values if "step" in ds.dims else None
    out = {name: np.full((*shape, n_layers), np.nan) for name in MIXED_PREDICTED if name != "chi_mean"}
    chi_mean = np.full(shape, np.nan)
    cache: dict[tuple, tuple] = {}
    for index in np.ndindex(shape):
        values = {key: fields[key].values[index].item() for key in fields}
        key = tuple(values.values())
        if key not in cache:
            profile = mixed_profile(
                str(values["activation"]),
                float(values["sigma_w2"]),
                float(values["sigma_b2"]),
                q_input,
                depth=int(values["depth"]),
                width=int(values["width"]),
                input_dim=input_dim,
                mix=str(values["mix"]),
                scale_a=float(values["mix_scale_a"]),
                scale_b=float(values["mix_scale_b"]),
                fraction=float(values["mix_fraction"]),
                layer_scales=parse_layer_scales(str(values["layer_scales"])),
            )
            cache[key] = (profile, geometric_mean_chi(profile))
        profile, mean = cache[key]
        depth = len(profile.chi)
        out["q_layer_theory"][index][: depth + 1] = profile.q_mean
        out["chi_layer"][index][:depth] = profile.chi
        chi_mean[index] = mean
        if readout is not None:
            shape_only = np.sqrt(profile.grad_sq / profile.grad_sq[-1])
            out["grad_norm_theory"][index][: depth + 1] = readout[index][depth] * shape_only
    ds = ds.assign({name: ((*grid, "layer"), values) for name, values in out.items()})
    ds["chi_mean"] = (grid, chi_mean)
    return label(ds, MIXED_PREDICTED)


def compile_in_background(experiment: Experiment) -> threading.Thread:
    """Start a daemon thread that runs, and so compiles, the theory programs ``add_predictions`` will
    need for this experiment's grid; join it before ``add_predictions``, which then finds them compiled.

    While the variants train, Python waits on XLA, so the theory's tracing and compiling (about two
    seconds on a 2-core CPU) overlap the training instead of following it. Errors are left to
    ``add_predictions`` to raise.
    """
    fields = experiment.to_toml_dict()["model"]
    values = [np.atleast_1d(np.asarray(fields[key])) for key in ("activation", "sigma_w2", "sigma_b2")]
    grid = np.meshgrid(*values, indexing="ij")
    swept = {axis.field for axis in experiment.axes}
    critical = not {"model.activation", "model.sigma_b2"} & swept  # as in add_predictions
    # no variant follows the MLP's mean field: add_predictions computes nothing, so nothing to compile
    wanted = any(theory_of(str(arch)) == "mlp" for arch in np.atleast_1d(fields["arch"]))

    def run() -> None:
        if not wanted:
            return
        try:
            _theory_on_grid(*grid)
            if critical:
                critical_sigma_w2(str(fields["activation"]), float(fields["sigma_b2"]))
        except Exception:  # add_predictions repeats the call and raises it
            pass

    thread = threading.Thread(target=run, name="sweep-theory-compile", daemon=True)
    thread.start()
    return thread


def _theory_on_grid(
    activation: np.ndarray, sigma_w2: np.ndarray, sigma_b2: np.ndarray
) -> dict[str, np.ndarray]:
    """The ``PREDICTED`` quantities at every point of three same-shaped arrays: one ``theory_table``
    call per activation (the programs ``compile_in_background`` prepares are exactly these)."""
    out = {name: np.full(sigma_w2.shape, np.nan, np.float64) for name in PREDICTED}
    for name in np.unique(activation):
        mask = activation == name
        for key, values in theory_table(str(name), sigma_w2[mask], sigma_b2[mask]).items():
            out[key][mask] = values
    return out


def theory_table(activation: str, sigma_w2: np.ndarray, sigma_b2: np.ndarray) -> dict[str, np.ndarray]:
    """``q_star``, ``c_star``, ``chi_1``, ``xi_c`` at (sigma_w2[i], sigma_b2[i]), arrays of shape [n];
    the theory runs once per distinct pair (a grid repeats them over depths, widths and seeds)."""
    pairs = np.stack([np.ravel(sigma_w2), np.ravel(sigma_b2)], axis=-1).astype(np.float64)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    theory = mean_field(activation, unique[:, 0], unique[:, 1])
    return {key: np.asarray(getattr(theory, key), np.float64)[inverse.ravel()] for key in PREDICTED}


def trained_and_predicted(ds: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray] | None:
    """Boolean (depth, sigma_w2) maps: measured "trained" and predicted "depth <= n xi_c" (None if the grid
    lacks those dims). Seeds are averaged; other swept dims take their best value, over the variants
    the theory describes (``xi_c`` not NaN: an arch-swept run compares its MLP cells only)."""
    if not {"sigma_w2", "depth"} <= set(ds.dims) or "xi_c" not in ds:
        return None
    measure = _config(ds)["measure"]
    accuracy = final_accuracy(ds)
    xi = ds["xi_c"]
    described = xi.notnull()  # NaN: a variant the theory does not describe (another architecture)
    if not bool(described.all()):
        accuracy = accuracy.where(described)
        for dim in [d for d in xi.dims if d not in ("depth", "sigma_w2")]:
            xi = xi.max(dim)  # the value of the variants it describes (equal along such a dim)
    if "seed" in accuracy.dims:
        accuracy = accuracy.mean("seed")
    for dim in [d for d in accuracy.dims if d not in ("depth", "sigma_w2")]:
        accuracy = accuracy.max(dim)
    for dim in [d for d in xi.dims if d not in ("depth", "sigma_w2")]:
        xi = xi.isel({dim: 0})
    trained = accuracy > measure["trained_accuracy"]
    predicted = ds["depth"] <= measure["xi_multiple"] * xi
    return trained.transpose("depth", "sigma_w2"), predicted.transpose("depth", "sigma_w2")


def agreement(ds: xr.Dataset) -> float | None:
    """Fraction of (sigma_w2, depth) cells where measured and predicted trainability agree."""
    maps = trained_and_predicted(ds)
    if maps is None:
        return None
    trained, predicted = maps
    return float((trained == predicted).mean())
