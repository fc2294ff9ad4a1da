"""The standard figures drawn quickly: theory curves kept beside the figures, fixed layouts that fit."""

from __future__ import annotations

import functools
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest

from plots import theory_curves
from plots.theory_curves import CURVES, curve, kept_in


def test_a_theory_call_is_computed_once_and_then_read_from_the_folder(tmp_path):
    calls = []

    def theory(activation, x, n, scale=1.0):
        calls.append((activation, n, scale))
        return np.asarray(x) * scale, np.full(n, len(activation))

    path, x = tmp_path / CURVES, np.linspace(0.0, 1.0, 5)
    with kept_in(path):
        first = curve(theory, "tanh", x, 3, scale=2.0)
    assert len(calls) == 1 and path.exists()
    with kept_in(path):
        again = curve(theory, "tanh", x, 3, scale=2.0)
        other = [curve(theory, "erf", x, 3, scale=2.0), curve(theory, "tanh", x + 1e-9, 3, scale=2.0)]
        curve(theory, "tanh", x, 3, scale=3.0)
    assert len(calls) == 4  # another activation, input or keyword is another call
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert isinstance(again, tuple) and not np.array_equal(other[0][1], first[1])
    with kept_in(path):  # the file keeps the calls of the last drawing only
        curve(theory, "tanh", x, 3, scale=3.0)
    with np.load(path) as stored:
        assert len(stored.files) == 1 + 2  # the fingerprint and one call's two arrays
    assert len(calls) == 4
    curve(theory, "tanh", x, 3, scale=3.0)  # outside kept_in: always computed
    assert len(calls) == 5


def test_curves_of_other_code_or_a_damaged_file_are_computed_again(tmp_path, monkeypatch):
    calls = []

    def theory(activation, x):
        calls.append(1)
        return np.asarray(x) ** 2

    path = tmp_path / CURVES
    with kept_in(path):
        curve(theory, "erf", np.arange(4.0))
    monkeypatch.setattr(theory_curves, "code_fingerprint", lambda: "other code")
    with kept_in(path):
        curve(theory, "erf", np.arange(4.0))
    assert len(calls) == 2
    path.write_bytes(b"not a zip file")
    with kept_in(path):
        np.testing.assert_array_equal(curve(theory, "erf", np.arange(4.0)), np.arange(4.0) ** 2)
    assert len(calls) == 3
    with kept_in(path):
        curve(theory, "erf", np.arange(4.0))
    assert len(calls) == 3  # rewritten after the damaged one


def test_the_fingerprint_follows_the_theory_code():
    assert theory_curves.code_fingerprint() == theory_curves.code_fingerprint()
    assert len(theory_curves.code_fingerprint()) == 64


def _boxes_fit(fig) -> None:
    """Every panel (with what it draws), legend and the suptitle inside the figure; no legend over a
    panel; no two panels' decorations (tick labels, axis labels, titles) over one another."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    inside = fig.bbox.padded(1.0)

    def within(box) -> bool:
        return inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1

    decorations = [ax.get_tightbbox(renderer, bbox_extra_artists=[]) for ax in fig.axes]
    for ax in fig.axes:
        assert within(ax.get_tightbbox(renderer)), ax.get_title()
    for a, b in itertools.combinations(decorations, 2):
        assert not a.overlaps(b.shrunk(0.999, 0.999))
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        assert within(box)
        assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes)
    if fig._suptitle is not None:
        box = fig._suptitle.get_window_extent(renderer)
        assert within(box) and not any(box.overlaps(d) for d in decorations)


@pytest.fixture(scope="module")
def trained():
    """A tiny tanh run over (sigma_w2, depth): the standard figures' data."""
    import sweep

    return sweep.run(
        {
            "model": {"width": 16, "depth": [2, 4], "sigma_w2": [1.0, 1.5, 1.75, 2.0, 3.0], "sigma_b2": 0.05},
            "data": {"name": "gaussian_mixture", "n_train": 256, "n_test": 128, "input_dim": 12},
            "train": {"steps": 12, "batch_size": 16, "learning_rate": 0.05},
            "measure": {"every": 4, "n_eval": 64},
        }
    )


def test_the_standard_figures_fit_and_redraw_from_their_kept_curves(trained, tmp_path, monkeypatch):
    import plots.phase_diagram
    import plots.signal
    from plots.figures import draw_all
    from plots.vanishing import vanishing_figure

    first = draw_all(trained, tmp_path)
    names = {path.stem for path in first}
    assert {"phase_diagram", "gradient_norms", "training_curves", "signal_propagation"} <= names
    assert (tmp_path / CURVES).exists()

    def recomputed(real):
        @functools.wraps(real)  # the same name: the kept curve is found by it
        def fails(*args, **kwargs):
            raise AssertionError(f"{real.__name__} was computed again")

        return fails

    theory = [(plots.signal, "chi_1"), (plots.signal, "length_map_iterates"), (plots.signal, "_d2_moments")]
    for module, name in [*theory, (plots.phase_diagram, "xi_c")]:
        monkeypatch.setattr(module, name, recomputed(getattr(module, name)))
    pixels = {path.name: path.read_bytes() for path in first}
    again = draw_all(trained, tmp_path)
    assert {path.name: path.read_bytes() for path in again} == pixels  # the same figures, byte for byte
    monkeypatch.undo()

    from plots.figures import FIGURES

    for name in sorted(names):
        fig = FIGURES[name][0](trained)
        _boxes_fit(fig)
        plt.close(fig)
    fig = vanishing_figure(trained.sel(depth=4))
    _boxes_fit(fig)
    plt.close(fig)
