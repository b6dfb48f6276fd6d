"""The auditor's side: tools that see a model and a clean budget, never the planted truth.
Each tool is one file, registered where its class is defined (``tools.registry``).

This package never imports the zoo, where the planted truth lives (a test enforces it).
"""

from deepaudit.tools.base import ROLES, Verdict
from deepaudit.tools.registry import TOOLS, ToolSpec, make_tool, register_tool, tool_spec, tool_specs

__all__ = ["ROLES", "TOOLS", "ToolSpec", "Verdict", "make_tool", "register_tool", "tool_spec", "tool_specs"]
