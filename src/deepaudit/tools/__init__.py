"""The auditor's side: tools that see a model and a clean budget, never the planted truth.

This package never imports the zoo, where the planted truth lives (a test enforces it).
"""

from deepaudit.tools.base import InputDetector, ModelDetector, SupervisedDetector, Verdict
from deepaudit.tools.registry import TOOLS, make_tool, roles

__all__ = ["InputDetector", "ModelDetector", "SupervisedDetector", "TOOLS", "Verdict", "make_tool", "roles"]
