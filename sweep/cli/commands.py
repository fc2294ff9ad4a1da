"""The ``sweep`` command's commands: ``main`` parses the arguments (``sweep.cli.parser``) and hands
them to the importable functions that do the work; only the printing lives here.

    sweep run EXPERIMENT.toml --out DIR [--set section.key=value ...] [--force | --resume]
    sweep plot DIR
    sweep demo [--out DIR]
    sweep theory --activation NAME --sigma-b2 X [--sigma-w2 A B ...] [--json] [--plot FILE]

Bad input (a file, a field, an option) or a damaged run directory exits with code 2 and one line on
stderr per problem, naming the file or the option and what to do; a file that cannot be written (a
full disk) exits with code 1 and one line saying what is saved, what is not and the command that
finishes the job.

Each command imports only what it needs: ``sweep --help``, ``sweep status`` and ``sweep theory`` start
without the training path (sweep.runner.engine, sweep.runner.train, optax) or matplotlib; ``sweep --help``
without JAX.
"""

from __future__ import annotations

import argparse
import gc
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from sweep.cli.parser import build_parser

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


DEMO_EXPERIMENT = "demo.toml"  # shipped inside the package, beside this module (sweep/cli/demo.toml)


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
    engine's own (``attrs``, see sweep.runner.engine.Timing), and drawing the figures."""
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
    from sweep.runner.engine import as_experiment, run
    from sweep.storage.integrity import WriteFailed

    imported = _process_seconds()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"sweep: {message}", file=sys.stderr)

    from sweep.runner.chunks import parse_shard
    from sweep.runner.distributed import combine, initialize

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
    from sweep.storage.integrity import WriteFailed

    try:
        return draw_all(results, out / "figures", ("png", "pdf") if pdf else ("png",))
    except OSError as error:  # e.g. making the folder on a full disk (each figure: WriteFailed)
        raise WriteFailed.of(out / "figures", error) from error


def _plot_command(args: argparse.Namespace) -> int:
    """``sweep plot DIR``: load the results and draw their figures (``main`` pauses the garbage collector
    around it)."""
    from sweep.storage.compile_cache import use_compile_cache
    from sweep.storage.integrity import WriteFailed
    from sweep.storage.rundir import load

    # theory curves not kept beside the figures (a run drawn with --no-plot, or by older code) are
    # computed: their small programs are worth keeping too (compiled: 2-3 s; loaded: 0.5 s)
    use_compile_cache(min_compile_seconds=0.0)
    results = load(args.directory)
    try:
        figures = _plot(results, args.directory, args.pdf)
    except WriteFailed as failure:
        saved = f"the results (untouched) and the figures before {failure.path.name}"
        raise failure.telling(saved, f"{failure.path.name} and the figures after it") from None
    for path in figures:
        print(f"figure: {path}")
    return 0


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
    if args.command != "plot":
        return _command(argv, args)
    # sweep plot makes little garbage next to the long-lived objects it imports (JAX, xarray, matplotlib):
    # the garbage collector's passes over them were 0.3-0.4 s of a 2 s command (5 MB more without them)
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _command(argv, args)
    finally:
        if collecting:
            gc.enable()


def _command(argv: list[str], args: argparse.Namespace) -> int:
    """Run the parsed command; errors become the messages and exit codes ``main`` documents."""
    from sweep.config import ConfigError  # after parsing: `sweep --help` needs neither (nor JAX)
    from sweep.storage.integrity import DamagedFile, DamagedRun, WriteFailed

    try:
        if args.command == "run":
            return _run(args, args.experiment)
        if args.command == "demo":
            with resources.as_file(resources.files("sweep.cli") / DEMO_EXPERIMENT) as path:
                return _run(args, path)
        if args.command == "plot":
            return _plot_command(args)
        if args.command == "merge":
            from sweep.storage.rundir import merge

            try:
                results, missing = merge(args.directory)
            except WriteFailed as failure:
                raise failure.telling("every chunk (untouched)", str(failure.path)) from None
            done = results.attrs["n_variants"] - missing
            print(f"{args.directory / 'results.nc'}: {done} variants, {missing} missing")
            return 0 if not missing else 1
        if args.command == "status":
            from sweep.storage.rundir import status

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
            from sweep.runner.submit import submit

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
            from sweep.cli.gallery import regenerate

            paths = args.experiments or sorted(Path("experiments").glob("*.toml"))
            for png in regenerate(paths, args.scale, args.out):
                print(f"figure: {png}")
            return 0
        if args.command == "theory":
            from sweep.cli.theory import run_theory

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
