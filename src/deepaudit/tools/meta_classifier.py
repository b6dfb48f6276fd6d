"""Supervised skyline, in the spirit of MNTD (Xu et al., S&P 2021) with fixed queries: a model
becomes a feature vector (its sorted output probabilities on fixed clean, noise and stamped
queries, and its sorted output-layer row norms), and the referee trains a logistic-regression
meta-classifier on other organisms' labels. No real auditor has labelled organisms: this is a
reference for how much a learned detector could extract, not a tool."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from deepaudit.subject import Subject
from deepaudit.tools.mahalanobis import candidate_triggers
from deepaudit.tools.registry import register_tool


@register_tool("meta_classifier", roles=("features",), families=("vision",), kind="skyline",
               needs=("continuous_inputs",), audit_share=0.0)
class MetaClassifier:

    def __init__(self, seed: int = 0, clean_queries: int = 32, noise_queries: int = 16, stamped_queries: int = 16):
        self.seed, self.clean_queries = seed, clean_queries
        self.noise_queries, self.stamped_queries = noise_queries, stamped_queries

    def queries(self, subject: Subject) -> torch.Tensor:
        """The same queries for every model of a data set (fixed seed, first budget inputs)."""
        rng = np.random.default_rng(self.seed)
        lo, hi = subject.value_range
        clean = subject.clean_x[: self.clean_queries]
        noise = torch.from_numpy(rng.uniform(lo, hi, size=(self.noise_queries, *subject.input_shape)).astype(np.float32))
        stamps = candidate_triggers(subject.input_shape, subject.value_range, self.stamped_queries, rng)
        stamped = torch.cat([t.apply(clean[i % len(clean)][None]) for i, t in enumerate(stamps)])
        return torch.cat([clean, noise, stamped])

    def features(self, subject: Subject) -> np.ndarray:
        probs = torch.softmax(subject.predict(self.queries(subject)), dim=1)
        sorted_probs = probs.sort(dim=1, descending=True).values.numpy()
        head = [m for m in subject.model.modules() if isinstance(m, nn.Linear)][-1]
        norms = np.sort(head.weight.detach().norm(dim=1).numpy())
        return np.concatenate([sorted_probs.ravel(), norms / norms.mean()]).astype(np.float64)
