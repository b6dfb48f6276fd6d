"""Activation-capture overhead (forward hooks, and the torch.fx traced path on the zoo's CNN)
against a bare forward pass and against peers (see deepaudit.bench.capture).

    nice python benchmarks/capture_overhead.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf
    nice python benchmarks/capture_overhead.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --keep-freed-memory

Same as ``deepaudit bench capture``; --help lists the options (--keep-freed-memory: glibc keeps
freed memory in the benchmark process, so kept activations do not fault in fresh pages).
"""

from deepaudit.bench import run_benchmark

if __name__ == "__main__":
    import sys

    run_benchmark("capture", sys.argv[1:], prog="python benchmarks/capture_overhead.py")
