"""The ``sweep`` command: argument parsing only; the work lives in importable functions.

    sweep run EXPERIMENT.toml --out DIR [--set section.key=value ...] [--force | --resume]
    sweep plot DIR
    sweep demo [--out DIR]
    sweep theory --activation NAME --sigma-b2 X [--sigma-w2 A B ...] [--json] [--plot FILE]

Bad input (a file, a field, an option) or a damaged run directory exits with code 2 and one line on
stderr per problem, naming the file or the option and what to do; a file that cannot be written (a
full disk) exits with code 1 and one line saying what is saved, what is not and the command that
finishes the job.

Each command imports only what it needs: ``sweep --help``, ``sweep status`` and ``sweep theory`` start
without the training path (sweep.engine, sweep.train, optax) or matplotlib; ``sweep --help`` without JAX.
"""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

STARTED = time.perf_counter()  # the import phase's start where the process's own start is not known


def _process_seconds() -> float:
    """Seconds since this process started (the interpreter's own start-up included) where the system
    says (Linux: /proc); else since this module was first imported."""
    try:
        import os

        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started = int(stat.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
            return max(float(uptime.read().split()[0]) - started, time.perf_counter() - STARTED)
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - STARTED


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
    from sweep.theory_cli import add_theory_arguments

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

DEMO_EXPERIMENT = "demo.toml"  # shipped inside the package (sweep/experiments/demo.toml)


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


# (label, results attribute) of the engine's share of a run's wall time, in the order it happens
ENGINE_PHASES = (
    ("data", "data_seconds"),
    ("compile", "compile_seconds"),
    ("training", "run_seconds"),
    ("measurement", "measure_seconds"),
    ("writing", "write_seconds"),
)


def run_phases(attrs: dict, imported: float, figures: float) -> dict[str, float]:
    """Seconds per phase of a ``sweep run``: ``imported`` (process start to the engine imported), the
    engine's own (``attrs``, see sweep.engine.Timing), and drawing the figures."""
    engine = {label: float(attrs.get(key, 0.0)) for label, key in ENGINE_PHASES}
    return {"import": imported} | engine | {"figures": figures}


def wall_time_line(phases: dict[str, float], total: float) -> str:
    """ "wall time 11.5 s = import 1.0 + data 1.9 + ... + figures 1.4 + other 0.1" (other: the rest of
    the ``total``: parsing the experiment, planning, printing)."""
    row = phases | {"other": max(total - sum(phases.values()), 0.0)}
    return f"wall time {total:.1f} s = " + " + ".join(f"{label} {s:.1f}" for label, s in row.items())


def _print_summary(results, out: Path | None, figures: list[Path], phases: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    a = results.attrs
    table = Table(title="sweep summary")
    for column in ("groups", "variants", "compile s", "run s", "variant-steps/s", "diverged", "devices"):
        table.add_column(column, justify="right")
    table.add_row(
        str(a["n_groups"]),
        str(a["n_variants"]),
        f"{a['compile_seconds']:.1f}",
        f"{a['run_seconds']:.1f}",
        f"{a['variant_steps_per_second']:,.0f}",
        str(int(results["diverged"].sum())),
        a["devices"],
    )
    console = Console()
    console.print(table)
    console.print(wall_time_line(phases, _process_seconds()), soft_wrap=True)
    if out is not None:
        console.print(f"results: {out / 'results.nc'}")
    for path in figures:
        console.print(f"figure:  {path}")


def _run(args: argparse.Namespace, experiment: Path | str) -> int:
    from sweep.config import ConfigError
    from sweep.engine import as_experiment, run
    from sweep.integrity import WriteFailed

    imported = _process_seconds()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"sweep: {message}", file=sys.stderr)

    from sweep.chunks import parse_shard
    from sweep.distributed import combine, initialize

    try:
        shard = parse_shard(args.shard)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    shard = combine(shard, initialize(args.coordinator, args.num_processes, args.process_id))
    preparing = None
    if not args.no_plot and shard == (0, 1):
        preparing = _prepare_figures(
            lambda: as_experiment(experiment, tuple(args.overrides), args.scale, args.run)
        )
    try:
        results = run(
            experiment,
            args.out,
            tuple(args.overrides),
            force=args.force,
            resume=args.resume,
            scale=args.scale,
            run=args.run,
            shard=shard,
            chunk_size=args.chunk_size,
            memory_budget_gb=args.memory_budget,
            progress=False if args.quiet else None,  # a bar where stderr is a terminal
            log=log,
            warn=lambda message: print(f"sweep: warning: {message}", file=sys.stderr),  # even when --quiet
        )
    finally:  # the interpreter must not exit under a thread inside XLA
        if preparing is not None:
            preparing.join()
    if results.attrs.get("missing_variants", 0):
        return 0  # other shards are still running: figures come with the merged results
    drawing = time.perf_counter()
    try:
        figures = [] if args.no_plot else _plot(results, args.out)
    except WriteFailed as failure:
        saved, not_saved = (
            f"every chunk and {args.out / 'results.nc'}",
            f"the figures in {args.out / 'figures'}",
        )
        return _write_failed(failure.telling(saved, not_saved), f"sweep plot {args.out}")
    if not args.quiet:
        phases = run_phases(results.attrs, imported, time.perf_counter() - drawing)
        _print_summary(results, args.out, figures, phases)
    return 0


def _prepare_figures(experiment: Callable[[], object]) -> threading.Thread:
    """A thread that parses the experiment (``experiment()``), imports the figure code and compiles the
    figures' theory curves (``plots.figures.prepare``) while a run's first program compiles on one core
    (measured: the standard figures of a 128-variant run in 1.1-1.5 s instead of about 3 s). Join it before
    drawing. Errors are left to the run and the figures, which repeat the same calls."""

    def prepare() -> None:
        try:
            from plots.figures import prepare

            prepare(experiment())
        except Exception:
            pass

    thread = threading.Thread(target=prepare, name="sweep-figures-prepare", daemon=True)
    thread.start()
    return thread


def _plot(results, out: Path, pdf: bool = False) -> list[Path]:
    from plots.figures import draw_all
    from sweep.integrity import WriteFailed

    try:
        return draw_all(results, out / "figures", ("png", "pdf") if pdf else ("png",))
    except OSError as error:  # e.g. making the folder on a full disk (each figure: WriteFailed)
        raise WriteFailed.of(out / "figures", error) from error


def _write_failed(failure, finish: str) -> int:
    """Say which file could not be written, what is saved and what is not, and how to finish; exit 1."""
    told = "".join(
        f"; {label}: {value}"
        for label, value in (("saved", failure.saved), ("not saved", failure.not_saved))
        if value
    )
    print(f"sweep: error: {failure}{told}; `{finish}` finishes it", file=sys.stderr)
    return 1


def _finishing_command(argv: list[str], args: argparse.Namespace) -> str:
    """The command that finishes what ``argv`` started: the same with --resume (not --force) for a run."""
    if args.command in ("run", "demo"):
        argv = [a for a in argv if a not in ("--force", "--resume")] + ["--resume"]
    elif args.command == "plot":
        argv = ["plot", str(args.directory)]
    return shlex.join(["sweep", *argv])


class Terminated(Exception):
    """Raised by the SIGTERM handler, so a scheduler's stop unwinds like Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    from sweep.config import ConfigError  # after parsing: `sweep --help` needs neither (nor JAX)
    from sweep.integrity import DamagedFile, DamagedRun, WriteFailed

    try:
        if args.command == "run":
            return _run(args, args.experiment)
        if args.command == "demo":
            with resources.as_file(resources.files("sweep") / DEMO_EXPERIMENT) as path:
                return _run(args, path)
        if args.command == "plot":
            from sweep.rundir import load

            results = load(args.directory)
            try:
                figures = _plot(results, args.directory, args.pdf)
            except WriteFailed as failure:
                saved = f"the results (untouched) and the figures before {failure.path.name}"
                raise failure.telling(saved, f"{failure.path.name} and the figures after it") from None
            for path in figures:
                print(f"figure: {path}")
            return 0
        if args.command == "merge":
            from sweep.rundir import merge

            try:
                results, missing = merge(args.directory)
            except WriteFailed as failure:
                raise failure.telling("every chunk (untouched)", str(failure.path)) from None
            done = results.attrs["n_variants"] - missing
            print(f"{args.directory / 'results.nc'}: {done} variants, {missing} missing")
            return 0 if not missing else 1
        if args.command == "status":
            from sweep.rundir import status

            s = status(args.directory)
            print(
                f"{args.directory}: {s.done}/{s.variants} variants done ({s.chunks_done}/{s.chunks} chunks), "
                f"{s.missing} missing, {s.diverged} diverged, {s.chunks_damaged} chunk(s) damaged"
                + (f" (moved to {args.directory / 'chunks' / 'damaged'})" if s.chunks_damaged else "")
            )
            for line in s.found_damaged:
                print(f"sweep: error: {line}", file=sys.stderr)
            return 2 if s.found_damaged else 0
        if args.command == "submit":
            from sweep.submit import submit

            slurm = {"timeout_min": args.time, "gpus_per_node": args.gpus_per_task}
            if args.partition:
                slurm["slurm_partition"] = args.partition
            jobs = submit(
                args.experiment,
                args.out,
                args.array,
                tuple(args.overrides),
                args.scale,
                args.cluster,
                **slurm,
            )
            print(
                f"submitted {len(jobs)} task(s): {', '.join(str(job.job_id) for job in jobs)}; "
                f"then `sweep status {args.out}` / `sweep merge {args.out}`"
            )
            return 0
        if args.command == "figures":
            from sweep.gallery import regenerate

            paths = args.experiments or sorted(Path("experiments").glob("*.toml"))
            for png in regenerate(paths, args.scale, args.out):
                print(f"figure: {png}")
            return 0
        if args.command == "theory":
            from sweep.theory_cli import run_theory

            return run_theory(args)
    except (ConfigError, FileNotFoundError, DamagedFile, DamagedRun) as error:
        for line in str(error).splitlines():
            print(f"sweep: error: {line}", file=sys.stderr)
        return 2
    except WriteFailed as failure:
        return _write_failed(failure, _finishing_command(argv, args))
    except PermissionError as error:
        print(f"sweep: error: {error.filename}: {error.strerror}; check its owner and mode", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sweep: interrupted; finished chunks are saved (rerun with --resume)", file=sys.stderr)
        return 130
    except Terminated:
        print(
            "sweep: terminated (SIGTERM); the chunk in flight was abandoned, finished chunks are saved "
            "(rerun with --resume)",
            file=sys.stderr,
        )
        return 143
    return 2


if __name__ == "__main__":
    sys.exit(main())
