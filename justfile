# Tasks for sweep. `pip install rust-just` provides `just`.

venv := ".venv"
py := venv / "bin/python"

# create the virtual environment and install the package with test tools
setup:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install -q --upgrade pip
    {{py}} -m pip install -q -e '.[test]'

# the built-in demo: tanh MLPs on a Gaussian mixture, trainability phase diagram (about a minute on 2 cores)
demo: setup
    {{venv}}/bin/sweep demo --out runs/demo

# lint, format check and the whole test suite (what CI runs)
test: setup
    {{venv}}/bin/ruff check sweep plots tests benchmarks docs
    {{venv}}/bin/ruff format --check sweep plots tests benchmarks docs
    {{py}} -m pytest -q -n auto

# the fast subset of the tests (slow physics and end-to-end checks left out)
test-fast: setup
    {{py}} -m pytest -q -n auto -m "not slow"

# benchmarks (not part of the tests); the PyTorch comparisons need the bench extra
bench: setup
    {{py}} -m pip install -q -e '.[bench]'
    {{py}} benchmarks/bench_user_path.py
    {{py}} benchmarks/bench_engine.py
    {{py}} benchmarks/bench_architectures.py --small
    {{py}} benchmarks/bench_conv.py --quick
    {{py}} benchmarks/bench_theory.py
    {{py}} benchmarks/bench_spectrum.py
    {{py}} benchmarks/bench_spectrum_overhead.py --repeats 1
    {{py}} benchmarks/bench_chunking.py
    {{py}} benchmarks/bench_memory.py

# regenerate the figures of every experiment at quick scale into figures/
figures: setup
    {{venv}}/bin/sweep figures --scale quick --out figures

# rerun the quick figures (finished runs are reused) and check every number the docs quote from them
check-docs: figures
    {{py}} docs/check_numbers.py

# the papers' scale (meant for a GPU box)
figures-full: setup
    {{venv}}/bin/sweep figures --scale full --out figures/full
