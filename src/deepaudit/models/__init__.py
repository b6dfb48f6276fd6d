"""Architectures the zoo trains and the audit can rebuild from a card."""

from deepaudit.models.architectures import ARCHITECTURES, build_model, penultimate_layer

__all__ = ["ARCHITECTURES", "build_model", "penultimate_layer"]
