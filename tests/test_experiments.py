"""Every experiment file runs at a tiny scale (each of its [runs]) and draws its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from plots.figures import draw_all
from sweep.cli.gallery import experiment_runs
from sweep.config import grid, load_experiment
from sweep.runner import engine

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.toml"))
CASES = [(path, run) for path in EXPERIMENTS for run in experiment_runs(path)]


def tiny_overrides(path: Path, run: str | None) -> list[str]:
    """Shrink an experiment to seconds while keeping which fields it sweeps (so its figures apply)."""
    experiment = load_experiment(path, scale="quick", run=run)
    swept = {axis.field for axis in experiment.axes}
    steps = 4 if experiment.base.train.steps or "train.steps" in swept else 0
    first_activation = [
        f"model.activation={a.values[0]}" for a in experiment.axes if a.field == "model.activation"
    ]
    return [
        *first_activation,  # fewer compiled groups; the figures need depth and init, not activation
        "model.width=8",
        "model.depth=[2, 3]" if "model.depth" in swept else "model.depth=3",
        f"train.steps={steps}",
        "train.batch_size=[4, 8]" if "train.batch_size" in swept else "train.batch_size=8",
        "data.n_train=64",
        "data.n_test=16",
        "measure.every=2",
        "measure.n_eval=16",
        "measure.jacobian_every=0",
    ]


def test_every_experiment_file_is_headed_by_a_comment():
    for path in EXPERIMENTS:
        head = path.read_text().splitlines()[:6]
        assert head and all(line.startswith("#") for line in head[:3]), path
        assert "sweep run" in path.read_text(), path


# (file, run) -> the figures its tiny run must draw and those it must not (the others: at least one)
DRAWS = {
    ("residual", "gradients"): ({"residual_gradients"}, set()),
    # over plain and residual nets the MLP's phase diagram would take the best of both: not drawn
    ("residual", "trainability"): ({"residual_trainability"}, {"phase_diagram"}),
}


@pytest.mark.slow
@pytest.mark.parametrize(("path", "run"), CASES, ids=[f"{p.stem}-{r}" if r else p.stem for p, r in CASES])
def test_experiment_runs_at_tiny_scale(tmp_path, monkeypatch, path, run):
    # The tiny depths [2, 3] share one depth bucket's program where the architecture allows it (a
    # program costs seconds to compile, whatever its depth): the engine's own path for grids of more
    # than BUCKETS depths, whose numbers are those of per-depth programs (tests/test_depth_buckets.py).
    monkeypatch.setattr(grid, "BUCKETS", 1)
    results = engine.run(path, tmp_path / "run", tiny_overrides(path, run), scale="quick", run=run)
    assert bool(results["completed"].all())
    figures = draw_all(results, tmp_path / "figures")
    assert figures, f"{path.name}: no figure applies"
    drawn = {figure.stem for figure in figures}
    must, must_not = DRAWS.get((path.stem, run), (set(), set()))
    assert must <= drawn and not must_not & drawn, (path.name, run, sorted(drawn))
    matplotlib.pyplot.close("all")


DEMO = Path(__file__).parent.parent / "sweep" / "cli" / "demo.toml"


def test_the_demo_is_the_phase_diagrams_quick_scale():
    """The README's phase diagram comes from phase_diagram.toml at quick scale; `sweep demo` draws the
    same figure, so the numbers the README quotes are what a new user's demo shows."""
    quick = load_experiment(EXPERIMENTS[0].parent / "phase_diagram.toml", scale="quick")
    assert quick.fingerprint() == load_experiment(DEMO).fingerprint()


DEEPEST_ROW = """
import json, sys
from sweep.runner import engine
results = engine.run(sys.argv[1], None, (f"model.depth={sys.argv[2]}", "model.sigma_w2=[1.0, 1.75, 4.0]"))
accuracy = results["train_accuracy"].isel(step=-1)
print(json.dumps({str(float(s)): float(accuracy.sel(sigma_w2=s)) for s in accuracy["sigma_w2"].values}))
"""


@pytest.mark.slow
def test_the_demos_deepest_row_trains_only_near_the_critical_point():
    """The demo's claim, measured: at its deepest depth a net at the critical sigma_w2 trains well
    (final training accuracy >= 0.8), while the ordered (sigma_w2 = 1) and chaotic (4) ones stay near
    chance (0.1; the demo's run has 0.09 and 0.16 there, 0.97 at 1.75).

    Run as `sweep demo` runs it, in a process of its own with the engine's own compiler settings: the
    tests' unoptimised code (tests/conftest.py: quicker to compile) trains these 3 x 1,000 steps about
    4 times slower (19 s against 4.5 s on 2 cores)."""
    demo = load_experiment(DEMO)
    deepest = max(next(a.values for a in demo.axes if a.field == "model.depth"))
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "").strip()
    env = {key: value for key, value in os.environ.items() if key not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    proc = subprocess.run(
        [sys.executable, "-c", DEEPEST_ROW, str(DEMO), str(deepest)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env | ({"XLA_FLAGS": flags} if flags else {}),
    )
    assert proc.returncode == 0, proc.stderr
    accuracy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert accuracy["1.75"] >= 0.8
    assert accuracy["1.0"] < 0.25
    assert accuracy["4.0"] < 0.25


def test_the_readmes_test_command_is_what_ci_runs():
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    command = (root / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{command}\n```" in readme
