"""The floor of the edit track: no edit at all. Its scores are the unedited model's: efficacy
near 0 (the old object stays likelier), specificity 1 (nothing else changes)."""

from __future__ import annotations

from deepaudit.lm.facts import EditRequest
from deepaudit.lm.loader import LanguageModel
from deepaudit.tools.registry import register_tool


@register_tool("unedited", roles=("edit",), families=("lm",), kind="baseline")
class Unedited:
    def edit(self, lm: LanguageModel, request: EditRequest) -> LanguageModel:
        """The model itself, unchanged."""
        return lm
