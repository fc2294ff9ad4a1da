"""The command line: an end-to-end run, plotting, resume; bad input exits 2 with one line, writing nothing."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import xarray as xr

from sweep.cli import main

TINY_TOML = """
[model]
width = 16
depth = [2, 3]
sigma_w2 = [1.0, 2.0]
[data]
name = "gaussian_mixture"
n_train = 256
n_test = 128
input_dim = 12
[train]
steps = 12
batch_size = 16
learning_rate = 0.05
[measure]
every = 4
n_eval = 64
"""


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


@pytest.mark.slow
def test_end_to_end_run_and_plot(tmp_path, experiment):
    out = tmp_path / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sweep.cli",
            "run",
            str(experiment),
            "--out",
            str(out),
            "--set",
            "train.steps=8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "sweep summary" in done.stdout and "device" in done.stderr
    phases = ("import", "data", "compile", "training", "measurement", "writing", "figures", "other")
    assert re.search(r"wall time [\d.]+ s = " + r" \+ ".join(rf"{p} [\d.]+" for p in phases), done.stdout)
    with xr.open_dataset(out / "results.nc") as ds:
        assert dict(ds.sizes) == {"depth": 2, "sigma_w2": 2, "step": 3, "layer": 4, "pair": 8}
        assert {
            "train_loss",
            "train_accuracy",
            "test_accuracy",
            "grad_norm",
            "q_layer",
            "c_layer",
            "diverged",
            "chi_1",
        } <= set(ds)
        assert ds["grad_norm"].sel(depth=2, layer=4).isnull().all()  # padded: depth 2 has 3 weight matrices
        assert "steps = 8" in ds.attrs["config"] and ds.attrs["variant_steps_per_second"] > 0
        for phase in ("data", "compile", "run", "measure", "write"):
            assert ds.attrs[f"{phase}_seconds"] >= 0
    assert (out / "config.toml").read_text().count("sigma_w2 = [") == 1
    for name in ("phase_diagram", "gradient_norms", "training_curves"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
        assert not (out / "figures" / f"{name}.pdf").exists()  # PDF only when asked: sweep plot --pdf
    (out / "figures" / "phase_diagram.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "figures" / "phase_diagram.png").exists()
    assert not (out / "figures" / "phase_diagram.pdf").exists()
    assert main(["plot", str(out), "--pdf"]) == 0
    assert (out / "figures" / "phase_diagram.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.slow
def test_existing_results_need_force_or_resume(tmp_path, experiment, capsys):
    out = tmp_path / "run"
    args = ["run", str(experiment), "--out", str(out), "--no-plot", "--quiet", "--set", "model.depth=2"]
    assert main(args) == 0
    before = (out / "results.nc").stat().st_mtime_ns
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "results.nc").stat().st_mtime_ns == before
    assert main([*args, "--resume"]) == 0  # nothing missing: every chunk is read back
    assert main([*args[:-1], "model.depth=3", "--resume"]) == 2
    assert "different experiment" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


BAD_FILES = [
    ("[model]\nwidth = -1\n", "model.width"),
    ("[model]\nactivation = 'softsign'\n", "model.activation"),
    ("[optim]\nlr = 1\n", "[optim]"),
    ("[train]\nlearning_rate = -0.1\n", "train.learning_rate"),
    ("[model]\ndepth = []\n", "model.depth"),
    ("[data]\nname = 'mnist'\n", "data.path"),
    ("[data]\nname = 'mnist'\npath = '/nonexistent/mnist'\n", "data.path"),
]


@pytest.mark.parametrize(("text", "needle"), BAD_FILES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(path) in err
    assert not out.exists()


def test_unparsable_set_exits_2(tmp_path, experiment, capsys):
    out = tmp_path / "out"
    assert main(["run", str(experiment), "--out", str(out), "--set", "model.depth=[1,"]) == 2
    assert "--set" in capsys.readouterr().err and not out.exists()


BAD_OPTIONS = [
    (["--chunk-size", "0"], "--chunk-size"),
    (["--chunk-size", "-4"], "--chunk-size"),
    (["--chunk-size", "two"], "--chunk-size"),
    (["--memory-budget", "0"], "--memory-budget"),
    (["--memory-budget=-1"], "--memory-budget"),
    (["--memory-budget", "nan"], "--memory-budget"),
    (["--shard", "2/2"], "--shard"),
    (["--shard", "-1/2"], "--shard"),
    (["--shard", "1of2"], "--shard"),
    (["--num-processes", "0"], "--num-processes"),
    (["--process-id", "-1"], "--process-id"),
    (["--process-id", "1"], "--process-id"),
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "localhost:1234"], "--process-id"),
    (["--num-processes", "2", "--process-id", "0"], "--num-processes"),
    (["--coordinator", "localhost"], "--coordinator"),
    (["--coordinator", "localhost:http", "--num-processes", "2"], "--coordinator"),
    (["--coordinator", "localhost:1234"], "--coordinator"),
]


@pytest.mark.parametrize(("options", "needle"), BAD_OPTIONS)
def test_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, experiment, capsys, options, needle):
    out = tmp_path / "out"
    try:
        code = main(["run", str(experiment), "--out", str(out), *options])
    except SystemExit as exit:  # argparse's own checks
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"sweep: error: {needle}"), err
    assert not out.exists()


def test_bad_options_are_refused_by_the_api_too(tmp_path, experiment):
    from sweep import ConfigError, run

    for kwargs, needle in (
        ({"chunk_size": 0}, "--chunk-size"),
        ({"chunk_size": -4}, "--chunk-size"),
        ({"memory_budget_gb": -1.0}, "--memory-budget"),
        ({"shard": (3, 2)}, "--shard"),
    ):
        with pytest.raises(ConfigError, match=needle):
            run(experiment, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_progress_bar_follows_the_terminal(monkeypatch, tiny):
    from sweep.runner import engine

    shown = []

    class Recorder:
        def __init__(self, enabled, total):
            shown.append(enabled)

        def __enter__(self):
            return lambda n: None

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(engine, "_progress", Recorder)
    for tty in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda tty=tty: tty, raising=False)
        engine.run(tiny)
    engine.run(tiny, progress=True)
    assert shown == [True, False, True]


def test_devices_are_described_in_words(monkeypatch):
    from types import SimpleNamespace

    from sweep.runner import engine

    assert engine.describe_devices() == "1 CPU device"  # tests run on one CPU device (conftest)
    for platform, kind, n, words in (
        ("gpu", "NVIDIA H200", 1, "1 GPU (NVIDIA H200)"),
        ("gpu", "NVIDIA H200", 8, "8 GPUs (NVIDIA H200)"),
        ("tpu", "TPU v4", 4, "4 TPUs (TPU v4)"),
        ("cpu", "cpu", 2, "2 CPU devices (one per core)"),
        ("cpu", "cpu", 3, "3 CPU devices"),
    ):
        fake = [SimpleNamespace(platform=platform, device_kind=kind)] * n
        monkeypatch.setattr(engine.jax, "local_devices", lambda fake=fake: fake)
        monkeypatch.setattr(engine, "cpu_cores", lambda: 2)
        assert engine.describe_devices() == words


def test_every_option_has_help():
    from sweep.cli import build_parser

    parser = build_parser()
    for action in parser._subparsers._group_actions[0].choices["figures"]._actions:
        assert action.help, action.dest
