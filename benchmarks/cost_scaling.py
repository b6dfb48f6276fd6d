"""Audit time and peak memory against MLP width, depth and the number of organisms (see deepaudit.bench.scaling).

    nice python benchmarks/cost_scaling.py

Same as ``deepaudit bench scaling``; --help lists the options.
"""

from deepaudit.bench import run_benchmark

if __name__ == "__main__":
    import sys

    run_benchmark("scaling", sys.argv[1:], prog="python benchmarks/cost_scaling.py")
