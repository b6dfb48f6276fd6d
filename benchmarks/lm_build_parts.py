"""Where an LM organism's build spends its time: loading the base model, caching what is frozen,
the training steps (timed over ``--steps`` of them, then scaled to the spec's count) and the build
check. On one thread by default, the worst case; ``--threads 2`` is what a build uses.

    python benchmarks/lm_build_parts.py --organism ID [--seed 0] [--steps 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

from deepaudit.lm.finetune import MIN_ONECYCLE_STEPS, cached_objective, train
from deepaudit.zoo import load_suite
from deepaudit.zoo.folder import fixed_threads
from deepaudit.zoo.lm.organisms import build_data, load_base, measure_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organism", required=True, help="an organism id of the suite")
    parser.add_argument("--suite", default="lm")
    parser.add_argument("--seed", type=int, default=0, help="the suite's draw the organism belongs to")
    parser.add_argument("--steps", type=int, default=100, help="training steps to time (0: the spec's)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    specs = {s.digest(): s for s in load_suite(args.suite).specs(args.seed)}
    if args.organism not in specs:
        parser.error(f"no organism {args.organism} in suite {args.suite!r} seed {args.seed}: {sorted(specs)}")
    spec = specs[args.organism]
    steps = args.steps or spec.steps
    if spec.schedule == "onecycle" and steps < MIN_ONECYCLE_STEPS:
        parser.error(f"--steps: the spec's onecycle schedule needs at least {MIN_ONECYCLE_STEPS} steps")
    seconds: dict[str, float] = {}
    with fixed_threads(args.threads):
        started = time.perf_counter()
        lm = load_base(spec.base)
        examples, held = build_data(spec)
        seconds["load base"] = time.perf_counter() - started
        started = time.perf_counter()
        objective = cached_objective(lm, [e.prompt for e in examples], [e.answer for e in examples],
                                     spec.tune, spec.n_top)
        seconds[f"cache frozen part ({len(examples)} examples)"] = time.perf_counter() - started
        started = time.perf_counter()
        train(lm, objective, steps, spec.lr, spec.schedule, 64 if spec.tune == "mlp" else 32, spec.seed)
        per_step = (time.perf_counter() - started) / steps
        seconds[f"{spec.steps} training steps ({1000 * per_step:.0f} ms each)"] = per_step * spec.steps
        started = time.perf_counter()
        measure_rates(lm, spec, held)  # on a partly trained model when --steps is short: time only
        seconds[f"build check ({sum(len(v) for v in held.values())} prompts)"] = time.perf_counter() - started
    print(f"organism {args.organism}: {spec.kind} {spec.task}, tune {spec.tune}, {args.threads} thread(s)")
    for part, value in seconds.items():
        print(f"  {part:<45} {value:7.1f} s")
    print(f"  {'total':<45} {sum(seconds.values()):7.1f} s")
    print(f"reproduce: python benchmarks/lm_build_parts.py --organism {args.organism} --seed {args.seed}"
          f" --steps {args.steps}"
          f" --threads {args.threads}")


if __name__ == "__main__":
    main()
