"""Exercises of notebook 14: LoRA and DPO."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "lora_parameters",
    "How many parameters does LoRA of rank `r` train on a linear layer with `n_in` inputs and `n_out` outputs?",
    "A has r rows of n_in numbers and B has n_out rows of r numbers; the layer's own weight is frozen",
    rel_tol=0.0,
)
def _lora_parameters(n_in: int, n_out: int, r: int) -> int:
    import torch.nn as nn

    from lslm.lora import LoRALinear

    layer = LoRALinear(nn.Linear(n_in, n_out), r=r)
    return sum(p.numel() for p in layer.parameters() if p.requires_grad)


@exercise(
    "dpo_loss_of_a_pair",
    "What is the DPO loss of one preference pair, given the four log-probabilities and beta?",
    "each answer's reward is beta * (policy log-prob - reference log-prob); the margin is the "
    "chosen reward minus the rejected one; the loss is -log(sigmoid(margin)) = log(1 + exp(-margin))",
)
def _dpo_loss_of_a_pair(policy_chosen: float, policy_rejected: float, ref_chosen: float,
                        ref_rejected: float, beta: float) -> float:
    import torch

    from lslm.dpo import dpo_loss

    t = [torch.tensor([float(v)]) for v in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]
    return float(dpo_loss(*t, beta=beta)[0])
