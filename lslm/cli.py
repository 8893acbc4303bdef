"""The ``lslm`` command: train, evaluate and sample from the terminal.

    lslm train --out runs/first          # about two minutes on a laptop CPU
    lslm train --out runs/quick --corpus tinyshakespeare --recipe quick   # a better model, same time
    lslm eval --ckpt runs/first --split test --json
    lslm sample --ckpt runs/first --prompt "The "

Training on several processes (data parallel) goes through torchrun:

    torchrun --standalone --nproc_per_node=2 -m lslm train --out runs/ddp --device cpu

Every user mistake ends in one line that says what to do, and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from lslm.errors import LslmError
from lslm.recipes import RECIPES

# Model options when starting a new run; the recipe gives the shape, None means "not given".
MODEL_DEFAULTS = {"n_layer": None, "n_head": None, "n_embd": None, "block_size": None, "dropout": 0.0}
TOKENIZER_DEFAULTS = {"tokenizer": "char", "vocab_size": None, "corpus": None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lslm", description="Train, evaluate and sample small GPTs.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GPT and save checkpoints in --out")
    t.add_argument("--out", required=True, help="run folder for checkpoints")
    t.add_argument("--corpus", help="'python-docs' (default, built in), 'tinyshakespeare', "
                   "a UTF-8 .txt file or a folder of them")
    t.add_argument("--tokenizer", choices=["char", "bpe", "unigram"])
    t.add_argument("--vocab-size", type=int, help="for bpe/unigram (default 1000)")
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        t.add_argument("--" + name.replace("_", "-"), type=int)
    t.add_argument("--dropout", type=float)
    t.add_argument("--recipe", choices=sorted(RECIPES), default="baby",
                   help="a model shape and training settings measured together (lslm/recipes.py); "
                   "'quick' reaches a lower loss in about 2 minutes on a 2-core CPU. "
                   "Any option given below overrides the recipe")
    t.add_argument("--batch-size", type=int, help="blocks per step (baby: 12)")
    t.add_argument("--grad-accum", type=int, default=1,
                   help="micro-batches per update: an update sees batch-size x grad-accum blocks")
    t.add_argument("--max-iters", type=int, help="updates in total (baby: 2000)")
    t.add_argument("--lr", type=float,
                   help="peak learning rate, after 100 warmup steps; it decays to lr/10 (baby: 1e-3)")
    t.add_argument("--eval-interval", type=int, help="steps between evaluations (baby: 250)")
    t.add_argument("--seed", type=int, default=1337)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="bfloat16 mixed precision for the linear layers (quick: on)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile the model: faster steps after up to a minute of compiling "
                   "the first time; on CPU it needs a C++ compiler (quick: on)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    t.add_argument("--overwrite", action="store_true", help="start over, replacing the run in --out")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--tensorboard", metavar="DIR",
                   help="also log to TensorBoard in DIR (view it with: tensorboard --logdir DIR)")

    e = sub.add_parser("eval", help="loss, perplexity, bits/char and accuracy of a checkpoint")
    e.add_argument("--ckpt", required=True, help="run folder (or its ckpt.pt)")
    e.add_argument("--split", choices=["val", "test"], default="val")
    e.add_argument("--corpus", help="evaluate on this corpus instead of the one trained on")
    e.add_argument("--max-tokens", type=int, default=None, help="cap the tokens evaluated")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--ckpt", required=True, help="run folder (or its ckpt.pt)")
    s.add_argument("--prompt", default="", help="text to continue")
    s.add_argument("--max-new-tokens", type=int, default=200)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=None)
    s.add_argument("--top-p", type=float, default=None)
    s.add_argument("--seed", type=int, default=None)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from lslm.checkpoint import checkpoint_file, load_checkpoint
    from lslm.model import GPT, GPTConfig
    from lslm.pipeline import prepare_data
    from lslm.train import TrainConfig, Trainer, distributed_env

    say = print if distributed_env()[0] == 0 else (lambda *a, **k: None)  # rank 0 speaks for all
    out = Path(args.out)
    ckpt_path = checkpoint_file(out)
    if out.exists() and not out.is_dir():
        raise LslmError(f"--out {out} is a file: give a folder for the run")
    if args.resume and args.overwrite:
        raise LslmError("--resume and --overwrite contradict each other: pick one")
    if args.resume and not ckpt_path.exists():
        raise LslmError(f"nothing to resume: {ckpt_path} does not exist (drop --resume to start a run)")
    if ckpt_path.exists() and not (args.resume or args.overwrite):
        raise LslmError(
            f"{out} already holds a run: add --resume to continue it, --overwrite to replace it, "
            "or pick another --out"
        )
    given = {k: getattr(args, k) for k in [*MODEL_DEFAULTS, *TOKENIZER_DEFAULTS] if getattr(args, k) is not None}
    progress = not args.no_progress

    if args.resume:
        if args.recipe != "baby":
            raise LslmError("--resume keeps the run's own settings: drop --recipe")
        ckpt = load_checkpoint(ckpt_path)
        saved = {**ckpt["model_config"], **ckpt.get("meta", {})}
        clash = {k: v for k, v in given.items() if k in saved and saved[k] != v}
        if clash:
            name, value = next(iter(clash.items()))
            raise LslmError(
                f"--resume keeps the run's settings, but --{name.replace('_', '-')}={value} differs "
                f"from the saved {saved[name]!r}: drop that option or start a new --out"
            )
        from lslm.tokenizers import tokenizer_from_state

        prepared = prepare_data(ckpt.get("meta", {}).get("corpus"), tokenizer_from_state(ckpt["tokenizer"]))
        more = {} if args.max_iters is None else {"max_iters": args.max_iters}
        trainer = Trainer.resume(ckpt_path, prepared.tokens, out_dir=out, tensorboard=args.tensorboard,
                                 progress=progress, device=args.device, **more)
        say(f"Resuming {out} at step {trainer.step} of {trainer.config.max_iters}.")
    else:
        recipe = RECIPES[args.recipe]
        settings = {**MODEL_DEFAULTS, **recipe.model, **TOKENIZER_DEFAULTS, **given}
        if settings["tokenizer"] != "char" and settings["vocab_size"] is None:
            settings["vocab_size"] = 1000
        if settings["n_embd"] % settings["n_head"]:
            GPTConfig(n_embd=settings["n_embd"], n_head=settings["n_head"])  # raises the clear error
        prepared = prepare_data(settings["corpus"], settings["tokenizer"], settings["vocab_size"])
        config = GPTConfig(
            vocab_size=prepared.tokenizer.vocab_size, block_size=settings["block_size"],
            n_layer=settings["n_layer"], n_head=settings["n_head"], n_embd=settings["n_embd"],
            dropout=settings["dropout"], bias=False,
        )
        train = dict(recipe.train)
        for name in ("batch_size", "max_iters", "lr", "eval_interval"):
            if getattr(args, name) is not None:
                train[name] = getattr(args, name)
        if args.lr is not None:
            train["min_lr"] = args.lr / 10
        for name in ("amp", "compile"):  # --amp/--no-amp and --compile/--no-compile win over the recipe
            if getattr(args, name) is not None:
                train[name] = getattr(args, name)
        train_cfg = TrainConfig(**train, grad_accum=args.grad_accum, seed=args.seed, device=args.device,
                                progress=progress)
        model = GPT(config, seed=args.seed)  # the same seed gives the same initial weights
        meta = {k: settings[k] for k in TOKENIZER_DEFAULTS}
        out.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(model, prepared.tokenizer, prepared.tokens, train_cfg, out_dir=out, meta=meta,
                          tensorboard=args.tensorboard)
        n = trainer.world_size
        workers = f", {n} process{'es' if n > 1 else ''}" if trainer.distributed else ""
        say(
            f"Training a {model.num_params():,}-parameter GPT on {len(prepared.tokens['train']):,} "
            f"{prepared.tokenizer.kind} tokens ({trainer.device}{workers}); checkpoints go to {out}/"
        )
    try:
        trainer.fit()
    except BaseException:
        trainer.close(wait=False)
        raise
    trainer.close()
    h = trainer.history
    if trainer.interrupted:
        say(f"Stopped early. Continue with: lslm train --out {out} --resume", file=sys.stderr)
        return 130
    if h["val_loss"]:
        say(f"Done: step {trainer.step}, validation loss {h['val_loss'][-1]:.4f}. "
              f"Try: lslm sample --ckpt {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lslm.checkpoint import load_checkpoint, load_model
    from lslm.evaluate import evaluate
    from lslm.pipeline import prepare_data

    model, tokenizer = load_model(args.ckpt)
    corpus = args.corpus if args.corpus is not None else load_checkpoint(args.ckpt).get("meta", {}).get("corpus")
    prepared = prepare_data(corpus, tokenizer)
    metrics = evaluate(model, prepared.tokens[args.split], tokenizer, max_tokens=args.max_tokens)
    metrics = {"split": args.split, **metrics}
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            print(f"{key:>15}: {value:.4f}" if isinstance(value, float) else f"{key:>15}: {value}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from lslm.checkpoint import load_model

    model, tokenizer = load_model(args.ckpt)
    ids = tokenizer.encode(args.prompt) if args.prompt else []
    block = model.config.block_size
    if len(ids) > block:
        print(f"note: the prompt has {len(ids)} tokens; the model sees only the last {block}.",
              file=sys.stderr)
        ids = ids[-block:]
    if not ids:
        ids = tokenizer.encode("\n") if args.prompt == "" else ids
    idx = torch.tensor([ids], dtype=torch.long)
    out = model.generate(idx, args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    print(args.prompt + tokenizer.decode(out[0, len(ids):].tolist()))
    return 0


def spin_waiting_threads() -> None:
    """Let torch's worker threads spin between operations instead of sleeping.

    A training step is hundreds of small operations; a thread that sleeps between them
    pays a wake-up each time. Spinning measured about 20% faster steps on a 2-core CPU
    (benchmarks/RESULTS.md). OpenMP reads the setting when torch is imported, so it is set
    here, before; never under torchrun, where processes share the cores and a spinning
    thread would steal another process's core. Set OMP_WAIT_POLICY yourself to override.
    """
    if "RANK" not in os.environ and "torch" not in sys.modules:  # later, it would change nothing
        os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")


def console_main() -> int:
    """The ``lslm`` command and ``python -m lslm``: a process of its own, so it may choose its
    threads' wait policy before torch is imported. ``main`` leaves the environment alone."""
    if sys.argv[1:2] == ["train"]:
        spin_waiting_threads()
    return main()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample}[args.command]
    try:
        return command(args)
    except LslmError as e:
        print(f"lslm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lslm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(console_main())
