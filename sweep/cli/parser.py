"""The ``sweep`` command's arguments: ``build_parser`` and the option types; the commands themselves
are ``sweep.cli.commands``.

Sub-commands add their options when first used (``_Parser``), so ``sweep --help`` imports no JAX and
``sweep theory``'s options (with JAX's list of activations) are built only for ``sweep theory``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in sweep's form: one line, exit code 2. ``arguments`` (a function of the
    parser) adds the options when they are first needed, so a sub-command's imports (``sweep theory``:
    JAX, for its list of activations) are paid only when that sub-command is used or its help shown."""

    def __init__(self, *args, arguments=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._arguments = arguments

    def _add_arguments(self) -> None:
        arguments, self._arguments = self._arguments, None
        if arguments is not None:
            arguments(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_arguments()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_arguments()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_arguments()
        return super().format_help()

    def error(self, message: str) -> None:
        message = message.removeprefix("argument ")
        self.exit(2, f"sweep: error: {message}; see `{self.prog} --help`\n")


def _theory_arguments(parser: argparse.ArgumentParser) -> None:
    from sweep.cli.theory import add_theory_arguments

    add_theory_arguments(parser)


def _number(kind: type, least: float, strict: bool) -> object:
    """An argparse type: a finite ``kind`` above ``least`` (``strict``) or at least ``least``."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < least or (strict and value == least):
            what = "a whole number" if kind is int else "a number"
            bound = f"{'above' if strict else 'at least'} {least:g}"
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, not {text!r}")
        return value

    return parse


POSITIVE_INT, NON_NEGATIVE_INT, POSITIVE_FLOAT = (
    _number(int, 1, False),
    _number(int, 0, False),
    _number(float, 0, True),
)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any field, lists and ranges included, e.g. --set 'model.depth=[10,20]'",
    )
    parser.add_argument("--scale", default=None, help="apply the file's [scales] entry, e.g. quick or full")
    parser.add_argument(
        "--run", default=None, help="apply the file's [runs] entry (one of its related sweeps)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite results already in --out")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    parser.add_argument(
        "--chunk-size", type=POSITIVE_INT, default=None, help="variants per chunk (default: from memory)"
    )
    parser.add_argument(
        "--memory-budget",
        type=POSITIVE_FLOAT,
        default=None,
        metavar="GB",
        help="memory for one chunk: per device on accelerators, for all CPU devices together on a CPU "
        "(default: half of what is free)",
    )
    parser.add_argument(
        "--shard",
        default="0/1",
        metavar="I/N",
        help="run shard I of N (job arrays); shards may share --out; `sweep merge` joins them",
    )
    parser.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="jax.distributed coordinator for multi-process runs (SLURM is detected itself)",
    )
    parser.add_argument(
        "--num-processes", type=POSITIVE_INT, default=None, help="processes of a multi-process run"
    )
    parser.add_argument(
        "--process-id", type=NON_NEGATIVE_INT, default=None, help="this process, 0 .. --num-processes - 1"
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw figures into DIR/figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sweep",
        description="Train many network variants at once and measure why deep networks do or do not train.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run an experiment file")
    run.add_argument("experiment", type=Path)
    run.add_argument("--out", type=Path, required=True, help="output directory")
    _add_run_options(run)
    plot = commands.add_parser("plot", help="draw the figures of a finished run")
    plot.add_argument("directory", type=Path)
    plot.add_argument("--pdf", action="store_true", help="also write each figure as PDF (about 2x the time)")
    merge = commands.add_parser("merge", help="assemble DIR/results.nc from the chunks of all shards")
    merge.add_argument("directory", type=Path)
    status = commands.add_parser("status", help="done / missing / diverged variants of a run directory")
    status.add_argument("directory", type=Path)
    demo = commands.add_parser("demo", help="tanh MLP on MNIST-1D: a trainability phase diagram in minutes")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    _add_run_options(demo)
    submit = commands.add_parser(
        "submit", help="submit a job array through submitit (pip install 'sweep[slurm]')"
    )
    submit.add_argument("experiment", type=Path)
    submit.add_argument("--out", type=Path, required=True)
    submit.add_argument("--array", type=POSITIVE_INT, required=True, help="number of tasks (shards)")
    submit.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    submit.add_argument("--scale", default=None)
    submit.add_argument("--partition", default=None)
    submit.add_argument("--time", type=POSITIVE_INT, default=60, help="minutes per task")
    submit.add_argument("--gpus-per-task", type=NON_NEGATIVE_INT, default=0)
    submit.add_argument("--cluster", default=None, help="submitit cluster: slurm (default if found) or local")
    figures = commands.add_parser("figures", help="run every experiment file and collect its figures")
    figures.add_argument("experiments", nargs="*", type=Path, help="default: experiments/*.toml")
    figures.add_argument("--scale", default="quick", help="the files' [scales] entry: quick or full")
    figures.add_argument(
        "--out",
        type=Path,
        default=Path("figures"),
        help="folder for the collected PNGs, named EXPERIMENT[-RUN]-FIGURE.png (default: figures)",
    )
    commands.add_parser(
        "theory", help="mean-field theory: q*, c*, chi_1, depth scales", arguments=_theory_arguments
    )
    return parser
