"""Fine-tuning baseline for fact edits, the ROME paper's FT and FT+L: Adam steps on one layer's
``down_proj`` weight only (the layer ROME edits), minimising the new object's negative
log-likelihood after the edit prompt. With ``max_change`` every weight stays within that
distance of its original value (an L-infinity ball, FT+L's constraint; the paper's GPT-2 XL
setting: learning rate 5e-4, 25 steps, bound 5e-4); ``None`` leaves it unconstrained. It sees
only the edit prompt, so nothing keeps other facts in place: the contrast with ROME's
covariance-weighted rank-one update is what the specificity score measures."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepaudit.lm.facts import EditRequest, target_id
from deepaudit.lm.loader import LanguageModel
from deepaudit.tools.edit_rome import check_layer, check_request, down_proj, frozen_copy, logits_at
from deepaudit.tools.registry import register_tool


@register_tool("ft-l", roles=("edit",), families=("lm",), kind="baseline")
@register_tool("ft", roles=("edit",), families=("lm",), kind="baseline", preset={"max_change": None})
@dataclass
class FineTuneEdit:
    """Constrained (``max_change``) or plain fine-tuning of one ``down_proj`` on the edit prompt."""

    layer: int | None = None
    steps: int = 25
    lr: float = 5e-4
    max_change: float | None = 5e-4

    def edit(self, lm: LanguageModel, request: EditRequest) -> LanguageModel:
        """An edited copy of ``lm`` fine-tuned to complete ``request.prompt`` with ``request.target_new``."""
        layer = check_layer(lm, self.layer)
        check_request(request)
        target = target_id(lm, request.target_new, "new target")
        edited = frozen_copy(lm, f"ft[{request.subject}->{request.target_new.strip()}]")
        weight = down_proj(edited.model, layer).weight
        original = weight.detach().clone()
        weight.requires_grad_(True)
        batch = edited.encode([request.prompt])
        last = torch.tensor([batch["input_ids"].shape[1] - 1])
        optimiser = torch.optim.Adam([weight], lr=self.lr)
        with torch.enable_grad():
            for _ in range(self.steps):
                loss = -torch.log_softmax(logits_at(edited, batch, last), -1)[0, target]
                if loss.item() < 1e-2:
                    break
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if self.max_change is not None:
                    with torch.no_grad():
                        weight.copy_(original + (weight - original).clamp(-self.max_change, self.max_change))
        weight.requires_grad_(False)
        return edited
