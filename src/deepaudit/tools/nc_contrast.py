"""Neural Cleanse contrasted with clean references: for every class, the smallest mask-and-pattern
trigger that sends the audited model's inputs to the class *while a reference model keeps them in
the classes it gives them unstamped* (Neural Cleanse's search, Wang et al., S&P 2019, with the
reference's cross-entropy on those classes added to the loss; version 2: its own classes, not
the budget's labels, which an MNIST-1D student gets wrong on a third of the inputs). A natural
shortcut (a class that is easy to reach in any model of the task) moves the reference too, so
it no longer counts; a planted trigger works through features the reference lacks, so it stays
small. The two references are the model's own re-headed copy (``deepaudit.tools.rehead``,
Feature Shift Tuning's head re-init, Min et al., NeurIPS 2023) and a student distilled from it
(``nc_distill``; Hinton et al. 2015), trained until it picks the model's class on 95% of the
budget: a student that misses the model's natural shortcuts flags them as planted (the false
alarms on clean MNIST-1D CNNs, docs/vision.md). Each carries a planted trigger less than the
model does (the re-headed copy of an MNIST-1D trojan sent 27% of held-out inputs to its target,
the model 99.7%; students 23-94% on quick-suite trojans: docs/vision.md). Each class's score is
its log mask size, averaged over the two references; the contrast gap is how far the smallest
lies below the median class (a log gap, scale-free).

Version 3 adds the same question asked after the search instead of inside it: Neural Cleanse's
own search on the model alone, then, for each class, the share of the references' inputs its
stamp moves to the class too (a trigger's transfer). Where the references carry part of a planted
trigger (a re-headed MNIST-1D CNN keeps the convolutions that read it), the joint search grows
every class's mask and the contrast gap says nothing (MNIST-1D CNN patch trojans: within-card
AUROC 0.57 on six draws); the model's own smallest stamp still moves the model and less of the
references. The specific gap is each class's distance below the median, times the share its
stamp does not move, at its largest; the statistic is the contrast gap plus the specific gap,
and P(planted) a logistic of it fitted on the standard suite's draws 1 and 3 (the design draws,
docs/vision.md). It asks only for what the auditor has: the card and the trusted budget.

Version 4 is version 3 with each search ``STEPS`` long instead of 300, the shortest that ranked the
design draws as well (a search cut short is exactly the first steps of the longer one), to keep
within the 10 CPU-seconds an organism issue 15 allows.

Version 5 runs the model's own search twice, from two seeds at half the batch (16 inputs a
class and step, the cost of one search at 32), and keeps per class the smaller mask: one search
missed the planted patch of some MNIST-1D CNN trojans (the target's mask larger than the true
4-position patch that sends every input there). A second start mended 2 of the 7 such misses on
the design draws; it ranked those draws better (+0.012, +0.019) and the held-out draw 10 the same
as version 4 (docs/vision.md).

Version 6 adds one-to-one implants' own question, asked the same way: a label-pair search (the
model alone, ``deepaudit.tools.nc_pairs``: for every source and target class the smallest stamp
that sends the source's inputs to the target) and, per pair, the share of the references' own
source-class inputs its stamp sends to the target too. A pair's stamp moves a clean MNIST-1D
reference far more than a digits one (mean transfer 0.65-0.74 against 0.94-0.95), so each pair is
judged against the model's own median pair: the pair gap is the largest product of a pair's
distance below the median pair's log mask size and how much less than the median pair its stamp
moves the references, and the statistic adds half of it. On the design draws it ranked one-to-one
implants better (docs/vision.md); its cost is paid by ``channels_last_pooling``
(``deepaudit.internals.pooling``: the CNNs' max pooling, 28-32% of a search, through a faster kernel
with the same numbers).

``repeats`` runs the whole procedure (references and searches) again with other seeds and averages
the class scores. On clean MNIST-1D CNNs one run's gap is mostly the noise of its seed (two seeds
on the same model and budget correlate about 0.25, docs/vision.md), and since a game draw gives
every organism the same seed, that noise moves a whole draw's clean models together."""

from __future__ import annotations

import copy

import numpy as np
import torch

from deepaudit.internals.pooling import channels_last_pooling
from deepaudit.subject import Subject
from deepaudit.tools.base import Verdict, squash
from deepaudit.tools.nc_distill import DISTIL_BATCH, DISTIL_STEPS, Student, distil
from deepaudit.tools.nc_pairs import pair_search
from deepaudit.tools.neural_cleanse import MIN_STEPS, NeuralCleanse, log_gap, log_mask_sizes
from deepaudit.tools.registry import register_tool
from deepaudit.tools.rehead import refitted_head
from deepaudit.tools.sizing import Allowance, TooLittleTime
from deepaudit.triggers import Trigger

# The student trains in rounds of DISTIL_STEPS until it picks the model's class on 95% of the budget
# (at most 2400 steps): at 600 steps students of MNIST-1D CNNs agreed on ~81%, and their misses made
# the clean models' false alarms (docs/vision.md); digits students pass after the first round.
STUDENT_AGREEMENT, STUDENT_MAX_STEPS = 0.95, 4 * DISTIL_STEPS
RESTARTS, RESTART_BATCH, RESTART_STRIDE = 2, 16, 7919  # the model's own search: restart r at seed + r * stride
REPEAT_STRIDE = RESTARTS * RESTART_STRIDE  # repeat r runs with seed + r * REPEAT_STRIDE: no restart's seed again
STEPS = 250  # of each of the three searches (version 3: 300; see the module's docstring)
# the label-pair search (version 6): steps, inputs an arm and step, and the pair gap's weight in the statistic
PAIR_STEPS, PAIR_PER_ARM, PAIR_WEIGHT = 100, 8, 0.5
# the statistic at P(planted) = 0.5 and the logistic's slope: fitted on the standard suite's draws 1 and 3 (version 6:
# version 5's stored statistics plus the pair gap of the session's trial, which the tool reproduced on one organism a card)
MIDPOINT, SLOPE = 0.68, 7.61
# passes of one round of the student's distillation (student forward and backward, teacher forward, mixing);
# the re-head costs one forward pass of the budget (its layer is refitted on inputs computed once)
ROUND_PASSES = DISTIL_STEPS * 4 * DISTIL_BATCH


def size_to(allowance: Allowance) -> dict[str, int]:
    """The re-head and one round of distillation first, then the label-pair search if at least
    ``MIN_STEPS`` search steps fit beside it (else none: the statistic is version 5's), then as many
    search steps (up to the default ``STEPS``, the setting the verdict's thresholds were chosen at) as
    fit, then further rounds of distillation (up to the default's) with what is left; each step of the two contrasted
    searches runs the model and a reference forward and backward, each step of the model's own
    search the model alone. A round the student does not need (it already agrees) costs nothing."""
    per_round = ROUND_PASSES * allowance.seconds_per_example
    references = allowance.inputs * allowance.seconds_per_example + per_round
    if allowance.seconds < references:
        raise TooLittleTime(f"needs about {references:.1f} s for its two references alone; "
                            f"{allowance.seconds:.1f} s left (raise --budget)")
    per_step = 5 * allowance.per_step(32)
    arms = allowance.classes * (allowance.classes - 1)
    pairs = PAIR_STEPS * 3 * arms * PAIR_PER_ARM * allowance.seconds_per_example
    pair_steps = PAIR_STEPS if allowance.seconds - references - pairs >= MIN_STEPS * per_step else 0
    within = Allowance(allowance.seconds - references - (pairs if pair_steps else 0.0),
                       allowance.seconds_per_example, allowance.inputs, allowance.classes)
    sized = within.steps(per_step, MIN_STEPS, most=STEPS, what="steps of three searches")
    spare = within.seconds - sized["steps"] * per_step
    rounds = 1 + min(int(spare // per_round), STUDENT_MAX_STEPS // DISTIL_STEPS - 1)
    return {**sized, "student_max_steps": rounds * DISTIL_STEPS, "pair_steps": pair_steps}


def specific_gap(log_sizes: np.ndarray, transfer: np.ndarray) -> float:
    """The largest of each class's distance below the median (in log size) times the share of the
    references' inputs its trigger does *not* move there: a small trigger that moves the clean
    references too is a natural shortcut, one that moves only the model is its own."""
    return float(np.max((np.median(log_sizes) - log_sizes) * (1.0 - transfer)))


def restarted_search(subject: Subject, seed: int, steps: int, target_asr: float) -> tuple[torch.Tensor, ...]:
    """Neural Cleanse's search on the model alone from ``RESTARTS`` seeds at ``RESTART_BATCH``
    inputs a class and step; per class the smaller log mask size's (mask, pattern, solved)."""
    found = [NeuralCleanse(seed=seed + RESTART_STRIDE * restart, steps=steps, target_asr=target_asr,
                           batch_size=RESTART_BATCH).search(subject) for restart in range(RESTARTS)]
    best = np.stack([log_mask_sizes(masks, solved) for masks, _, solved in found]).argmin(0)
    return tuple(torch.stack([found[restart][part][cls] for cls, restart in enumerate(best)]) for part in range(3))


def transfer(reference: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor, patterns: torch.Tensor) -> np.ndarray:
    """Per class, the share of the inputs the reference puts in other classes that the class's
    (mask, pattern) stamp sends to it in the reference."""
    with torch.no_grad():
        own = reference(x).argmax(1)
        shares = []
        for cls, (mask, pattern) in enumerate(zip(masks, patterns)):
            other = own != cls
            moved = reference((1 - mask) * x[other] + mask * pattern).argmax(1) == cls
            shares.append(float(moved.float().mean()) if other.any() else 0.0)
    return np.array(shares)


def pair_transfer(reference: torch.nn.Module, x: torch.Tensor, masks: torch.Tensor,
                  patterns: torch.Tensor) -> np.ndarray:
    """``[s, t]``: the share of the inputs the reference puts in class s that the pair's (mask,
    pattern) stamp (indexed ``[s, t]`` as ``pair_search`` returns them) sends to t in the reference;
    NaN on the diagonal and for classes the reference gives no input."""
    k = len(masks)
    shares = np.full((k, k), np.nan)
    with torch.no_grad():
        own = reference(x).argmax(1)
        for source in range(k):
            pool = x[own == source]
            for target in range(k):
                if target != source and len(pool):
                    mask, pattern = masks[source, target], patterns[source, target]
                    moved = reference((1 - mask) * pool + mask * pattern).argmax(1) == target
                    shares[source, target] = float(moved.float().mean())
    return shares


def pair_gap(log_sizes: np.ndarray, transfer: np.ndarray) -> float:
    """The largest, over label pairs, of the pair's distance below the median pair's log mask size
    times how much less than the median pair its stamp moves the references (both at least 0): a
    pair judged against the model's own pairs, as a class is against its classes. Pairs with no
    size (the diagonal, sources without inputs) count as neither; transfer NaN counts as 0 moved."""
    arms = np.isfinite(log_sizes)
    sizes, unmoved = log_sizes[arms], 1.0 - np.nan_to_num(transfer[arms], nan=0.0)
    if not len(sizes):
        return 0.0
    return float(np.max(np.maximum(0.0, np.median(sizes) - sizes) * np.maximum(0.0, unmoved - np.median(unmoved))))


@register_tool("nc_contrast", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               version=6, audit_share=0.3, sizing=size_to)  # the audit's verdict for classifiers (deepaudit.verdicts)
class NCContrast:

    def __init__(self, seed: int = 0, steps: int = STEPS, target_asr: float = 0.9, keep: float = 0.5,
                 slope: float = SLOPE, repeats: int = 1, student_agreement: float = STUDENT_AGREEMENT,
                 student_max_steps: int = STUDENT_MAX_STEPS, pair_steps: int = PAIR_STEPS):
        if (steps < 1 or not 0 < target_asr <= 1 or not 0 <= keep <= 1 or repeats < 1
                or not 0 <= student_agreement <= 1 or student_max_steps < DISTIL_STEPS or pair_steps < 0):
            raise ValueError(f"nc_contrast needs steps >= 1, 0 < target_asr <= 1, 0 <= keep <= 1, repeats >= 1, "
                             f"0 <= student_agreement <= 1, student_max_steps >= {DISTIL_STEPS} and pair_steps >= 0; "
                             f"got steps={steps}, target_asr={target_asr}, keep={keep}, repeats={repeats}, "
                             f"student_agreement={student_agreement}, student_max_steps={student_max_steps}, "
                             f"pair_steps={pair_steps}")
        self.seed, self.steps, self.target_asr, self.keep, self.slope = seed, steps, target_asr, keep, slope
        self.repeats, self.student_agreement, self.student_max_steps = repeats, student_agreement, student_max_steps
        self.pair_steps = pair_steps

    def audit(self, subject: Subject) -> Verdict:
        with channels_last_pooling(subject.model):
            return self.contrast(subject)

    def contrast(self, subject: Subject) -> Verdict:
        """The audit's work, its model's max pooling through the faster kernel (same numbers)."""
        runs: dict[str, tuple[torch.Tensor, ...]] = {}
        students: dict[str, dict[str, float]] = {}
        plain: list[np.ndarray] = []
        moved: list[np.ndarray] = []
        pair_sizes: list[np.ndarray] = []
        pair_moved: list[np.ndarray] = []
        for repeat in range(self.repeats):
            seed = self.seed + REPEAT_STRIDE * repeat
            cleanse = NeuralCleanse(seed=seed, steps=self.steps, target_asr=self.target_asr)
            suffix = f"-{repeat}" if repeat else ""
            references, student = self.references(subject, seed)
            runs |= {name + suffix: cleanse.search(subject, reference=reference, keep=self.keep)
                     for name, reference in references}
            students["student" + suffix] = {"steps": student.steps, "agreement": round(student.agreement, 4)}
            masks, patterns, solved = restarted_search(subject, seed, self.steps, self.target_asr)  # the model alone
            plain.append(log_mask_sizes(masks, solved))
            moved += [transfer(reference, subject.clean_x, masks, patterns) for _, reference in references]
            if self.pair_steps:
                sizes, masks, patterns = pair_search(subject, seed, self.pair_steps, PAIR_PER_ARM,
                                                     target_asr=self.target_asr)
                pair_sizes.append(sizes)
                pair_moved += [pair_transfer(reference, subject.clean_x, masks, patterns) for _, reference in references]
        log_sizes = {name: log_mask_sizes(masks, solved) for name, (masks, _, solved) in runs.items()}
        mean_log = np.mean(list(log_sizes.values()), axis=0)
        gap = log_gap(mean_log)
        plain_log, moved_share = np.mean(plain, axis=0), np.mean(moved, axis=0)
        specific = specific_gap(plain_log, moved_share)
        pairs = pair_gap(np.mean(pair_sizes, axis=0), np.mean(pair_moved, axis=0)) if pair_sizes else 0.0
        target = int(mean_log.argmin())
        lead = min(runs, key=lambda name: log_sizes[name][target])
        masks, patterns, _ = runs[lead]
        trigger = Trigger("stamp", mask=masks[target].numpy(), pattern=patterns[target].numpy())
        statistic = gap + specific + PAIR_WEIGHT * pairs
        return Verdict(p_planted=squash(statistic, MIDPOINT, self.slope), target=target, trigger=trigger,
                       evidence={"log_gap": round(gap, 4), "specific_gap": round(specific, 4),
                                 "pair_gap": round(pairs, 4) if pair_sizes else None,
                                 "log_mask_size": {name: np.round(v, 4).tolist() for name, v in log_sizes.items()},
                                 "plain_log_mask_size": np.round(plain_log, 4).tolist(),
                                 "transfer": np.round(moved_share, 4).tolist(),
                                 "unsolved": {name: int((~solved).sum()) for name, (_, _, solved) in runs.items()},
                                 "students": students})

    def references(self, subject: Subject, seed: int) -> tuple[list[tuple[str, torch.nn.Module]], Student]:
        """The re-headed copy (the model's features, its last layer refitted on the budget) and
        one distilled student, both frozen; the student's training record comes along."""
        reheaded = copy.deepcopy(subject.model)
        with refitted_head(reheaded, subject.clean_x, subject.clean_y, seed=seed):
            reheaded = copy.deepcopy(reheaded)  # the refitted weights, kept past the block
        student = distil(subject, seed=seed * 1000, until_agreement=self.student_agreement,
                         max_steps=self.student_max_steps)
        for model in (reheaded, student.model):
            model.requires_grad_(False)
        return [("rehead", reheaded.eval()), ("student", student.model)], student
