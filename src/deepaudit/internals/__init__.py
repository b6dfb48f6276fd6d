"""Model internals: capture and intervene on named modules through PyTorch forward hooks, or
capture without hooks from a torch.fx trace of a small model (``traced``)."""

from deepaudit.internals.cache import run_with_cache
from deepaudit.internals.capture import ActivationCache, capture, intervene, module_inputs, module_names
from deepaudit.internals.traced import TraceError, capture_traced

__all__ = ["ActivationCache", "TraceError", "capture", "capture_traced", "intervene", "module_inputs", "module_names",
           "run_with_cache"]
