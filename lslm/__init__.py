"""lslm: learn how large-scale language models work by building and running one.

The modules follow the source article's pipeline:
data -> tokenizers -> attention/model -> train -> evaluate -> generate -> tasks -> widgets,
with scale, interpret and hf for the article's last chapters.
"""

from lslm.errors import LslmError

__version__ = "0.1.0"

_EXPORTS = {
    "Attention": "lslm.attention",
    "CausalSelfAttention": "lslm.attention",
    "GPT": "lslm.model",
    "GPTConfig": "lslm.model",
    "count_params": "lslm.model",
    "from_pretrained": "lslm.hf",
    "Trainer": "lslm.train",
    "TrainConfig": "lslm.train",
    "load_model": "lslm.checkpoint",
    "load_corpus": "lslm.data",
    "split_text": "lslm.data",
    "prepare_data": "lslm.pipeline",
    "train_tokenizer": "lslm.tokenizers",
    "KVCache": "lslm.attention",
    "Seq2Seq": "lslm.seq2seq",
    "Seq2SeqConfig": "lslm.seq2seq",
}


def __getattr__(name: str):
    # Imported on first use, so `import lslm` stays quick.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lslm' has no attribute {name!r}")


__all__ = ["LslmError", *_EXPORTS]
