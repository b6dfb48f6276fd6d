"""Activation-capture overhead (forward hooks, and the torch.fx traced path on the zoo's CNN)
against a bare forward pass and against peers (see deepaudit.bench.capture).

    nice python benchmarks/capture_overhead.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf
    DEEPAUDIT_MALLOC=system nice python benchmarks/capture_overhead.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf

Same as ``deepaudit bench capture``; --help lists the options. Like the deepaudit command, it
tells glibc to keep freed memory (deepaudit.internals.allocator); DEEPAUDIT_MALLOC=system keeps
the system's allocator settings, for comparison.
"""

from deepaudit.bench import run_benchmark

if __name__ == "__main__":
    import sys

    run_benchmark("capture", sys.argv[1:], prog="python benchmarks/capture_overhead.py")
