"""The optimizer update and the learning-rate schedule, shared by every stepper of the loop."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lth_core.spec import TrainingSpec


def lr_factor(iteration: int, cfg: TrainingSpec) -> float:
    """Linear warmup to the base rate, then a multiplication by gamma at each milestone passed."""
    factor = cfg.lr_gamma ** sum(1 for m in cfg.lr_milestones if iteration >= m)
    if cfg.warmup_iterations and iteration < cfg.warmup_iterations:
        factor *= (iteration + 1) / cfg.warmup_iterations
    return factor


def finetune_schedule(cfg: TrainingSpec, iterations: int) -> TrainingSpec:
    """Classic fine-tuning's schedule (Han et al. 2015; Renda et al. 2020's baseline): the
    trained network continues at the schedule's final learning rate (after warmup and every
    milestone), constant, for `iterations`, with a fresh optimizer. Reports outside it drop."""
    final = cfg.learning_rate * cfg.lr_gamma ** len(cfg.lr_milestones)
    return cfg.model_copy(
        update={
            "iterations": iterations,
            "learning_rate": final,
            "warmup_iterations": 0,
            "lr_milestones": [],
            "eval_every": min(cfg.eval_every, iterations),
            "report_iterations": [r for r in cfg.report_iterations if r <= iterations],
        }
    )


class LearningRate:
    """The schedule's rate at each iteration, recomputed only where it can change."""

    def __init__(self, cfg: TrainingSpec) -> None:
        self.cfg = cfg
        self.constant = not cfg.warmup_iterations and not cfg.lr_milestones

    def __call__(self, iteration: int) -> float:
        if self.constant:
            return self.cfg.learning_rate
        return self.cfg.learning_rate * lr_factor(iteration, self.cfg)


class FusedStep:
    """The optimizer update as one fused kernel call over fixed lists of tensors.

    It runs exactly the kernels torch.optim.Adam/SGD(fused=True) run (same arguments, so the
    same bits), without what their step() does in Python on every call: regrouping tensors
    by device and dtype, checking state, profiler hooks and param-group bookkeeping. On a
    LeNet step, which is ~1 ms of arithmetic, that Python was a measurable share. Adam and
    SGD are elementwise, so over stacked tensors (K members along dim 0) one update is
    exactly K independent updates with K sets of moments.
    """

    def __init__(self, params: list[torch.Tensor], cfg: TrainingSpec) -> None:
        self.params = params
        self.cfg = cfg
        self.adam = cfg.optimizer == "adam"
        if self.adam:
            self.exp_avgs = [torch.zeros_like(p) for p in params]
            self.exp_avg_sqs = [torch.zeros_like(p) for p in params]
            # torch.optim keeps fused Adam's step count as a float32 tensor per parameter; all
            # of them always hold the same count, so one tensor, passed for every parameter,
            # is incremented once per step instead of once per parameter (a ~45 us foreach
            # over scalar tensors on a CPU).
            self.step_count = torch.zeros((), dtype=torch.float32, device=params[0].device)
            self.steps = [self.step_count] * len(params)
        else:
            self.momentum_buffers: list[torch.Tensor] = []
            self.first_step = cfg.momentum != 0.0

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The optimizer's state by name (a checkpoint's): Adam's step count and moments, or
        SGD's momentum buffers (none before the first step, or without momentum)."""
        if self.adam:
            return {
                "step": self.step_count,
                **{f"exp_avg/{i}": t for i, t in enumerate(self.exp_avgs)},
                **{f"exp_avg_sq/{i}": t for i, t in enumerate(self.exp_avg_sqs)},
            }
        return {f"momentum/{i}": t for i, t in enumerate(self.momentum_buffers)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Puts back what `state_tensors` gave, in place where the tensors exist (the fused
        kernel then continues exactly where it stopped)."""
        with torch.no_grad():
            if self.adam:
                self.step_count.copy_(tensors["step"])
                for i, (avg, sq) in enumerate(zip(self.exp_avgs, self.exp_avg_sqs, strict=True)):
                    avg.copy_(tensors[f"exp_avg/{i}"])
                    sq.copy_(tensors[f"exp_avg_sq/{i}"])
                return
            n = len([name for name in tensors if name.startswith("momentum/")])
            self.momentum_buffers = [
                torch.empty_like(p).copy_(tensors[f"momentum/{i}"])
                for i, p in enumerate(self.params[:n])
            ]
            self.first_step = self.cfg.momentum != 0.0 and not self.momentum_buffers

    def step(self, grads: Sequence[torch.Tensor], lr: float) -> None:
        """One update. The fused kernels walk param and grad memory in step, so a gradient
        laid out differently from its parameter (vmap's batched matmuls return transposed
        ones) is copied into the parameter's layout first."""
        cfg = self.cfg
        grads = [
            g if g.stride() == p.stride() else torch.empty_like(p).copy_(g)
            for p, g in zip(self.params, grads, strict=True)
        ]
        if self.adam:
            self.step_count.add_(1)
            torch._fused_adam_(
                self.params,
                grads,
                self.exp_avgs,
                self.exp_avg_sqs,
                [],
                self.steps,
                amsgrad=False,
                lr=lr,
                beta1=0.9,
                beta2=0.999,
                weight_decay=cfg.weight_decay,
                eps=1e-8,
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
            return
        if self.first_step:
            self.momentum_buffers = [torch.empty_like(g) for g in grads]
        torch._fused_sgd_(
            self.params,
            grads,
            self.momentum_buffers,
            weight_decay=cfg.weight_decay,
            momentum=cfg.momentum,
            lr=lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
            is_first_step=self.first_step,
            grad_scale=None,
            found_inf=None,
        )
        self.first_step = False
