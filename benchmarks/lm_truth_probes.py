"""The latent-knowledge numbers the README reports: truth probes fitted on trusted
SmolLM2-135M-Instruct residuals of "cities" statements, AUROC with bootstrap 95% CIs on
held-out cities and on four other statement sets, per layer and at each probe's chosen layer.
Needs the GGUF (`deepaudit lm fetch`, or --model PATH) and ../shared/data/truth.

    nice python benchmarks/lm_truth_probes.py [--model PATH] [--n-train 128] [--n-eval 128]
"""

from __future__ import annotations

import sys

from deepaudit.lm.cli import lm_app

if __name__ == "__main__":
    lm_app(["truth-bench", *sys.argv[1:]])
