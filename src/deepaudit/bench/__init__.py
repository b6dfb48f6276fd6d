"""Performance benchmarks, runnable from ``benchmarks/*.py`` or ``deepaudit bench NAME``.
Each prints its figures, the machine's load, and the exact command that reproduces them;
timings are ratios to a baseline measured in the same run, because the machine is shared."""

from __future__ import annotations

from importlib import import_module

BENCHMARKS = {
    "capture": "deepaudit.bench.capture",
    "pooling": "deepaudit.bench.pooling",
    "scaling": "deepaudit.bench.scaling",
    "stages": "deepaudit.bench.stages",
}


def run_benchmark(name: str, argv: list[str], prog: str | None = None) -> None:
    """Run benchmark ``name`` with command-line arguments ``argv``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; available: {sorted(BENCHMARKS)}")
    import_module(BENCHMARKS[name]).main(argv, prog or f"deepaudit bench {name}")
