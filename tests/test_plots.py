"""Figure functions on small synthetic results: colour scales, styles, titles and ticks a learner reads."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgba

from plots.common import describe, pick_sigmas, readable_log_axis, sigma_styles
from plots.phase_diagram import phase_diagram_figure
from plots.signal import signal_propagation_figure
from plots.training import training_curves_figure

CONFIG = """
[model]
arch = "mlp"
activation = "tanh"
width = 16
depth = [4, 8]
init = "gaussian"
sigma_w2 = [1.0, 1.76095, 3.0]
sigma_b2 = 0.05
[data]
name = "mnist1d"
[train]
optimizer = "sgd"
learning_rate = 0.05
steps = {steps}
[measure]
trained_accuracy = 0.3
xi_multiple = 6.0
"""


def synthetic(steps: int = 20) -> xr.Dataset:
    """Results of a (depth, sigma_w2) grid with known accuracies and a chi_1 per sigma_w2."""
    depth, sigma_w2, step = [4, 8], [1.0, 1.76095, 3.0], [0, 10, 20]
    final = np.array([[0.3, 0.6, 0.4], [0.12, 0.55, 0.2]])
    accuracy = np.stack([np.full_like(final, 0.1), (0.1 + final) / 2, final], axis=-1)
    loss = 2.3 - accuracy
    grid = ("depth", "sigma_w2")
    return xr.Dataset(
        {
            "train_accuracy": ((*grid, "step"), accuracy),
            "train_loss": ((*grid, "step"), loss),
            "diverged": (grid, np.zeros(final.shape, bool)),
            "completed": (grid, np.ones(final.shape, bool)),
            "chi_1": (("sigma_w2",), np.array([0.759, 1.0, 1.209])),
        },
        coords={"depth": depth, "sigma_w2": sigma_w2, "step": step},
        attrs={"config": CONFIG.format(steps=steps), "n_classes": 10, "critical_sigma_w2": 1.76095},
    )


def test_phase_diagram_colour_scale_spans_chance_to_the_best_cell():
    fig = phase_diagram_figure(synthetic())
    mesh = fig.axes[0].collections[0]
    assert mesh.norm.vmin == pytest.approx(0.1)  # chance, 1/C
    assert mesh.norm.vmax == pytest.approx(0.6)  # the best cell, not 1.0
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert "(chance)" in labels[0] and "(best)" in labels[-1]
    plt.close(fig)


def test_phase_diagram_overlays_cross_the_whole_measured_region():
    fig = phase_diagram_figure(synthetic())
    ax = fig.axes[0]
    xi_line, critical = ax.lines[0], ax.lines[1]
    x_lo, x_hi = ax.get_xlim()
    assert xi_line.get_xdata().min() == pytest.approx(x_lo) and xi_line.get_xdata().max() == pytest.approx(
        x_hi
    )
    assert critical.get_xdata()[0] == pytest.approx(1.76095)
    assert ax.get_legend() is None and fig.legends  # the legend sits below the axes, not over cells
    plt.close(fig)


def test_critical_curve_is_black_and_on_top_and_pale_shades_are_avoided():
    ds = synthetic()
    styles = sigma_styles(ds, [1.0, 1.76095, 3.0])
    assert to_rgba(styles[1]["color"]) == to_rgba("black") and "critical" in styles[1]["label"]
    assert styles[1]["zorder"] > max(styles[0]["zorder"], styles[2]["zorder"])
    assert styles[1]["lw"] > styles[0]["lw"]
    for style in (styles[0], styles[2]):
        assert min(to_rgba(style["color"])[:3]) < 0.5  # a mid or dark tone, never near-white
    picked = pick_sigmas(ds, 2)  # two of three: the critical one is always among them
    assert len(picked) == 2 and 1.76095 in picked


def test_titles_of_figures_at_initialisation_name_no_optimizer():
    assert "at initialisation" in describe(synthetic(steps=0))
    assert "sgd" not in describe(synthetic(steps=0)) and "0 steps" not in describe(synthetic(steps=0))
    assert "sgd lr=0.05, 20 steps" in describe(synthetic())
    assert "sgd" not in describe(synthetic(), at_initialisation=True)


def test_the_signal_propagation_figure_of_a_trained_run_names_no_optimizer(tiny):
    """It shows the run's initialisation: the optimizer has nothing to do with it."""
    import sweep

    title = signal_propagation_figure(sweep.run(tiny))._suptitle.get_text()
    assert "at initialisation" in title and "sgd" not in title and "steps" not in title
    plt.close("all")


def test_training_curves_mark_chance_loss_and_accuracy():
    fig = training_curves_figure(synthetic())
    levels = {
        round(float(line.get_ydata()[0]), 4)
        for ax in fig.axes
        for line in ax.lines
        if len(line.get_ydata()) == 2
    }
    assert round(np.log(10), 4) in levels and 0.1 in levels
    plt.close(fig)


def test_narrow_log_axis_gets_readable_ticks():
    fig, ax = plt.subplots()
    ax.semilogy([0, 1], [0.85, 1.15])
    readable_log_axis(ax)
    ticks = [t for t in ax.get_yticks() if 0.85 <= t <= 1.15]
    assert len(ticks) >= 3
    assert all(label.get_text() and "times" not in label.get_text() for label in ax.get_yticklabels())
    plt.close(fig)


def test_layer_resolved_gradient_ratio_is_flat_for_relu_without_bias_and_sqrt_chi1_at_the_fixed_point():
    from plots.signal import crossing, layer_resolved_ratio
    from sweep.theory.mean_field import chi_1, q_star

    relu = layer_resolved_ratio("relu", np.array([1.0, 2.0, 3.0]), 0.0, 1.0, 20)
    np.testing.assert_allclose(relu, 1.0, rtol=1e-6)  # delta grows by sqrt(chi_1), x shrinks by as much
    sigma_w2, sigma_b2 = np.array([1.2, 2.5]), 0.05
    q = np.asarray(q_star("tanh", sigma_w2, np.full_like(sigma_w2, sigma_b2)))
    start = (q - sigma_b2) / sigma_w2  # input mean square that puts q^1 at q*
    for w2, x_q, expect in zip(sigma_w2, start, np.sqrt(chi_1("tanh", sigma_w2, sigma_b2)), strict=True):
        ratio = layer_resolved_ratio("tanh", np.array([w2]), sigma_b2, float(x_q), 12)
        assert ratio[0] == pytest.approx(float(expect), rel=1e-3)
    assert crossing(np.array([1.0, 2.0, 3.0]), np.array([0.9, 0.99, 1.1])) == pytest.approx(
        2.0 + np.log(0.99) / (np.log(0.99) - np.log(1.1))
    )
    assert crossing(np.array([1.0, 2.0]), np.array([0.8, 0.9])) is None


@pytest.mark.slow
@pytest.mark.parametrize("depth", [[2, 3], 3])
def test_a_residual_run_draws_its_figures_without_the_mlps_mean_field(tmp_path, tiny, depth):
    """An architecture whose results carry no fully connected mean field (chi_1, xi_c) still gets the
    figures of its measurements; the ones drawn around that theory do not apply (they crashed)."""
    import sweep
    from plots.figures import draw_all

    tiny["model"] |= {"arch": "resnet", "depth": depth}
    ds = sweep.run(tiny)
    assert "chi_1" not in ds
    names = {path.stem for path in draw_all(ds, tmp_path)}
    assert {"gradient_norms", "training_curves"} <= names
    assert not names & {"signal_propagation", "vanishing_exploding"}
    if isinstance(depth, list):
        fig = phase_diagram_figure(ds)
        legend = fig.legends[0] if fig.legends else fig.axes[0].get_legend()
        labels = [t.get_text() for t in legend.get_texts()] if legend else []
        assert not any("xi" in label for label in labels)  # no MLP overlay over a residual net
    plt.close("all")
