"""ROME, Rank-One Model Editing (Meng et al. 2022, "Locating and Editing Factual Associations
in GPT"), for Llama-family Hugging Face models (SmolLM2, ``deepaudit.lm.loader.tiny_lm``).

The MLP's output projection ``down_proj`` of one layer is read as a linear key-value memory:
its input at a subject's last token is a key ``k``, its output ``W k`` the value written to the
residual stream. One fact is rewritten by one rank-one change of ``W``:

1. key ``k*``: the input of ``down_proj`` at the subject's last token, averaged over the
   subject alone and after a few short prefixes sampled from the model (top-5 sampling from
   "The", as ROME's context templates), so the key stands for the subject in any context
   (``key_context="prompt"`` instead reads it after each prefix plus the edit prompt's text
   up to the subject, the context the edit is asked in);
2. value shift ``δ``: gradient steps (Adam) on a vector added to ``down_proj``'s output at the
   subject's last token, in the edit prompt alone and after each prefix, so that the new
   object becomes the next token; the loss is its negative log-likelihood + ROME's KL term
   (the next-token distribution at the subject's last token of "{subject} is a" must stay
   where it was, which guards the subject's other properties) + ROME's weight decay
   ``wd·|δ| / |v0|²``, with ``|δ|`` clamped to ``clamp_norm·|v0|`` (``v0`` the unedited output
   at the subject in the edit prompt); the target value is ``v* = W k* + δ``;
3. key covariance ``C = E[k kᵀ]`` (uncentered, ROME's second moment) over every token of a
   text sample: by default 1,000 statements drawn from the five ``deepaudit.lm.truth`` sets
   (offline; ``cov_texts`` replaces them), with a ridge of ``ridge·mean(diag C)`` so it inverts;
4. the closed form ``W += (v* - W k*) (C⁻¹k*)ᵀ / (k*ᵀ C⁻¹ k*)``: ``W k* = v*``, and a key
   ``k`` moves by ``δ`` times its C⁻¹-weighted overlap with ``k*``, so unrelated keys barely move.
   This is the paper's closed form with ``v* - W k* = δ``; ROME's code divides by the edit
   prompt's own key instead of ``k*``, which makes that one prompt's shift exactly ``δ``.

Hyperparameters follow the public Llama settings of ROME (EasyEdit's ``llama-7b``: 25 steps,
learning rate 0.5, KL factor 0.0625, weight decay 1e-3, clamp 4). The default layer is an
early-middle one, ``n_layers // 6`` (layer 5 of SmolLM2's 30; EasyEdit edits 5 of Llama's 32).
``edit`` returns an edited deep copy; the input model is never changed."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.internals import capture, intervene
from deepaudit.lm.facts import EditError, EditRequest, target_id
from deepaudit.lm.loader import LanguageModel
from deepaudit.tools.registry import register_tool

DOWN_PROJ = "model.layers.{}.mlp.down_proj"


def default_layer(n_layers: int) -> int:
    """The stated default edit layer: early-middle, ``n_layers // 6``."""
    return n_layers // 6


def check_layer(lm: LanguageModel, layer: int | None) -> int:
    """``layer`` (or the default) after checking that it exists and holds a Llama-style MLP."""
    layer = default_layer(lm.n_layers) if layer is None else layer
    if not 0 <= layer < lm.n_layers:
        raise EditError(f"layer {layer} does not exist: {lm.source} has layers 0..{lm.n_layers - 1}")
    modules = dict(lm.model.named_modules())
    mlp = DOWN_PROJ.format(layer).rsplit(".", 1)[0]
    missing = [n for n in ("down_proj", "gate_proj", "up_proj") if f"{mlp}.{n}" not in modules]
    if missing:
        raise EditError(f"{lm.source} has no Llama-style MLP at {mlp} (missing {missing}); "
                        "fact editing supports Llama-family models")
    return layer


def check_request(request: EditRequest) -> None:
    """The prompt template holds the subject slot once and the subject is not empty."""
    if request.template.count("{}") != 1:
        raise EditError(f"the prompt template {request.template!r} must contain exactly one '{{}}' for the subject")
    if not request.subject.strip():
        raise EditError("the edit request has an empty subject")


def frozen_copy(lm: LanguageModel, tag: str) -> LanguageModel:
    """A deep copy of the model with gradients off (the editor writes only into the copy)."""
    model = copy.deepcopy(lm.model)
    for p in model.parameters():
        p.requires_grad_(False)
    return LanguageModel(model.eval(), lm.tokenizer, f"{lm.source}+{tag}")


def subject_last_index(tokenizer: Any, prefix: str, template: str, subject: str) -> int:
    """Token index of the subject's last token in ``prefix + template.format(subject)``."""
    text = prefix + template.format(subject)
    end = len(prefix) + template.index("{}") + len(subject)
    head = tokenizer(text[:end], add_special_tokens=False)["input_ids"]
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    if full[: len(head)] != head:
        raise EditError(f"the subject {subject!r} does not end on a token boundary in {text!r}")
    return len(head) - 1


def down_proj(model: nn.Module, layer: int) -> nn.Linear:
    """The MLP output projection of ``layer``, the matrix an edit changes."""
    return dict(model.named_modules())[DOWN_PROJ.format(layer)]


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer of interest has run."""


def _stop(_module: nn.Module, _inputs, _output) -> None:
    raise _Stop


def mlp_keys(lm: LanguageModel, layer: int, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, T, d_ff)``: the input of ``down_proj``, ``act(gate_proj(x)) * up_proj(x)``, rebuilt
    from the two projections' outputs recorded by ``internals.capture``; the forward pass stops
    after that layer's MLP (the later layers cannot change it)."""
    mlp_name = DOWN_PROJ.format(layer).rsplit(".", 1)[0]
    mlp = dict(lm.model.named_modules())[mlp_name]
    names = [f"{mlp_name}.gate_proj", f"{mlp_name}.up_proj"]
    handle = mlp.register_forward_hook(_stop)
    try:
        with torch.no_grad(), capture(lm.model, names) as cache:
            try:
                lm.model(**batch)
            except _Stop:
                pass
    finally:
        handle.remove()
    return mlp.act_fn(cache[names[0]]) * cache[names[1]]


def logits_at(lm: LanguageModel, batch: dict[str, torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
    """Next-token logits at position ``idx[i]`` of each row ``(B, vocab)``: the output head is
    applied to those positions only (the vocabulary projection dominates a short prompt's cost)."""
    hidden = lm.model.model(**batch).last_hidden_state
    return lm.model.lm_head(hidden[torch.arange(len(idx)), idx])


def positions(lm: LanguageModel, prefixes: Sequence[str], template: str, subject: str) -> tuple[dict, torch.Tensor]:
    """The left-padded batch of ``prefix + template.format(subject)`` and each row's subject-last-token index."""
    batch = lm.encode([p + template.format(subject) for p in prefixes])
    width = batch["input_ids"].shape[1]
    lengths = batch["attention_mask"].sum(1)
    idx = [width - int(n) + subject_last_index(lm.tokenizer, p, template, subject) for p, n in zip(prefixes, lengths)]
    return batch, torch.tensor(idx)


def key_second_moment(lm: LanguageModel, layer: int, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
    """``E[k kᵀ]`` over every (non-padding) token of ``texts``, float64 ``(d_ff, d_ff)``."""
    total, count = None, 0
    for start in range(0, len(texts), batch_size):
        batch = lm.encode(list(texts[start : start + batch_size]))
        keys = mlp_keys(lm, layer, batch)[batch["attention_mask"].bool()].double()
        total = keys.T @ keys if total is None else total + keys.T @ keys
        count += len(keys)
    if total is None or not count:
        raise EditError("the covariance text sample is empty")
    return total / count


def default_cov_texts(n: int, seed: int) -> list[str]:
    """``n`` statements drawn at random from the five truth sets (``deepaudit.lm.truth``)."""
    from deepaudit.lm.truth import SETS, load_statements

    statements = [s for name in SETS for s in load_statements(name).statements]
    pick = np.random.default_rng(seed).permutation(len(statements))[:n]
    return [statements[i] for i in pick]


@torch.no_grad()
def sample_prefixes(lm: LanguageModel, per_length: int, lengths: Sequence[int], seed: int,
                    start: str = "The", top_k: int = 5) -> list[str]:
    """Short texts sampled from the model (top-k), each ending in ". ", to put a subject after."""
    gen = torch.Generator().manual_seed(seed)
    start_ids = lm.tokenizer(start, add_special_tokens=False)["input_ids"]
    out = []
    for length in lengths:
        ids = torch.tensor([start_ids] * per_length)
        for _ in range(length):
            last = torch.full((len(ids),), ids.shape[1] - 1)
            top = logits_at(lm, {"input_ids": ids}, last).topk(top_k)
            pick = torch.multinomial(top.values.softmax(-1), 1, generator=gen)
            ids = torch.cat([ids, top.indices.gather(1, pick)], 1)
        for row in ids.tolist():
            out.append(lm.tokenizer.decode(row, skip_special_tokens=True).strip() + ". ")
    return out


def rank_one(shift: torch.Tensor, k_star: torch.Tensor, second: torch.Tensor, ridge: float) -> torch.Tensor:
    """``(v* - W k*) (C⁻¹k*)ᵀ / (k*ᵀ C⁻¹ k*)`` with ``v* - W k* = shift`` and ``C`` the key second
    moment plus ``ridge·mean(diag C)·I``; float32 ``(d_model, d_ff)``."""
    regulariser = ridge * second.diagonal().mean() * torch.eye(len(second), dtype=second.dtype)
    u = torch.linalg.solve(second + regulariser, k_star)
    return (torch.outer(shift.double(), u) / (k_star @ u)).float()


@register_tool("rome", roles=("edit",), families=("lm",))
@dataclass
class Rome:
    """Rank-one edit of one fact at one layer's ``down_proj`` (see the module docstring)."""

    layer: int | None = None
    steps: int = 25
    lr: float = 0.5
    kl_factor: float = 0.0625
    weight_decay: float = 1e-3
    clamp_norm: float = 4.0
    prefixes_per_length: int = 3
    prefix_lengths: tuple[int, ...] = (5, 10)
    cov_texts: Sequence[str] | None = None
    n_cov_texts: int = 1000
    ridge: float = 1e-3
    key_context: str = "subject"
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def edit(self, lm: LanguageModel, request: EditRequest) -> LanguageModel:
        """An edited copy of ``lm`` in which ``request.prompt`` is completed by ``request.target_new``."""
        layer = check_layer(lm, self.layer)
        check_request(request)
        target = target_id(lm, request.target_new, "new target")
        prefixes = [""] + self._prefixes(lm)
        k_star = self.key(lm, layer, request, prefixes)
        second = self._second_moment(lm, layer)
        edited = frozen_copy(lm, f"rome[{request.subject}->{request.target_new.strip()}]")
        shift = self.value_shift(edited, layer, request, target, prefixes)
        with torch.no_grad():
            down_proj(edited.model, layer).weight += rank_one(shift, k_star, second, self.ridge)
        return edited

    def key(self, lm: LanguageModel, layer: int, request: EditRequest, prefixes: Sequence[str]) -> torch.Tensor:
        """``k*``: the input of ``down_proj`` at the subject's last token, averaged over the prefixes."""
        if self.key_context not in ("subject", "prompt"):
            raise EditError(f"key_context must be 'subject' or 'prompt', not {self.key_context!r}")
        template = "{}" if self.key_context == "subject" else request.template[: request.template.index("{}") + 2]
        batch, idx = positions(lm, prefixes, template, request.subject)
        return mlp_keys(lm, layer, batch)[torch.arange(len(idx)), idx].double().mean(0)

    def value_shift(self, lm: LanguageModel, layer: int, request: EditRequest, target: int,
                    prefixes: Sequence[str]) -> torch.Tensor:
        """``δ = v* - W k*``: the optimised shift of ``down_proj``'s output at the subject."""
        rewrite, rewrite_idx = positions(lm, prefixes, request.template, request.subject)
        kl_batch, kl_idx = positions(lm, [""], "{} is a", request.subject)
        name = DOWN_PROJ.format(layer)
        with torch.no_grad(), capture(lm.model, [name]) as cache:
            lm.model(**rewrite)
        v0 = cache[name][0, rewrite_idx[0]]
        width = rewrite["input_ids"].shape[1]
        last = torch.full((len(prefixes),), width - 1)
        delta = torch.zeros_like(v0, requires_grad=True)
        optimiser = torch.optim.Adam([delta], lr=self.lr)

        def shifted(idx: torch.Tensor, width: int):
            mask = torch.zeros(len(idx), width, 1)
            mask[torch.arange(len(idx)), idx] = 1.0
            return {name: lambda out: out + mask * delta}

        kl_init = None
        with torch.enable_grad():
            for step in range(self.steps):
                with intervene(lm.model, shifted(rewrite_idx, width)):
                    logp = torch.log_softmax(logits_at(lm, rewrite, last), -1)
                with intervene(lm.model, shifted(kl_idx, kl_batch["input_ids"].shape[1])):
                    kl_logp = torch.log_softmax(logits_at(lm, kl_batch, kl_idx), -1)
                if kl_init is None:
                    kl_init = kl_logp.detach()
                nll = -logp[:, target].mean()
                kl = F.kl_div(kl_init, kl_logp, log_target=True, reduction="batchmean")
                loss = nll + self.kl_factor * kl + self.weight_decay * delta.norm() / v0.norm() ** 2
                if loss.item() < 5e-2 or step == self.steps - 1:
                    break
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                with torch.no_grad():
                    max_norm = self.clamp_norm * v0.norm()
                    if delta.norm() > max_norm:
                        delta.mul_(max_norm / delta.norm())
        return delta.detach()

    def _prefixes(self, lm: LanguageModel) -> list[str]:
        key = ("prefixes", lm.source)
        if key not in self._cache:
            self._cache[key] = sample_prefixes(lm, self.prefixes_per_length, self.prefix_lengths, self.seed)
        return self._cache[key]

    def _second_moment(self, lm: LanguageModel, layer: int) -> torch.Tensor:
        key = ("cov", lm.source, layer)
        if key not in self._cache:
            texts = self.cov_texts if self.cov_texts is not None else default_cov_texts(self.n_cov_texts, self.seed)
            self._cache[key] = key_second_moment(lm, layer, texts)
        return self._cache[key]
