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
import math
import os
import time
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from lslm.errors import LslmError, shown
from lslm.recipes import RECIPES
from lslm.tokenizers import MAX_VOCAB_SIZE

# Model options when starting a new run; the recipe gives the shape, None means "not given".
MODEL_DEFAULTS = {"n_layer": None, "n_head": None, "n_embd": None, "block_size": None, "dropout": 0.0,
                  "position": "learned"}
TOKENIZER_DEFAULTS = {"tokenizer": "char", "vocab_size": None, "corpus": None}
DEFAULT_SEED = 1337

# The ranges the command line enforces (README, "Limits"); a value outside them is one error
# line and exit status 2, before anything is read or allocated.
SEED_MAX = 2**63 - 1  # torch seeds are 64-bit integers
MAX_NEW_TOKENS = 100_000  # one `lslm sample`: the output is printed only at the end

# What a resumed run may change; every other option must match the saved run or be left out.
RESUME_MAY_CHANGE = "--max-iters, --device, --tensorboard and --no-progress"
# Options a resumed run keeps from its checkpoint, and where the checkpoint stores each.
SAVED_AS = {
    **{k: "model_config" for k in ("n_layer", "n_head", "n_embd", "block_size", "dropout", "position")},
    **{k: "meta" for k in ("tokenizer", "vocab_size", "corpus")},
    **{k: "train_config" for k in ("batch_size", "grad_accum", "lr", "eval_interval", "seed", "amp", "compile")},
}
BUILT_IN_CORPORA = ("python-docs", "tinyshakespeare", "world")  # lslm.data's names (imported late: it loads torch)


# ----- option types: each refuses a bad value with argparse's one-line error -----------------
def _parse(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except (ValueError, OverflowError):
        noun = "whole number" if kind is int else "number"
        raise argparse.ArgumentTypeError(f"{shown(text)} is not a {noun}") from None


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An int option in ``[low, high]``."""
    want = f"at least {low}" if high is None else f"from {low} to {high}"

    def parse(text: str) -> int:
        value = _parse(int, text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{shown(value)} is out of range: give a whole number {want}")
        return value

    return parse


def real(low: float, high: float = math.inf, *, low_open: bool = False,
         high_open: bool = False) -> Callable[[str], float]:
    """A finite float option between ``low`` and ``high``, each end included unless open."""
    want = " and ".join(
        part for part in (
            f"{'above' if low_open else 'at least'} {low:g}",
            f"{'below' if high_open else 'at most'} {high:g}" if math.isfinite(high) else "finite",
        )
    )

    def parse(text: str) -> float:
        value = _parse(float, text)
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"{shown(text)} is out of range: give a number {want}")
        return value

    return parse


def path_text(text: str) -> str:
    """A path option: not empty (that would mean the current folder) and without NUL."""
    if not text:
        raise argparse.ArgumentTypeError("it is empty: give a path")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{shown(text)} contains a NUL character: give a path")
    return text


def device_name(text: str) -> str:
    from lslm.devices import check_device

    try:
        return check_device(text)
    except LslmError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="lslm", description="Train, evaluate and sample small GPTs.")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a GPT and save checkpoints in --out")
    t.add_argument("--out", required=True, type=path_text, help="run folder for checkpoints")
    t.add_argument("--corpus", type=path_text,
                   help="'python-docs' (default, built in), 'tinyshakespeare', 'world' (stories "
                   "from lslm.world, written on the spot), a UTF-8 .txt file or a folder of them")
    t.add_argument("--tokenizer", choices=["char", "bpe", "unigram"])
    t.add_argument("--vocab-size", type=whole(1, MAX_VOCAB_SIZE), help="for bpe/unigram (default 1000)")
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        t.add_argument("--" + name.replace("_", "-"), type=whole(1))
    t.add_argument("--dropout", type=real(0, 1, high_open=True))
    t.add_argument("--position", choices=["learned", "rope"],
                   help="learned position embeddings (GPT-2, the default) or rotary ones (RoPE)")
    t.add_argument("--recipe", choices=sorted(RECIPES),
                   help="a model shape and training settings measured together (lslm/recipes.py; "
                   "default baby); 'quick' reaches a lower loss in about 2 minutes on a 2-core CPU. "
                   "Any option given below overrides the recipe")
    t.add_argument("--batch-size", type=whole(1), help="blocks per step (baby: 12)")
    t.add_argument("--grad-accum", type=whole(1),
                   help="micro-batches per update (default 1): an update sees batch-size x grad-accum blocks")
    t.add_argument("--max-iters", type=whole(0),
                   help="updates in total (baby: 2000; 0 saves the new run without training)")
    t.add_argument("--lr", type=real(0, low_open=True),
                   help="peak learning rate, after 100 warmup steps; it decays to lr/10 (baby: 1e-3)")
    t.add_argument("--eval-interval", type=whole(0), help="steps between evaluations, 0 for none (baby: 250)")
    t.add_argument("--seed", type=whole(0, SEED_MAX), help=f"default {DEFAULT_SEED}")
    t.add_argument("--device", default="auto", type=device_name, help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="bfloat16 mixed precision for the linear layers (quick: on)")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile the model: faster steps after up to a minute of compiling "
                   "the first time; on CPU it needs a C++ compiler (quick: on)")
    t.add_argument("--resume", action="store_true",
                   help=f"continue the run saved in --out, with its saved settings (it may change {RESUME_MAY_CHANGE})")
    t.add_argument("--overwrite", action="store_true",
                   help="start over in --out: the run there is replaced at this run's first checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--tensorboard", metavar="DIR", type=path_text,
                   help="also log to TensorBoard in DIR (view it with: tensorboard --logdir DIR)")

    e = sub.add_parser("eval", help="loss, perplexity, bits/char and accuracy of a checkpoint")
    e.add_argument("--ckpt", required=True, type=path_text, help="run folder (or its ckpt.pt)")
    e.add_argument("--split", choices=["val", "test"], default="val")
    e.add_argument("--corpus", type=path_text, help="evaluate on this corpus instead of the one trained on")
    e.add_argument("--max-tokens", type=whole(1), default=None,
                   help="cap the tokens evaluated (at least the model's block size)")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--device", default="auto", type=device_name,
                   help="where the model runs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("--ckpt", required=True, type=path_text, help="run folder (or its ckpt.pt)")
    s.add_argument("--prompt", default="", help="text to continue")
    s.add_argument("--max-new-tokens", type=whole(0, MAX_NEW_TOKENS), default=200)
    s.add_argument("--temperature", type=real(0), default=0.8, help="0 picks the likeliest token")
    s.add_argument("--top-k", type=whole(1), default=None)
    s.add_argument("--top-p", type=real(0, 1, low_open=True), default=None)
    s.add_argument("--seed", type=whole(0, SEED_MAX), default=None,
                   help="the same seed gives the same text on the same device")
    s.add_argument("--device", default="auto", type=device_name,
                   help="where the model runs: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")

    w = sub.add_parser("warm", help="train the models the notebooks share, once, into LSLM_CACHE "
                       "(for a lab without internet: then copy that folder to every machine)")
    w.add_argument("--only", action="append", choices=list(SHARED_MODELS),
                   help="just this model (repeatable); default: all of them")

    c = sub.add_parser("student-copy", help="write the notebooks without their solutions, to hand out")
    c.add_argument("out", type=path_text, help="folder for the student copies")
    c.add_argument("--from", dest="source", type=path_text,
                   help="the notebooks folder to copy (default: notebooks/ of this checkout)")
    return parser


def cmd_student_copy(args: argparse.Namespace) -> int:
    from lslm.student import student_copy

    written = student_copy(args.out, args.source)
    print(f"wrote {len(written)} student notebooks to {args.out} (solutions removed, exercises left to do)")
    return 0


# ----- lslm warm ------------------------------------------------------------------------------
def _warm_char() -> object:
    from lslm.pretrained import char_lm

    return char_lm()[0]


def _warm_world() -> object:
    from lslm.world_model import world_lm

    return world_lm()[0]


def _warm_assistant() -> object:
    from lslm.assistant import assistant_lm

    return assistant_lm()[0]


# name -> (what it is, which notebooks use it, how to build it)
SHARED_MODELS = {
    "char": ("the character model", "00, 01, 05, 06, 07, 11", _warm_char),
    "world": ("the story world's base model", "06, 13, 14, 15", _warm_world),
    "assistant": ("the instruction-tuned assistant", "14, 15", _warm_assistant),
}


def cmd_warm(args: argparse.Namespace) -> int:
    from lslm.data import cache_dir

    names = args.only or list(SHARED_MODELS)
    print(f"cache: {cache_dir()}", flush=True)
    for name in dict.fromkeys(names):
        what, used_by, build = SHARED_MODELS[name]
        start = time.perf_counter()
        model = build()
        print(f"{name}: {what} (notebooks {used_by}), {model.num_params():,} parameters, "
              f"ready in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


# ----- lslm train -----------------------------------------------------------------------------
def corpus_setting(corpus: str | None) -> str | None:
    """How a run stores its corpus: a built-in name as it is, a path made absolute, so the
    run resumes (and evaluates) from any working folder."""
    if corpus is None or corpus in BUILT_IN_CORPORA:
        return corpus
    return os.path.abspath(Path(corpus).expanduser())


def _part(ckpt: dict, name: str) -> dict:
    part = ckpt.get(name)
    return part if isinstance(part, dict) else {}


def stored_corpus(ckpt: dict, where: Path) -> str | None:
    """The corpus a checkpoint names, checked before anything reads it."""
    corpus = _part(ckpt, "meta").get("corpus")
    if corpus is None or corpus in BUILT_IN_CORPORA:
        return corpus
    if not isinstance(corpus, str) or not corpus or "\0" in corpus:
        raise LslmError(f"{where} names no usable corpus ({shown(corpus)}): pass --corpus")
    if not Path(corpus).expanduser().is_absolute():
        # Runs saved by an older lslm stored the path as typed, relative to a folder the
        # checkpoint does not record: only the current folder can be tried.
        if not Path(corpus).exists():
            raise LslmError(
                f"{where} stores its corpus as the relative path {corpus!r}, which is not found "
                "from this folder: run the command from the folder the run was started in"
            )
        print(f"note: reading the run's corpus {corpus!r} relative to this folder", file=sys.stderr)
    return corpus


def _flag(name: str, value: object) -> str:
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name.replace('_', '-')}"
    return f"--{name.replace('_', '-')}={value}"


def check_resume_options(args: argparse.Namespace, ckpt: dict) -> None:
    """Refuse every option a resumed run would otherwise ignore; the same value is fine."""
    if args.recipe is not None:
        raise LslmError("--resume keeps the run's own settings: drop --recipe")
    for name, part in SAVED_AS.items():
        given = getattr(args, name)
        if given is None:
            continue
        saved = _part(ckpt, part).get(name, "learned" if name == "position" else None)  # older runs
        if name == "corpus":  # None is the default corpus; paths compare as absolute paths
            same = (isinstance(saved, (str, type(None)))
                    and corpus_setting(given) == corpus_setting(saved or BUILT_IN_CORPORA[0]))
        else:
            same = given == saved
        if not same:
            raise LslmError(
                f"--resume keeps the run's settings, but {_flag(name, given)} differs from the saved "
                f"{_flag(name, saved)}: drop that option (a resumed run may change only "
                f"{RESUME_MAY_CHANGE}) or start a new run in another --out"
            )
    step = ckpt.get("step")
    if args.max_iters is not None and isinstance(step, int) and args.max_iters < step:
        raise LslmError(
            f"--max-iters {args.max_iters} is below the {step} steps this run has already done: "
            f"give at least {step} (the total number of steps, not how many more)"
        )


def check_memory(config: Any, batch_size: int, amp: bool, device: str) -> None:
    """Refuse a run whose weights, optimizer and activations cannot fit on ``device``,
    before anything is allocated (a rough estimate: lslm.scale)."""
    from lslm import devices
    from lslm.model import count_params
    from lslm.scale import activation_bytes, state_bytes

    budget = devices.device_memory(device)
    if budget is None:
        return
    need = sum(state_bytes(count_params(config), "fp32").values())
    need += activation_bytes(config, batch_size, precision="mixed" if amp else "fp32")
    if need > budget:
        raise LslmError(
            f"this run needs about {need / 1e9:,.1f} GB for the model, optimizer and activations, "
            f"more than the {budget / 1e9:,.1f} GB of {device}: use a smaller --n-embd, "
            "--n-layer, --block-size or --batch-size"
        )


def new_run(args: argparse.Namespace, out: Path, say: Callable[..., None]) -> Any:
    """A Trainer for a new run in ``out`` from the recipe and the options given."""
    from lslm.devices import pick_device
    from lslm.model import GPT, GPTConfig
    from lslm.pipeline import prepare_data
    from lslm.train import TrainConfig, Trainer

    recipe = RECIPES[args.recipe or "baby"]
    given = {k: getattr(args, k) for k in [*MODEL_DEFAULTS, *TOKENIZER_DEFAULTS] if getattr(args, k) is not None}
    settings = {**MODEL_DEFAULTS, **recipe.model, **TOKENIZER_DEFAULTS, **given}
    if settings["tokenizer"] == "char" and settings["vocab_size"] is not None:
        raise LslmError("--vocab-size is for --tokenizer bpe or unigram: a char tokenizer has one "
                        "token per character of the corpus; drop --vocab-size or pick a tokenizer")
    if settings["tokenizer"] != "char" and settings["vocab_size"] is None:
        settings["vocab_size"] = 1000
    settings["corpus"] = corpus_setting(settings["corpus"])
    train = dict(recipe.train)
    for name in ("batch_size", "max_iters", "lr", "eval_interval", "amp", "compile"):
        if getattr(args, name) is not None:  # --amp/--no-amp, --compile/--no-compile too
            train[name] = getattr(args, name)
    if args.lr is not None:
        train["min_lr"] = args.lr / 10
    seed = DEFAULT_SEED if args.seed is None else args.seed
    train_cfg = TrainConfig(**train, grad_accum=args.grad_accum or 1, seed=seed, device=args.device,
                            progress=not args.no_progress)
    device = pick_device(args.device)

    def model_config(vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=settings["block_size"], n_layer=settings["n_layer"],
                         n_head=settings["n_head"], n_embd=settings["n_embd"], dropout=settings["dropout"],
                         position=settings["position"],
                         bias=False)

    # The shape is checked before the corpus is read and a tokenizer trained, then again
    # with the vocabulary that the tokenizer really has.
    check_memory(model_config(settings["vocab_size"] or 256), train_cfg.batch_size, train_cfg.amp, device)
    prepared = prepare_data(settings["corpus"], settings["tokenizer"], settings["vocab_size"])
    config = model_config(prepared.tokenizer.vocab_size)
    check_memory(config, train_cfg.batch_size, train_cfg.amp, device)
    model = GPT(config, seed=seed)  # the same seed gives the same initial weights
    meta = {k: settings[k] for k in TOKENIZER_DEFAULTS}
    trainer = Trainer(model, prepared.tokenizer, prepared.tokens, train_cfg, out_dir=out, meta=meta,
                      tensorboard=args.tensorboard)
    n = trainer.world_size
    workers = f", {n} process{'es' if n > 1 else ''}" if trainer.distributed else ""
    say(
        f"Training a {model.num_params():,}-parameter GPT on {len(prepared.tokens['train']):,} "
        f"{prepared.tokenizer.kind} tokens ({trainer.device}{workers}); checkpoints go to {out}/"
    )
    return trainer


def resumed_run(args: argparse.Namespace, out: Path, say: Callable[..., None]) -> Any:
    """A Trainer that continues the run saved in ``out``."""
    from lslm.checkpoint import RESUME_PARTS, checkpoint_file, load_checkpoint, require_parts
    from lslm.pipeline import prepare_data
    from lslm.tokenizers import tokenizer_from_state
    from lslm.train import Trainer

    ckpt_path = checkpoint_file(out)
    ckpt = load_checkpoint(ckpt_path)
    require_parts(ckpt, RESUME_PARTS, ckpt_path, "resume training")  # before reading any part
    check_resume_options(args, ckpt)
    prepared = prepare_data(stored_corpus(ckpt, ckpt_path), tokenizer_from_state(ckpt["tokenizer"]))
    more = {} if args.max_iters is None else {"max_iters": args.max_iters}
    trainer = Trainer.resume(ckpt_path, prepared.tokens, out_dir=out, checkpoint=ckpt,
                             tensorboard=args.tensorboard, progress=not args.no_progress,
                             device=args.device, **more)
    say(f"Resuming {out} at step {trainer.step} of {trainer.config.max_iters}.")
    return trainer


def check_log_dir(path: str) -> None:
    """A TensorBoard folder that exists as a file, or cannot be made, fails now, not mid-run."""
    from lslm.utils import error_summary

    log_dir = Path(path)
    if log_dir.exists() and not log_dir.is_dir():
        raise LslmError(f"--tensorboard {log_dir} is a file: give a folder for the TensorBoard log")
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LslmError(
            f"cannot create the TensorBoard folder {log_dir} ({error_summary(e.strerror or e)}): "
            "pick a folder you can write to"
        ) from None


def cmd_train(args: argparse.Namespace) -> int:
    from lslm.checkpoint import checkpoint_file
    from lslm.rundir import run_folder
    from lslm.train import distributed_env

    rank = distributed_env()[0]
    say = print if rank == 0 else (lambda *a, **k: None)  # rank 0 speaks for all
    out = Path(args.out)
    if args.resume and args.overwrite:
        raise LslmError("--resume and --overwrite contradict each other: pick one")
    if out.exists() and not out.is_dir():
        raise LslmError(f"--out {out} is a file: give a folder for the run")
    if args.tensorboard is not None and rank == 0:
        check_log_dir(args.tensorboard)
    # Locked for the whole run: a second `lslm train` on the same folder is refused.
    with run_folder(out, lock=rank == 0):
        ckpt_path = checkpoint_file(out)
        exists = ckpt_path.exists()
        if args.resume and not exists:
            raise LslmError(f"nothing to resume: {ckpt_path} does not exist (drop --resume to start a run)")
        if exists and not (args.resume or args.overwrite):
            raise LslmError(
                f"{out} already holds a run: add --resume to continue it, --overwrite to replace it, "
                "or pick another --out"
            )
        if args.resume:
            trainer = resumed_run(args, out, say)
        else:
            trainer = new_run(args, out, say)
            trainer.overwrite_pending = exists  # the old run stays until this one saves
        try:
            trainer.fit()
        except BaseException:
            trainer.close(wait=False)
            raise
        trainer.close()
    h = trainer.history
    if trainer.interrupted:
        code = 128 + trainer.stop_signal if trainer.stop_signal else 130
        if trainer.overwrite_pending:
            say(f"Stopped before this run's first checkpoint: {out} still holds the previous run "
                "(continue it with --resume, or replace it with --overwrite).", file=sys.stderr)
        else:
            say(f"Stopped early. Continue with: lslm train --out {out} --resume", file=sys.stderr)
        return code
    if h["val_loss"]:
        say(f"Done: step {trainer.step}, validation loss {h['val_loss'][-1]:.4f}. "
            f"Try: lslm sample --ckpt {out}")
    return 0


# ----- lslm eval and lslm sample ----------------------------------------------------------------
def cmd_eval(args: argparse.Namespace) -> int:
    from lslm.checkpoint import checkpoint_file, load_checkpoint, load_model
    from lslm.devices import pick_device
    from lslm.evaluate import evaluate
    from lslm.pipeline import prepare_data

    model, tokenizer = load_model(args.ckpt, pick_device(args.device))  # the tokens stay on the CPU
    block = model.config.block_size
    if args.max_tokens is not None and args.max_tokens < block:
        raise LslmError(
            f"--max-tokens {args.max_tokens} is less than one window of this model ({block} tokens): "
            f"give at least {block}"
        )
    if args.corpus is not None:
        corpus = args.corpus
    else:
        corpus = stored_corpus(load_checkpoint(args.ckpt), checkpoint_file(args.ckpt))
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
    from lslm.devices import pick_device

    model, tokenizer = load_model(args.ckpt, pick_device(args.device))  # generate moves the prompt
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
    # A terminal or pipe that cannot show a character (PYTHONIOENCODING=ascii, a legacy
    # Windows console) gets a "?" in its place rather than a UnicodeEncodeError.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
    return main()


def _quiet_stdout() -> None:
    """Point stdout at the null device, so that the flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = {"train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "warm": cmd_warm,
               "student-copy": cmd_student_copy}[args.command]
    try:
        return command(args)
    except LslmError as e:
        message = " ".join(str(e).splitlines())  # one line, whoever wrote the message
        print(f"lslm {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lslm {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`lslm sample ... | head -c 100`): nothing to say
        _quiet_stdout()
        return 141  # what a shell reports for a process ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(console_main())
