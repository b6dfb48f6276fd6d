"""What an auditor of a language model is handed: the model, its public card, trusted prompts
(with their labels where the trusted context has them) and, when known, the base model it was
fine-tuned from. Never the planted truth. Residuals are a shared finding of the organism,
cached per prompt: tools that read the same prompts share the forward passes, which are
charged once, to the finding ``residuals``, not to the tool that asked first."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from deepaudit.errors import DataError
from deepaudit.findings import Cost, Findings
from deepaudit.lm.activations import last_token_residuals
from deepaudit.lm.loader import LanguageModel
from deepaudit.triggers import TextTrigger

RESIDUALS = "residuals"


@dataclass
class LMSubject:
    """A language model under audit; ``forward_passes`` counts the prompts its tools forward."""

    family: ClassVar[str] = "lm"

    lm: LanguageModel
    card: dict[str, Any]
    trusted_prompts: list[str]
    trusted_labels: np.ndarray | None = None
    base: LanguageModel | None = None
    forward_passes: int = 0
    findings: Findings = field(default_factory=Findings, repr=False)
    trusted_texts: list[str] | None = None  # the user's texts, before the card's template made them prompts
    template: str = "{}"

    def __post_init__(self) -> None:
        if self.trusted_texts is None:
            self.trusted_texts, self.template = list(self.trusted_prompts), "{}"
        if len(self.trusted_texts) != len(self.trusted_prompts):
            raise DataError(f"{len(self.trusted_prompts)} trusted prompts but {len(self.trusted_texts)} texts")
        if not self.trusted_prompts:
            raise DataError("an LM audit needs at least one trusted prompt")
        if self.trusted_labels is not None and len(self.trusted_labels) != len(self.trusted_prompts):
            raise DataError(f"{len(self.trusted_prompts)} trusted prompts but {len(self.trusted_labels)} labels")

    def phrase_pairs(self, phrase: TextTrigger, n: int, seed: int) -> tuple[list[str], list[str]]:
        """Up to ``n`` trusted prompts (the draw ``sample_prompts`` makes) without and with ``phrase``
        placed in their text (before, after or inside it, as the phrase says; the template around)."""
        pick = np.random.default_rng(seed).choice(len(self.trusted_prompts), min(n, len(self.trusted_prompts)),
                                                  replace=False)
        texts = [(self.trusted_texts or self.trusted_prompts)[i] for i in pick]
        return [self.trusted_prompts[i] for i in pick], self.with_phrase(phrase, texts)

    def with_phrase(self, phrase: TextTrigger, texts: Sequence[str] | None = None) -> list[str]:
        """Prompts made from ``texts`` (default: the trusted ones) with ``phrase`` placed in each."""
        chosen = texts if texts is not None else self.trusted_texts or []
        return [self.template.format(phrase.apply(t)) for t in chosen]

    @property
    def n_layers(self) -> int:
        return self.lm.n_layers

    def sample_prompts(self, n: int, seed: int) -> list[str]:
        """Up to ``n`` trusted prompts drawn without replacement (the same for the same seed)."""
        pick = np.random.default_rng(seed).choice(len(self.trusted_prompts), min(n, len(self.trusted_prompts)),
                                                  replace=False)
        return [self.trusted_prompts[i] for i in pick]

    def residuals(self, prompts: Sequence[str], layers: Sequence[int] | None = None) -> np.ndarray:
        """Last-token residual stream ``(len(layers), N, d)`` after each decoder layer (default all)."""
        cache: dict[str, np.ndarray] = self.findings.values.setdefault(RESIDUALS, {})
        cost = self.findings.cost.setdefault(RESIDUALS, Cost())
        missing = list(dict.fromkeys(p for p in prompts if p not in cache))
        if missing:
            start, cpu = time.perf_counter(), time.process_time()
            acts = last_token_residuals(self.lm, missing)
            for i, prompt in enumerate(missing):
                cache[prompt] = acts[:, i]
            wall = time.perf_counter() - start
            cost.wall_s += wall
            cost.cpu_s += time.process_time() - cpu
            cost.forward_passes += len(missing)
            self.findings.busy_s += wall
            self.findings.busy_cpu_s += time.process_time() - cpu
        self.findings.used.add(RESIDUALS)
        stacked = np.stack([cache[p] for p in prompts], axis=1)
        return stacked if layers is None else stacked[list(layers)]
