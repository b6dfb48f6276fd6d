"""What the combinations share: each part's verdict (a shared finding, computed once per organism),
the inconclusive parts left out by name, and one of scipy's ``combine_pvalues`` methods (Fisher,
Stouffer, Tippett) on the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy.stats import combine_pvalues

from deepaudit.tools.base import Verdict


def combined_p_value(method: str, p_values: Sequence[float]) -> float:
    """scipy's ``combine_pvalues`` by ``method`` on ``p_values``, each clipped to [1e-12, 1 - 1e-12]
    (a p-value of exactly 0 or 1 is infinite for Fisher's and Stouffer's statistics)."""
    return float(combine_pvalues(np.clip(p_values, 1e-12, 1.0 - 1e-12), method=method).pvalue)


def conclusive(parts: Mapping[str, Verdict], read: Callable[[Verdict], float]
               ) -> tuple[dict[str, float], dict[str, str]]:
    """``read`` of each part that reached a conclusion, and why each other part did not."""
    used = {name: read(v) for name, v in parts.items() if "inconclusive" not in v.evidence}
    left_out = {name: str(v.evidence["inconclusive"]) for name, v in parts.items() if "inconclusive" in v.evidence}
    return used, left_out
