"""Exercises of notebook 16: the parts of today's open models."""

from __future__ import annotations

from lslm.checks.registry import exercise


@exercise(
    "kv_cache_bytes",
    "How many bytes does the KV cache hold per token, for a model of `n_layer` layers with "
    "`n_kv_head` key/value heads of `head_size` numbers, stored at `bytes_per_number` bytes each?",
    "every layer keeps a key and a value for each key/value head (not each query head): count "
    "the numbers, then multiply by the bytes of one number",
)
def _kv_cache_bytes(n_layer: int, n_kv_head: int, head_size: int, bytes_per_number: int) -> int:
    from lslm.model import GPTConfig, kv_cache_bytes_per_token

    config = GPTConfig(n_layer=n_layer, n_head=n_kv_head, n_embd=n_kv_head * head_size, n_kv_head=n_kv_head)
    return kv_cache_bytes_per_token(config, bytes_per_number)
