"""The numbers the README reports for the grokking organisms: per run, the key frequencies,
the phase boundaries and the progress measures at them, training wall time; the
reverse-engineer track's agreement; the forecast track's lead time and false alarms.
Builds the suite first (or reuses it), so a first run takes as long as `deepaudit grok run`.

    nice python benchmarks/grokking.py [preset] [zoo dir] [store]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from deepaudit.game.forecast import run_forecast
from deepaudit.game.reverse import run_reverse
from deepaudit.zoo import read_truth
from deepaudit.zoo.grokking import build_grok_suite, grok_suite_name


def main(preset: str, zoo: Path, store: Path) -> None:
    manifest = build_grok_suite(preset, (0,), zoo, store, jobs=3)
    suite = grok_suite_name(preset)
    print(f"== organisms ({preset})")
    for oid in manifest["organisms"]:
        t = read_truth(zoo / oid)
        ph = t["phases"]
        print(f"{t['role']:9s} p={t['spec']['p']} frac={t['spec']['train_frac']} wd={t['spec']['weight_decay']} "
              f"keys={t['key_frequencies']} train_acc={t['final_train_acc']:.3f} test_acc={t['final_test_acc']:.3f} "
              f"memorised@{ph['memorised_step']} cleanup@{ph['cleanup_step']} grokked@{ph['grok_step']} "
              f"train_wall_s={t['train_wall_s']}")
        for boundary in ("at_start", "at_memorised", "at_cleanup", "at_grokked", "at_end"):
            if ph[boundary]:
                print(f"    {boundary:12s} " + " ".join(f"{k}={v:.3g}" for k, v in ph[boundary].items()))
    print("== reverse-engineer track (fourier_program)")
    for r in run_reverse(zoo, manifest["organisms"], store, suite):
        print(f"{r['role']:9s} true={r['true_keys']} found={list(r['program']['frequencies'])} "
              f"agreement={r['agreement']:.4f} program_acc={r['program_accuracy']:.4f} "
              f"model_acc={r['model_accuracy']:.4f} jaccard={r['frequency_jaccard']:.2f}")
    print("== forecast track")
    for name, result in run_forecast(zoo, manifest["organisms"], store, suite).items():
        print(f"{name}: {json.dumps(result['summary'])}")
        for r in result["runs"]:
            print(f"    {r['role']:9s} alarm@{r['alarm_step']} predicted_jump@{r['predicted_jump']} jump@{r['jump_step']} "
                  f"test_loss_watch@{r['baseline_alarm']} lead={r.get('lead_steps', '-')} "
                  f"false_alarm={r.get('false_alarm', '-')}")
    print(f"command: nice python benchmarks/grokking.py {preset} {zoo} {store}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "full", Path(args[1] if len(args) > 1 else "/tmp/grok_full/zoo"),
         Path(args[2] if len(args) > 2 else "/tmp/grok_full/results.sqlite"))
