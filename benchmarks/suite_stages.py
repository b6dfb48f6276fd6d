"""Wall time of a suite by stage, read from a results store (see deepaudit.bench.stages).

    nice python benchmarks/suite_stages.py --store results.sqlite --suite quick

Same as ``deepaudit bench stages``; --help lists the options.
"""

from deepaudit.bench import run_benchmark

if __name__ == "__main__":
    import sys

    run_benchmark("stages", sys.argv[1:], prog="python benchmarks/suite_stages.py")
