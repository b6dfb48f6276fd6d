"""Every tool by name. Adding a tool: write its file, add one line here."""

from __future__ import annotations

from deepaudit.tools.base import InputDetector, ModelDetector, SupervisedDetector
from deepaudit.tools.mahalanobis import Mahalanobis
from deepaudit.tools.meta_classifier import MetaClassifier
from deepaudit.tools.neural_cleanse import NeuralCleanse
from deepaudit.tools.random_baseline import RandomBaseline
from deepaudit.tools.strip import Strip
from deepaudit.tools.weight_stats import WeightStats

TOOLS = {cls.name: cls for cls in (NeuralCleanse, Mahalanobis, Strip, WeightStats, RandomBaseline, MetaClassifier)}


def make_tool(name: str, seed: int = 0, **params):
    """Instantiate a registered tool."""
    if name not in TOOLS:
        raise ValueError(f"unknown tool {name!r}; registered tools: {sorted(TOOLS)}")
    return TOOLS[name](seed=seed, **params)


def roles(name: str) -> list[str]:
    """Which protocols a tool implements: ``model``, ``input`` and/or ``skyline``."""
    tool = make_tool(name)
    out = []
    if isinstance(tool, SupervisedDetector):
        out.append("skyline")
    if isinstance(tool, ModelDetector):
        out.append("model")
    if isinstance(tool, InputDetector):
        out.append("input")
    return out
