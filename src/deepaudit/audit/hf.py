"""Hugging Face models (transformers is imported only here, and only when needed): an image
classifier, a sequence classifier or a causal language model, wrapped so that the audit sees
one ``nn.Module`` mapping a batch of inputs to logits. Weights are read from safetensors
unless the user trusts pickles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepaudit.audit.model import AuditedModel, file_digest
from deepaudit.errors import OrganismError
from deepaudit.internals import module_names

KINDS = {"ForImageClassification": "image_classifier", "ForSequenceClassification": "sequence_classifier",
         "ForCausalLM": "causal_lm"}


class ImageLogits(nn.Module):
    """pixel_values ``(N, C, H, W)`` -> class logits."""

    def __init__(self, hf: nn.Module):
        super().__init__()
        self.hf = hf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x).logits


class TokenLogits(nn.Module):
    """Left-padded token ids ``(N, L)`` -> logits at the last position: the class logits of a
    sequence classifier, or a causal LM's next-token distribution."""

    def __init__(self, hf: nn.Module, pad_id: int):
        super().__init__()
        self.hf, self.pad_id = hf, pad_id

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.hf(input_ids=ids, attention_mask=(ids != self.pad_id).long()).logits
        return out if out.dim() == 2 else out[:, -1]


def _kind(config: Any) -> str:
    for arch in getattr(config, "architectures", None) or []:
        for suffix, kind in KINDS.items():
            if arch.endswith(suffix):
                return kind
    raise OrganismError(f"unsupported Hugging Face model {getattr(config, 'architectures', None)}: the audit "
                        "handles image classifiers, sequence classifiers and causal language models")


def load_hf_model(name: str, trust_pickle: bool, local: bool):
    """Load a Hugging Face model folder (``local``) or hub id into an AuditedModel."""
    try:
        import transformers
    except ImportError as exc:
        raise OrganismError(f"{name} is a Hugging Face model; install transformers to audit it "
                            "(pip install transformers)") from exc
    try:
        config = transformers.AutoConfig.from_pretrained(name, local_files_only=local)
        kind = _kind(config)
        auto = {"image_classifier": transformers.AutoModelForImageClassification,
                "sequence_classifier": transformers.AutoModelForSequenceClassification,
                "causal_lm": transformers.AutoModelForCausalLM}[kind]
        hf = auto.from_pretrained(name, use_safetensors=None if trust_pickle else True, local_files_only=local)
        tokenizer = None if kind == "image_classifier" else transformers.AutoTokenizer.from_pretrained(
            name, local_files_only=local)
    except OrganismError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        hint = "" if trust_pickle else " (only safetensors weights are read; --trust-pickle allows others)"
        raise OrganismError(f"cannot load the Hugging Face model {name!r}{hint}: {exc}") from exc
    hf.eval()
    card: dict[str, Any] = {"task": kind, "arch": type(hf).__name__}
    source = {"kind": "huggingface", "path": name, "hf_kind": kind, "transformers": transformers.__version__}
    if local:
        source["sha256"] = file_digest(Path(name))
    if kind == "image_classifier":
        size = getattr(config, "image_size", None)
        channels = getattr(config, "num_channels", None)
        if isinstance(size, int) and channels:
            card["input_shape"] = [channels, size, size]
        model: nn.Module = ImageLogits(hf)
        modality = "continuous"
    else:
        assert tokenizer is not None  # loaded above for every kind but image classifiers
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        model, modality = TokenLogits(hf, int(pad or 0)), "tokens"
    card["num_classes"] = int(config.num_labels if kind != "causal_lm" else config.vocab_size)
    card["layers"] = module_names(model)
    return AuditedModel(model, card, source, modality=modality, tokenizer=tokenizer)
