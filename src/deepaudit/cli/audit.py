"""``deepaudit audit MODEL --data CLEAN_DATA``: the command line of the audit."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from deepaudit.cli.common import console, fail
from deepaudit.errors import DeepAuditError

COLORS = {"done": "green", "skipped": "yellow", "failed": "red"}
EXIT_STAGES_FAILED = 3  # audited, but some stages failed: the verdict cannot be read as a pass


def _stage_line(name: str, record: dict[str, Any]) -> None:
    status = record["status"]
    note = record.get("error") or record.get("message") or ""
    resumed = " (resumed from cache)" if record.get("resumed") else ""
    console.print(f"[{COLORS.get(status, 'white')}]{status:>7}[/] {name:<22} {record.get('wall_s', 0):7.2f} s"
                  f"{resumed} {escape(note)}")


def audit_command(
    model: Annotated[str, typer.Argument(help="An organism or card folder, a weights file (with --card or --arch), "
                                              "a Hugging Face model folder or id, or a causal LM's .gguf file.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Trusted clean inputs: .npz/.npy arrays, a folder of "
                                                           "images, .txt lines, or a built-in data set (digits, mnist1d); "
                                                           "for a causal LM, prompts: .txt (one per line), or .csv/.jsonl "
                                                           "with a prompt/text/statement column and optional label.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.json, report.html, stage cache).")
                   ] = Path("audit-report"),
    budget: Annotated[float | None, typer.Option("--budget", min=1.0, help="Time budget in seconds for all stages "
                                                                          "(default 120 for a classifier, 300 for a "
                                                                          "language model).")] = None,
    base: Annotated[str | None, typer.Option("--base", help="A causal LM's base model, the one it was fine-tuned from "
                                                            "(folder, .gguf, hub id, or smollm2 after `deepaudit lm "
                                                            "fetch`): trigger search then looks for what fine-tuning "
                                                            "added.")] = None,
    card: Annotated[Path | None, typer.Option("--card", help="Card JSON (arch, input_shape, num_classes) "
                                                             "for a weights file.")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="Python entry point module:function (or file.py:function) "
                                                               "returning the nn.Module for a weights file.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow pickle-based weights (torch.load "
                                                                      "weights_only=True). Never the default.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(
        "--trust-remote-code", help="Let a Hugging Face model run the code it ships (auto_map in its config). "
                                    "Never the default; without it such a model is refused.")] = False,
    tools: Annotated[list[str] | None, typer.Option("--tools", "-t", help="Tools to run (repeat); default all auditors.")
                     ] = None,
    max_inputs: Annotated[int | None, typer.Option(
        "--max-inputs", min=1, help="Clean inputs used at most, a seeded draw (default: 256 for a classifier, the "
                                    "budget its verdict's thresholds were chosen at; 512 prompts for a language model).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    store: Annotated[Path | None, typer.Option("--store", help="Results store with the tools' benchmark scores "
                                                                  "(default: $DEEPAUDIT_HOME/results.sqlite).")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="PyTorch CPU threads (default: PyTorch's; 1 is fastest for small models on a busy "
                                 "machine).")
    ] = None,
) -> None:
    """Audit your own model: sanity checks, black-box probes, then the toolbox's tools, each
    inside the time budget; writes a JSON and a self-contained HTML report. Interrupted?
    Run the same command again: finished stages are reused. Exit status: 0 audited, 2 not
    audited (bad input), 3 audited but some stages failed (the verdict is inconclusive about
    them), 130 interrupted."""
    from deepaudit.audit.protocol import run_audit
    from deepaudit.audit.report import REPORT_HTML, REPORT_JSON

    args = [model, "--data", data, "--out", str(out)] + (["--budget", f"{budget:g}"] if budget is not None else [])
    args += ["--base", str(base)] * (base is not None)
    args += ["--card", str(card)] * (card is not None) + ["--arch", str(arch)] * (arch is not None)
    args += ["--trust-pickle"] * trust_pickle + ["--trust-remote-code"] * trust_remote_code
    args += [a for t in tools or [] for a in ("--tools", t)]
    args += ["--max-inputs", str(max_inputs)] * (max_inputs is not None) + ["--seed", str(seed)]
    args += ["--store", str(store)] * (store is not None)
    args += ["--threads", str(threads)] * (threads is not None)
    try:
        report = run_audit(model, data, out, budget, card=card, arch=arch, trust_pickle=trust_pickle, tools=tools,
                           max_inputs=max_inputs, seed=seed, store=store, command=shlex.join(["deepaudit", "audit", *args]),
                           on_stage=_stage_line, threads=threads, trust_remote_code=trust_remote_code,
                           base=base)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted:[/yellow] the partial report is in {out}; run the same command to resume.")
        raise typer.Exit(code=130) from None
    except DeepAuditError as exc:  # the report itself cannot be written
        fail(exc)
    for note in report["notes"]:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    for error in report["errors"]:
        console.print(f"[red]error:[/red] {escape(error)}")
    verdict = report["verdict"]
    console.print(f"[bold]{escape(verdict['label'].upper())}[/bold]: {escape(verdict['summary'])}")
    if "truth_check" in report:
        console.print(f"truth check (organism): {escape(str(report['truth_check']))}")
    console.print(f"report: {out / REPORT_HTML} and {out / REPORT_JSON}")
    if report["status"] == "failed":
        raise typer.Exit(code=2)
    if report["verdict"].get("failed_stages"):
        raise typer.Exit(code=EXIT_STAGES_FAILED)
