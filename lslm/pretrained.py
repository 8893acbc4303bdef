"""Small pretrained models, trained once on this machine and cached; nothing is downloaded.

* ``char_lm()``: notebook 04's baby GPT. Notebooks 07 (fine-tuning for sentiment) and 11
  (looking inside) need a model that already knows some English; it trains notebook 04's
  recipe once, on the built-in corpus, and keeps the checkpoint in
  ``lslm.data.cache_dir()``, so the next notebook loads it in a moment.
* ``world_lm()``: the story world's base model (``lslm.world_model``): a BPE tokenizer and
  a GPT of a few million parameters trained on stories from ``lslm.world``, which writes
  stories that ``lslm.world.check_text`` judges well formed and on topic (notebook 06).
"""

from __future__ import annotations

import hashlib

from lslm.checkpoint import checkpoint_file, load_model
from lslm.errors import LslmError
from lslm.model import GPT, GPTConfig
from lslm.tokenizers import Tokenizer


def char_lm(steps: int = 600, *, retrain: bool = False, progress: bool = False) -> tuple[GPT, Tokenizer]:
    """Notebook 04's GPT (4 layers, 4 heads, 128 wide, 64 characters of context),
    trained ``steps`` steps on the built-in Python-docs corpus with a char tokenizer.

    The first call trains it (about half a minute for 600 steps on a laptop CPU) and
    saves it under ``cache_dir()/models``; later calls load that file. The folder name
    holds a fingerprint of the corpus, which changes with the Python version.
    """
    from lslm.data import build_lock, cache_dir
    from lslm.pipeline import prepare_data
    from lslm.train import TrainConfig, Trainer

    if steps < 1:
        raise LslmError(f"steps must be at least 1, got {steps}")
    data = prepare_data("python-docs", tokenizer="char")
    fingerprint = hashlib.sha256(data.text.encode()).hexdigest()[:12]
    folder = cache_dir() / "models" / f"char-python-docs-{fingerprint}-{steps}"
    with build_lock(folder):  # a notebook running alongside may be training it right now
        if checkpoint_file(folder).exists() and not retrain:
            return load_model(folder)
        config = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=4,
                           n_head=4, n_embd=128, bias=False)
        train_cfg = TrainConfig(max_iters=steps, warmup_iters=min(50, steps // 10), eval_interval=0,
                                progress=progress, device="cpu")
        trainer = Trainer(GPT(config, seed=0), data.tokenizer, data.tokens, train_cfg)
        trainer.fit()
        try:
            trainer.save(folder)
        except OSError as e:  # a read-only home: still hand back the model, just uncached
            print(f"note: could not cache the model in {folder} ({e.strerror}); set LSLM_CACHE")
        return trainer.model.eval(), data.tokenizer


def world_lm(recipe=None, *, retrain: bool = False, progress: bool = False) -> tuple[GPT, Tokenizer]:
    """The story world's base model and its BPE tokenizer (``lslm.world_model.world_lm``):
    the first call trains it (about 3 minutes on a 2-core laptop CPU), later calls load it
    from ``cache_dir()/models``. ``recipe`` is a ``lslm.world_model.WorldRecipe``."""
    from lslm import world_model

    return world_model.world_lm(recipe, retrain=retrain, progress=progress)
