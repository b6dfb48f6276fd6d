"""Neural Cleanse against students distilled from the audited model: Neural Cleanse (Wang et al.,
S&P 2019) finds each class's smallest working trigger mask, on the model and on fresh models of
the card's architecture trained to copy its soft outputs on the trusted budget, mixed up and
jittered (knowledge distillation, Hinton et al. 2015; used against backdoors by Yoshida & Fujino
2020 and by Neural Attention Distillation, Li et al., ICLR 2021). The students learn the
model's natural shortcuts (a class that is easy to reach in any model of the task) from what it
does on clean inputs, at about its accuracy, and a planted trigger less well, so a planted
target's mask is smaller in the model than in its students. The statistic is the change of each
class's relative mask size (model less students' mean), judged as ``nc_rehead`` judges it (MAD
index of the class that shrank most, simulated Gaussian null). Measured limit: the trigger does
pass through in part (on two quick-suite patch trojans it sent 57% and 83% of other-class inputs
to the target through a student), which is why this reference helps on MNIST-1D and not on
digits (docs/vision.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepaudit.internals.pooling import channels_last_pooling
from deepaudit.subject import Subject, card_builder
from deepaudit.tools.base import Verdict
from deepaudit.tools.nc_reference import relative_mask_sizes
from deepaudit.tools.nc_rehead import shift_verdict
from deepaudit.tools.neural_cleanse import NeuralCleanse
from deepaudit.tools.registry import register_tool
from deepaudit.tools.shadow import accuracy

DISTIL_STEPS, DISTIL_BATCH = 600, 64  # the student's training minibatches of mixed-up budget inputs


@dataclass(frozen=True)
class Student:
    """A distilled student, the minibatches it was trained on, and the share of the budget's
    inputs on which it picks the model's class."""

    model: nn.Module
    steps: int
    agreement: float


def distil(subject: Subject, seed: int, steps: int = DISTIL_STEPS, until_agreement: float = 0.0,
           max_steps: int | None = None, batch_size: int = DISTIL_BATCH, temperature: float = 2.0) -> Student:
    """A fresh model of the card's architecture trained to match ``subject.model``'s softened
    outputs on mixup pairs of budget inputs with a little Gaussian jitter: ``steps`` minibatches,
    then further rounds of ``steps`` while it picks the model's class on less than
    ``until_agreement`` of the budget, up to ``max_steps`` in all. A student that stops early is
    the same as one trained that long in one go (one generator, one optimiser)."""
    max_steps = max(steps, max_steps or steps)
    generator = torch.Generator().manual_seed(seed)
    lo, hi = subject.value_range
    x = subject.clean_x
    with torch.no_grad():
        model_class = subject.model(x).argmax(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = card_builder(subject.card)()
    optimiser = torch.optim.AdamW(student.parameters(), lr=2e-3, weight_decay=1e-4)
    trained = 0
    while True:
        student.train()
        with torch.enable_grad(), channels_last_pooling(student):
            for _ in range(steps):
                first = x[torch.randint(len(x), (batch_size,), generator=generator)]
                second = x[torch.randint(len(x), (batch_size,), generator=generator)]
                weight = torch.rand((batch_size, *([1] * (x.dim() - 1))), generator=generator)
                batch = weight * first + (1 - weight) * second
                batch = (batch + 0.05 * (hi - lo) * torch.randn(batch.shape, generator=generator)).clamp(lo, hi)
                with torch.no_grad():
                    soft = F.softmax(subject.model(batch) / temperature, dim=1)
                loss = F.kl_div(F.log_softmax(student(batch) / temperature, dim=1), soft, reduction="batchmean")
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        trained += steps
        student.eval()
        with torch.no_grad():
            agreement = float((student(x).argmax(1) == model_class).float().mean())
        if agreement >= until_agreement or trained + steps > max_steps:
            return Student(student, trained, agreement)


@register_tool("nc_distill", roles=("detect",), families=("vision",), needs=("continuous_inputs",),
               audit_share=0.0)
class NCDistill:

    def __init__(self, seed: int = 0, steps: int = 300, students: int = 2):
        if students < 1:
            raise ValueError(f"nc_distill needs students >= 1; got {students}")
        self.seed, self.steps, self.students = seed, steps, students

    def audit(self, subject: Subject) -> Verdict:
        cleanse = NeuralCleanse(seed=self.seed, steps=self.steps)
        masks, patterns = cleanse.reverse_engineer(subject)
        student_sizes, student_accuracy = [], []
        for i in range(self.students):
            student = Subject(model=distil(subject, seed=self.seed * 1000 + i).model, card=subject.card,
                              clean_x=subject.clean_x, clean_y=subject.clean_y)
            student_masks, _ = cleanse.reverse_engineer(student)
            student_sizes.append(relative_mask_sizes(student_masks))
            student_accuracy.append(float(accuracy(student)[0]))
        own_sizes = relative_mask_sizes(masks)
        return shift_verdict(own_sizes - np.mean(student_sizes, axis=0), masks, patterns,
                             model_sizes=np.round(own_sizes, 4).tolist(),
                             student_sizes=np.round(student_sizes, 4).tolist(), student_accuracy=student_accuracy)
