"""``sweep theory``: argument handling, the table, the JSON contract and the phase-diagram file."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from sweep.cli.theory import add_theory_arguments, run_theory

POINT_FIELDS = {"sigma_w2", "sigma_b2", "q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c"}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sweep theory")
    add_theory_arguments(parser)
    return parser.parse_args(list(argv))


def test_json_has_the_documented_fields_and_null_for_infinity(capsys):
    rc = run_theory(
        parse("--activation", "relu", "--sigma-b2", "0.1", "--sigma-w2", "1", "1.5", "3", "--json")
    )
    out = capsys.readouterr()
    assert rc == 0 and out.err == ""
    report = json.loads(out.out)  # exactly one JSON object on stdout
    assert set(report) == {"activation", "sigma_b2", "critical_sigma_w2", "points"}
    assert report["activation"] == "relu" and report["sigma_b2"] == 0.1
    assert report["critical_sigma_w2"] == 2.0
    assert [p["sigma_w2"] for p in report["points"]] == [1.0, 1.5, 3.0]
    for point in report["points"]:
        assert set(point) == POINT_FIELDS and point["sigma_b2"] == 0.1
    first, _, last = report["points"]
    assert first["q_star"] == pytest.approx(0.2) and first["chi_1"] == pytest.approx(0.5)
    assert last["q_star"] is None and last["xi_c"] is None and last["chi_1"] == pytest.approx(1.5)


def test_table_lists_the_critical_point_and_default_sigma_w2(capsys):
    assert run_theory(parse("--activation", "erf", "--sigma-b2", "0.05")) == 0
    out = capsys.readouterr().out
    assert "critical sigma_w2" in out and "1.37584" in out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["sigma_w2"])
    assert header.split() == ["sigma_w2", "q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c"]
    rows = [line for line in out.splitlines() if line.split() and line.split()[0].replace(".", "").isdigit()]
    assert len(rows) == 6  # default: a handful of σ_w² spanning 1..4
    assert float(rows[0].split()[0]) == 1.0 and float(rows[-1].split()[0]) == 4.0


@pytest.mark.parametrize(
    ("argv", "bad"),
    [
        (("--activation", "nope", "--sigma-b2", "0.1"), "nope"),
        (("--activation", "tanh", "--sigma-b2", "-1"), "-1"),
        (("--activation", "tanh", "--sigma-b2", "0.1", "--sigma-w2", "0"), "0"),
        (("--activation", "tanh", "--sigma-b2", "0.1", "--plot", "out.svg"), "out.svg"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(capsys, argv, bad):
    assert run_theory(parse(*argv)) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and bad in lines[0]


def test_plot_writes_the_phase_diagram(tmp_path, capsys):
    path = tmp_path / "figs" / "phase.png"
    rc = run_theory(parse("--activation", "erf", "--sigma-b2", "0.2", "--json", "--plot", str(path)))
    out = capsys.readouterr()
    assert rc == 0 and json.loads(out.out)["activation"] == "erf"
    assert path.exists() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def test_phase_diagram_saves_pdf(tmp_path):
    from plots.order_chaos import order_chaos_figure

    fig = order_chaos_figure("relu", sigma_b2_max=0.5, resolution=(20, 10), quantity="chi_1")
    fig.savefig(tmp_path / "phase.pdf")
    assert (tmp_path / "phase.pdf").read_bytes()[:4] == b"%PDF"


def test_infinity_footnote_only_when_a_value_is_infinite(capsys):
    assert run_theory(parse("--activation", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "1", "3")) == 0
    assert "inf" not in capsys.readouterr().out  # neither a value nor the footnote
    assert run_theory(parse("--activation", "relu", "--sigma-b2", "0.1", "--sigma-w2", "1", "3")) == 0
    out = capsys.readouterr().out  # relu above sigma_w2 = 2: no finite q*
    assert " inf" in out and "(inf: no finite fixed point or depth scale)" in out


def test_resnet_theory_gives_the_exact_facts(capsys):
    """--arch resnet: a linear reduced branch grows the stream by (1 + a^2 sigma_w2) per block; relu
    full branch without biases by 1 + a^2 sigma_w2^2 / 2; alpha / sqrt(L) keeps the gradient ratio
    bounded where a = 1 lets it grow."""
    argv = ("--arch", "resnet", "--activation", "linear", "--branch", "reduced", "--sigma-b2", "0")
    assert (
        run_theory(parse(*argv, "--sigma-w2", "1", "2", "--branch-scale", "0.5", "--depth", "8", "--json"))
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["arch"] == "resnet" and report["alpha"] == 0.5
    for point in report["points"]:
        growth = point["p_last"] / point["p_first"]
        assert growth == pytest.approx((1 + 0.25 * point["sigma_w2"]) ** 8, rel=1e-5)
    relu = ("--arch", "resnet", "--activation", "relu", "--sigma-b2", "0", "--sigma-w2", "1.5", "--json")
    assert run_theory(parse(*relu, "--branch-scale", "0.7", "--depth", "6")) == 0
    (point,) = json.loads(capsys.readouterr().out)["points"]
    assert point["p_last"] / point["p_first"] == pytest.approx((1 + 0.49 * 1.5**2 / 2) ** 6, rel=1e-5)
    ratios = []
    for scaling in ("none", "inv_sqrt_depth"):
        tanh = ("--arch", "resnet", "--activation", "tanh", "--sigma-b2", "0.05", "--sigma-w2", "1", "--json")
        assert run_theory(parse(*tanh, "--depth", "200", "--branch-scaling", scaling)) == 0
        ratios.append(json.loads(capsys.readouterr().out)["points"][0]["grad_ratio"])
    assert ratios[0] > 10 * ratios[1] and ratios[1] < 2
    assert run_theory(parse("--arch", "resnet", "--activation", "tanh", "--sigma-b2", "0.05")) == 0
    assert "resnet, full branch, activation tanh, depth 10" in capsys.readouterr().out
    assert (
        run_theory(parse("--arch", "resnet", "--activation", "tanh", "--sigma-b2", "0", "--depth", "0")) == 2
    )
    assert "--depth must be at least 1" in capsys.readouterr().err


def test_normalised_theory_tables(capsys):
    """--norm batch: (B - 2)/(B - 3) for linear nets, the large-batch limit (relu: pi / (pi - 1)) marked
    inexact otherwise; --norm layer: q pinned, chi_1 = sigma_w2 D / (sigma_w2 V + sigma_b2) per sigma_w2."""
    argv = (
        "--norm",
        "batch",
        "--activation",
        "linear",
        "--sigma-b2",
        "0",
        "--batch-size",
        "4",
        "8",
        "--json",
    )
    assert run_theory(parse(*argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(p["batch_size"], p["growth"], p["exact"]) for p in report["points"]] == [
        (4, 2.0, True),
        (8, 1.2, True),
    ]
    assert run_theory(parse("--norm", "batch", "--activation", "relu", "--sigma-b2", "0")) == 0
    out = capsys.readouterr().out
    assert "1.46694" in out and "large-batch limit" in out
    argv = ("--norm", "layer", "--activation", "relu", "--sigma-b2", "0.5", "--sigma-w2", "1", "--json")
    assert run_theory(parse(*argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["points"][0]["chi_1"] == pytest.approx(0.5 / 1.0) and report["critical_sigma_w2"] is None
    assert run_theory(parse("--norm", "layer", "--activation", "tanh", "--sigma-b2", "0.05")) == 0
    assert "critical sigma_w2 (chi_1 = 1): 0.713" in capsys.readouterr().out
    assert (
        run_theory(parse("--norm", "batch", "--activation", "tanh", "--sigma-b2", "0", "--batch-size", "0"))
        == 2
    )
    assert "--batch-size values must be at least 1" in capsys.readouterr().err


def test_cnn_mode_depth_scales_from_the_footprint(capsys):
    """--arch cnn: linear net at sigma_w2 = 1 (chi_c = 1), width-3 kernel on 8 positions: lambda(f) =
    (1 + 2 cos(2 pi f / 8)) / 3, so xi_f = -1 / log|lambda(f)| (f = 0: no decay, null)."""
    argv = ("--arch", "cnn", "--activation", "linear", "--sigma-b2", "0", "--sigma-w2", "1")
    rc = run_theory(parse(*argv, "--kernel-size", "3", "--positions", "8", "--json"))
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["arch"] == "cnn" and list(report["lambda"]) == ["f0", "f1", "f2", "f4"]
    lam = {f: (1 + 2 * math.cos(2 * math.pi * f / 8)) / 3 for f in (0, 1, 2, 4)}
    assert report["lambda"]["f1"] == pytest.approx(lam[1]) and report["lambda"]["f4"] == pytest.approx(-1 / 3)
    point = report["points"][0]
    assert point["chi_c"] == pytest.approx(1.0) and point["xi_f0"] is None
    for f in (1, 2, 4):
        assert point[f"xi_f{f}"] == pytest.approx(-1 / math.log(abs(lam[f])), rel=1e-6)
    assert run_theory(parse(*argv, "--kernel-size", "4")) == 2
    assert "--kernel-size" in capsys.readouterr().err
