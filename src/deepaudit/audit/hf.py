"""Hugging Face models (transformers is imported only here, and only when needed): an image
classifier, a sequence classifier or a causal language model, wrapped so that the audit sees
one ``nn.Module`` mapping a batch of inputs to logits. Weights are read from safetensors
unless the user trusts pickles, and a model's own code (``auto_map``) runs only when the user
passed ``--trust-remote-code``: transformers is never left to ask on stdin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepaudit.audit.model import AuditedModel, file_digest
from deepaudit.errors import DeepAuditError, OrganismError
from deepaudit.internals import module_names

KINDS = {"ForImageClassification": "image_classifier", "ForSequenceClassification": "sequence_classifier",
         "ForCausalLM": "causal_lm"}
MAPPINGS = {"image_classifier": "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",
            "sequence_classifier": "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",
            "causal_lm": "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"}


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


def _mapped_classes(kind: str) -> set[str]:
    """The class names transformers' Auto class for ``kind`` maps model types to (GPT2LMHeadModel
    for causal LMs, although its name does not end in ForCausalLM)."""
    from transformers.models.auto import modeling_auto

    names: set[str] = set()
    for value in getattr(modeling_auto, MAPPINGS[kind]).values():
        names.update([value] if isinstance(value, str) else value)
    return names


def _kind(config: Any) -> str:
    """The audit's kind of a model, from the classes its config names: those of the Auto mappings,
    else (a class of the model's own trusted code) by the name's suffix."""
    architectures = getattr(config, "architectures", None) or []
    for arch in architectures:
        for kind in MAPPINGS:
            if arch in _mapped_classes(kind):
                return kind
    for arch in architectures:
        for suffix, kind in KINDS.items():
            if arch.endswith(suffix):
                return kind
    raise OrganismError(f"unsupported Hugging Face model {getattr(config, 'architectures', None)}: the audit "
                        "handles image classifiers, sequence classifiers and causal language models")


def load_hf_model(name: str, trust_pickle: bool, local: bool, trust_remote_code: bool = False) -> AuditedModel:
    """Load a Hugging Face model folder (``local``) or hub id into an AuditedModel. A model that
    ships its own code is refused unless ``trust_remote_code`` (the user's --trust-remote-code)."""
    try:
        import transformers
    except ImportError as exc:
        raise OrganismError(f"{name} is a Hugging Face model; install transformers to audit it "
                            "(pip install transformers)") from exc
    from deepaudit.lm.loader import custom_code

    try:
        code = None if trust_remote_code else custom_code(name, transformers, local_files_only=local)
        if code:
            raise OrganismError(f"{name} ships custom code that loading it would run ({code}); deepaudit never runs "
                                "a model's own code unless you pass --trust-remote-code")
        config = transformers.AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code,
                                                         local_files_only=local)
        kind = _kind(config)
        if kind == "causal_lm":
            from deepaudit.audit.language import load_language_model

            return load_language_model(name, local, trust_remote_code)
        auto = {"image_classifier": transformers.AutoModelForImageClassification,
                "sequence_classifier": transformers.AutoModelForSequenceClassification,
                "causal_lm": transformers.AutoModelForCausalLM}[kind]
        hf = auto.from_pretrained(name, use_safetensors=None if trust_pickle else True,
                                  trust_remote_code=trust_remote_code, local_files_only=local)
        tokenizer = None if kind == "image_classifier" else transformers.AutoTokenizer.from_pretrained(
            name, trust_remote_code=trust_remote_code, local_files_only=local)
    except DeepAuditError:  # ours, already clear (a refused model, a language model that would not load)
        raise
    except Exception as exc:  # transformers' refusals (OSError, ValueError, ...), or the model's own trusted code
        hint = "" if trust_pickle else " (only safetensors weights are read; --trust-pickle allows others)"
        raise OrganismError(f"cannot load the Hugging Face model {name!r}{hint}: {type(exc).__name__}: {exc}") from exc
    hf.eval()
    card: dict[str, Any] = {"task": kind, "arch": type(hf).__name__}
    source = {"kind": "huggingface", "path": name, "hf_kind": kind, "transformers": transformers.__version__,
              "trust_remote_code": trust_remote_code}
    if local:
        source["sha256"] = file_digest(Path(name))
    else:
        source["revision"] = getattr(config, "_commit_hash", None)
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
