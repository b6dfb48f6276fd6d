"""Known-algorithm organisms: one-layer transformers that grok modular addition (Nanda et al.
2023), with the two controls (no weight decay; 80% of the data), their training recorded by
the monitor, and Nanda et al.'s progress measures sealed in the truth."""

from deepaudit.zoo.grokking.build import build_grok_organism, run_id
from deepaudit.zoo.grokking.spec import PRESETS, GrokSpec, dataset, grok_specs
from deepaudit.zoo.grokking.suite import build_grok_suite, grok_suite_name

__all__ = ["GrokSpec", "PRESETS", "build_grok_organism", "build_grok_suite", "dataset", "grok_specs",
           "grok_suite_name", "run_id"]
