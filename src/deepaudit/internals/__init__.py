"""Model internals: capture and intervene on named modules through PyTorch forward hooks."""

from deepaudit.internals.capture import ActivationCache, capture, intervene, module_names, run_with_cache

__all__ = ["ActivationCache", "capture", "intervene", "module_names", "run_with_cache"]
