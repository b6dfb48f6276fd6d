"""Max pooling through the channels-last kernel against PyTorch's plain layers on the zoo's CNNs
(see deepaudit.bench.pooling): a search step and a training step, as ratios, numbers checked equal.

    nice python benchmarks/pooling_speed.py

Same as ``deepaudit bench pooling``; --help lists the options.
"""

from deepaudit.bench import run_benchmark

if __name__ == "__main__":
    import sys

    run_benchmark("pooling", sys.argv[1:], prog="python benchmarks/pooling_speed.py")
