"""Exercises of notebook 12: Hugging Face weights, TensorBoard and data-parallel training."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "tokens_per_process",
    "A data-parallel run splits a global batch of `batch_size` blocks of `block_size` tokens "
    "over `world_size` processes. How many tokens does ONE process push through its copy "
    "of the model per step?",
    "each process takes batch_size / world_size of the blocks (its slice of the global "
    "batch), and every block holds block_size tokens: (batch_size // world_size) * block_size",
    rel_tol=0.0,
)
def _tokens_per_process(batch_size: int, block_size: int, world_size: int) -> int:
    from lslm.errors import LslmError

    if batch_size % world_size:
        raise LslmError(f"batch_size {batch_size} does not split evenly over {world_size} processes")
    return batch_size // world_size * block_size


@exercise(
    "hf_conv1d_shape",
    "GPT-2 small (n_embd 768) stores the first MLP layer, mlp.c_fc, as a Conv1D. What shape "
    "does that weight have in the Hugging Face file? Answer as a list [rows, cols].",
    "nn.Linear(in, out) keeps its weight as (out, in); GPT-2's Conv1D keeps the transpose, "
    "(in, out), and c_fc widens n_embd to 4 * n_embd",
)
def _hf_conv1d_shape(n_embd: int = 768) -> list[int]:
    return [n_embd, 4 * n_embd]
