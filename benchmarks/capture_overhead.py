"""Activation-capture overhead against a bare forward pass and against peers (see deepaudit.bench.capture).

    nice python benchmarks/capture_overhead.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf

Same as ``deepaudit bench capture``; --help lists the options.
"""

from deepaudit.bench import run_benchmark

if __name__ == "__main__":
    import sys

    run_benchmark("capture", sys.argv[1:], prog="python benchmarks/capture_overhead.py")
