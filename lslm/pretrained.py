"""Small pretrained models, trained once on this machine and cached; nothing is downloaded.

* ``char_lm()``: notebook 04's baby GPT. Notebook 00 shows it trained, and notebooks 01, 06,
  07 (fine-tuning for sentiment) and 11 (looking inside) need a model that already knows some
  English; it trains notebook 04's recipe once, on the built-in corpus, and keeps the
  checkpoint (with its training curves, ``char_lm_history()``) in ``lslm.data.cache_dir()``,
  so the next notebook loads it in a moment.
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


CHAR_LM_SNAPSHOTS = (100, 300)  # younger copies of char_lm kept on the way, for notebook 05


def char_lm(steps: int = 600, *, retrain: bool = False, progress: bool = False) -> tuple[GPT, Tokenizer]:
    """Notebook 04's GPT (4 layers, 4 heads, 128 wide, 64 characters of context),
    trained ``steps`` steps on the built-in Python-docs corpus with a char tokenizer.

    The first call trains it (about half a minute for 600 steps on a laptop CPU) and
    saves it under ``cache_dir()/models``, with its training curves (``char_lm_history``)
    and copies of it at the steps of ``CHAR_LM_SNAPSHOTS`` (``char_lm_snapshot``); later
    calls load that file. The folder name holds a fingerprint of the corpus, which changes
    with the Python version.
    """
    from lslm.data import build_lock
    from lslm.train import TrainConfig, Trainer

    folder, data = _char_lm_folder(steps)
    with build_lock(folder):  # a notebook running alongside may be training it right now
        if checkpoint_file(folder).exists() and not retrain:
            try:
                return load_model(folder)
            except LslmError as e:
                print(f"note: the cached model could not be used ({e}); training it again")
        config = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=4,
                           n_head=4, n_embd=128, bias=False)
        # Evaluation draws its batches from its own generator, so the curves it records
        # leave the weights exactly as they would be without them.
        train_cfg = TrainConfig(max_iters=steps, warmup_iters=min(50, steps // 10),
                                eval_interval=min(100, steps), eval_iters=10,
                                progress=progress, device="cpu")
        trainer = Trainer(GPT(config, seed=0), data.tokenizer, data.tokens, train_cfg,
                          callbacks=[lambda t, record: _keep_snapshot(t, record, folder)])
        trainer.fit()
        try:
            trainer.save(folder)  # last: a folder whose main file exists holds its snapshots too
        except LslmError as e:  # a read-only home: still hand back the model, just uncached
            print(f"note: could not cache the model ({e}); set LSLM_CACHE")
        return trainer.model.eval(), data.tokenizer


def _keep_snapshot(trainer, record: dict, folder) -> None:
    from lslm.checkpoint import save_checkpoint

    if record.get("step") in CHAR_LM_SNAPSHOTS and "train_loss" in record:
        try:
            save_checkpoint(folder / f"step{record['step']}", step=record["step"],
                            model={k: v.detach().cpu() for k, v in trainer.model.state_dict().items()},
                            model_config=trainer.model.config.to_dict(), tokenizer=trainer.tokenizer.state())
        except LslmError:
            pass  # an unwritable cache: the final save says so once


def char_lm_history(steps: int = 600) -> dict:
    """The curves ``char_lm(steps)`` recorded while it trained (``Trainer.fit``'s history:
    training loss at every step, validation loss every 100 steps, learning rate, speed).
    Trains the model first if the cache does not hold it."""
    from lslm.checkpoint import load_checkpoint

    return _from_cache(steps, lambda folder: load_checkpoint(folder)["history"])


def char_lm_snapshot(step: int, steps: int = 600) -> tuple[GPT, Tokenizer]:
    """``char_lm(steps)`` as it was after ``step`` of its steps: 0 (its weights before any
    training) or one of ``CHAR_LM_SNAPSHOTS``. Trains the model first if the cache does
    not hold it, or holds it without that snapshot."""
    if step == 0:
        model, tokenizer = char_lm(steps)
        return GPT(model.config, seed=0).eval(), tokenizer
    if step not in CHAR_LM_SNAPSHOTS or step >= steps:
        raise LslmError(f"char_lm({steps}) keeps snapshots at steps "
                        f"{[s for s in CHAR_LM_SNAPSHOTS if s < steps]} (and 0), not {step}")
    return _from_cache(steps, lambda folder: load_model(folder / f"step{step}"))


def _from_cache(steps: int, read):
    """``read(folder)`` of char_lm(steps)'s cache folder; if it fails, train the model where
    it is missing, then once more from scratch where a file is missing or damaged."""
    folder, _ = _char_lm_folder(steps)
    for attempt in range(3):
        try:
            return read(folder)
        except LslmError as e:
            if attempt == 2:
                raise LslmError(f"could not cache char_lm in {folder} ({e}); set LSLM_CACHE to a "
                                "folder you can write to") from None
            char_lm(steps, retrain=attempt == 1)


def _char_lm_folder(steps: int):
    from lslm.data import cache_dir
    from lslm.pipeline import prepare_data

    if steps < 1:
        raise LslmError(f"steps must be at least 1, got {steps}")
    data = prepare_data("python-docs", tokenizer="char")
    fingerprint = hashlib.sha256(data.text.encode()).hexdigest()[:12]
    # v2: the checkpoint holds validation curves (notebook 00 draws them)
    return cache_dir() / "models" / f"char-v2-python-docs-{fingerprint}-{steps}", data


def world_lm(recipe=None, *, retrain: bool = False, progress: bool = False) -> tuple[GPT, Tokenizer]:
    """The story world's base model and its BPE tokenizer (``lslm.world_model.world_lm``):
    the first call trains it (about 3 minutes on a 2-core laptop CPU), later calls load it
    from ``cache_dir()/models``. ``recipe`` is a ``lslm.world_model.WorldRecipe``."""
    from lslm import world_model

    return world_model.world_lm(recipe, retrain=retrain, progress=progress)
