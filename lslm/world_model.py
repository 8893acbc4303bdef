"""The story world's base model: a BPE tokenizer and a GPT of a few million parameters.

TinyStories (Eldan & Li, 2023) showed that a small GPT writes sensible stories when its
training text stays inside a small world. ``lslm.world`` writes such a world's stories
itself, so this model can be trained on a laptop in a few minutes and then *judged*:
``lslm.world.check_text`` says of every sentence it writes whether it is well formed,
whether its pronouns agree and whether it stays with the story's characters.

    from lslm.pretrained import world_lm
    model, tok = world_lm()                      # trained once (a few minutes), then cached
    stories = write_stories(model, tok, ["Once upon a time, there was a baker named Tom."])
    judge(stories)                               # {'well_formed': ..., 'pronoun_agreement': ...}
    compare_settings(model, tok, prompts, {"greedy": {"temperature": 0}, "hot": {"temperature": 1.5}})

``write_stories`` samples one story at a time until it ends; ``sample_stories`` samples
prompts of the same length together, up to the context window, which is much faster and
what ``compare_settings`` (notebook 06) uses.

The first call generates the corpus (``lslm.data.world_text``), trains the tokenizer
and the GPT with the library's ``Trainer`` and saves them under
``cache_dir()/models/world-<fingerprint>``. The fingerprint covers the recipe, the
generator's source code and a sample of its stories, so a changed generator or recipe gets
a folder of its own instead of a stale model. A cached file that is damaged, or whose
stored fingerprint is not the expected one, is trained again rather than loaded.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import torch

from lslm.data import WORLD_SEED, WORLD_STORIES
from lslm.errors import LslmError, real_number, whole_number
from lslm.devices import model_device
from lslm.model import GPT, GPTConfig
from lslm.tokenizers import Tokenizer
from lslm.utils import evaluating

# Bump when the way the model is built changes in a way the recipe does not show.
WORLD_MODEL_VERSION = 1
SEPARATOR = "\n\n"  # between stories: lslm.world.SEPARATOR (checked in the tests)
_SENTENCE_END = re.compile(r'[.!?]"?(?=\s|$)')


@dataclass(frozen=True)
class WorldRecipe:
    """Everything that decides the world model: corpus, tokenizer, shape and training.

    The defaults were chosen by small experiments (``benchmarks/RESULTS.md``, issue 16):
    what a story needs most is copying names from earlier in the context. Learning to copy
    comes as a sudden drop in the loss whose timing depends on the seed; within a 3-minute
    budget on a 2-core CPU, a wide 2-layer model with rotary positions (RoPE) got there
    sooner and more reliably than 3 or 4 narrower layers, learned positions, a larger batch,
    or a higher or lower learning rate or weight decay.
    """

    stories: int = WORLD_STORIES  # corpus size: the built-in "world" corpus, about 6 MB
    seed: int = WORLD_SEED  # the world's seed: which stories
    vocab_size: int = 2048  # BPE pieces
    tokenizer_chars: int = 600_000  # the tokenizer learns from this much of the train split
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 256
    position: str = "rope"  # rotary position embedding: names get copied sooner (RESULTS.md)
    block_size: int = 128  # about 500 characters: most of a story
    batch_size: int = 16
    max_iters: int = 1500
    lr: float = 5e-3  # high for a small model; beta2 0.95 keeps it steady
    min_lr: float = 5e-4
    warmup_iters: int = 50
    beta2: float = 0.95
    weight_decay: float = 0.1
    amp: bool = True  # bfloat16 autocast: about 1.6x faster on a CPU with AMX or AVX-512 bf16
    compile: bool = False  # measured: its compile time outweighs the faster steps at this size
    train_seed: int = 1337

    def __post_init__(self) -> None:
        for name in ("stories", "vocab_size", "tokenizer_chars", "n_layer", "n_head", "n_embd",
                     "block_size", "batch_size", "max_iters"):
            whole_number(name, getattr(self, name), minimum=1)
        whole_number("seed", self.seed, minimum=0)
        whole_number("warmup_iters", self.warmup_iters, minimum=0)
        whole_number("train_seed", self.train_seed, minimum=0)
        real_number("lr", self.lr, low=0.0)
        real_number("min_lr", self.min_lr, low=0.0)
        real_number("beta2", self.beta2, 0.0, 1.0, high_open=True)
        real_number("weight_decay", self.weight_decay, low=0.0)
        self.model_config(self.vocab_size)  # the shape's own checks (heads, position), one line each

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer,
                         n_head=self.n_head, n_embd=self.n_embd, bias=False, position=self.position)

    def fingerprint(self) -> str:
        """A short hash of this recipe, the world generator and this module's version."""
        recipe = json.dumps(asdict(self), sort_keys=True)
        text = f"{WORLD_MODEL_VERSION}|{generator_fingerprint()}|{recipe}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@lru_cache(maxsize=1)
def generator_fingerprint() -> str:
    """A hash of the story generator: its source files and a sample of what it writes.

    The sources catch any change to the templates, word lists or planning; the sample
    catches a change underneath them (the random module of another Python, say).
    """
    import lslm.world
    from lslm.world import corpus_text

    h = hashlib.sha256()
    for path in sorted(Path(lslm.world.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(corpus_text(20, seed=0).encode())
    return h.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A short hash of everything that makes ``tokenizer`` the tokenizer it is."""
    return hashlib.sha256(json.dumps(tokenizer.state(), sort_keys=True).encode()).hexdigest()[:16]


def _recipe(recipe: WorldRecipe | None) -> WorldRecipe:
    if recipe is None:
        return WorldRecipe()
    if not isinstance(recipe, WorldRecipe):
        raise LslmError(f"recipe must be a WorldRecipe (see with_recipe), got a {type(recipe).__name__}")
    return recipe


def cache_folder(recipe: WorldRecipe | None = None) -> Path:
    """Where ``world_lm(recipe)`` keeps its checkpoint: a folder named by the fingerprint."""
    from lslm.data import cache_dir

    recipe = _recipe(recipe)
    return cache_dir() / "models" / f"world-v{WORLD_MODEL_VERSION}-{recipe.fingerprint()}"


# --------------------------------------------------------------------------------- data
@dataclass
class WorldData:
    """The world corpus cut three ways (train, val, test), a tokenizer and the token tensors."""

    splits: object  # lslm.data.Splits
    tokenizer: Tokenizer
    tokens: dict[str, torch.Tensor]


def world_data(recipe: WorldRecipe | None = None, tokenizer: Tokenizer | None = None) -> WorldData:
    """The recipe's corpus, split contiguously (5% val, 5% test, as ``prepare_data`` does),
    and tokenized; a new BPE tokenizer learns from the start of the train split."""
    from lslm.data import encode_splits, split_text, world_text
    from lslm.tokenizers import train_tokenizer

    recipe = _recipe(recipe)
    splits = split_text(world_text(recipe.stories, recipe.seed))
    if tokenizer is None:
        tokenizer = train_tokenizer("bpe", splits.train[: recipe.tokenizer_chars], recipe.vocab_size)
    return WorldData(splits, tokenizer, encode_splits(splits, tokenizer))


# ------------------------------------------------------------------------ train or load
TRAINED = {"count": 0}  # how many times this process trained a world model (the tests read it)


def train_world_lm(recipe: WorldRecipe | None = None, *, progress: bool = False,
                   out_dir: str | Path | None = None):
    """Train the recipe's tokenizer and GPT from nothing; the ``Trainer`` (its model, tokenizer
    and history). With ``out_dir`` the checkpoint is saved there, fingerprints in its meta."""
    from lslm.train import TrainConfig, Trainer

    recipe = _recipe(recipe)
    data = world_data(recipe)
    config = recipe.model_config(data.tokenizer.vocab_size)
    train_cfg = TrainConfig(
        max_iters=recipe.max_iters, batch_size=recipe.batch_size, lr=recipe.lr, min_lr=recipe.min_lr,
        warmup_iters=min(recipe.warmup_iters, recipe.max_iters // 10), beta2=recipe.beta2,
        weight_decay=recipe.weight_decay, eval_interval=0,
        amp=recipe.amp, compile=recipe.compile, seed=recipe.train_seed, progress=progress, device="cpu",
    )
    meta = {"corpus": "world", "world_fingerprint": recipe.fingerprint(),
            "tokenizer_fingerprint": tokenizer_fingerprint(data.tokenizer), "recipe": asdict(recipe)}
    trainer = Trainer(GPT(config, seed=recipe.train_seed), data.tokenizer, data.tokens, train_cfg,
                      out_dir=out_dir, meta=meta)
    TRAINED["count"] += 1
    trainer.fit()
    if trainer.interrupted:  # Ctrl-C: a half-trained model must not be cached as the real one
        raise KeyboardInterrupt
    return trainer


def _load_cached(folder: Path, recipe: WorldRecipe) -> tuple[GPT, Tokenizer]:
    """The model cached in ``folder``, after checking that it is this recipe's; else LslmError."""
    from lslm.checkpoint import load_checkpoint, load_model

    meta = load_checkpoint(folder).get("meta") or {}
    if meta.get("world_fingerprint") != recipe.fingerprint():
        raise LslmError(f"{folder} holds a world model of another recipe or generator version")
    model, tokenizer = load_model(folder)
    if meta.get("tokenizer_fingerprint") != tokenizer_fingerprint(tokenizer):
        raise LslmError(f"{folder} holds a tokenizer that is not the one its model was trained with")
    return model, tokenizer


def world_lm(recipe: WorldRecipe | None = None, *, retrain: bool = False,
             progress: bool = False) -> tuple[GPT, Tokenizer]:
    """The world's base model and its BPE tokenizer, trained once and cached.

    The first call trains it (about 3 minutes on a 2-core laptop CPU with the default
    recipe) and saves it in ``cache_folder(recipe)``; later calls load it. A cached file that
    is corrupt, or not this recipe's, is trained again. Nothing is downloaded.
    """
    recipe = _recipe(recipe)
    folder = cache_folder(recipe)
    from lslm.checkpoint import checkpoint_file
    from lslm.data import build_lock

    with build_lock(folder):  # a notebook running alongside may be training it right now
        if checkpoint_file(folder).exists() and not retrain:
            try:
                model, tokenizer = _load_cached(folder, recipe)
                return _bound(model, tokenizer), tokenizer
            except LslmError as e:
                print(f"note: the cached world model could not be used ({e}); training it again")
        trainer = train_world_lm(recipe, progress=progress)
        try:
            trainer.save(folder)
        except LslmError as e:  # a read-only home: still hand back the model, just uncached
            print(f"note: could not cache the world model ({e}); set LSLM_CACHE")
        return _bound(trainer.model.eval(), trainer.tokenizer), trainer.tokenizer


def _bound(model: GPT, tokenizer: Tokenizer) -> GPT:
    # The model remembers its tokenizer, so that check_tokenizer can refuse another one.
    model.tokenizer_fingerprint = tokenizer_fingerprint(tokenizer)
    return model


def check_tokenizer(model: GPT, tokenizer: Tokenizer) -> None:
    """Refuse a tokenizer that ``model`` was not trained with (a one-line ``LslmError``)."""
    from lslm.checkpoint import check_vocab

    if not isinstance(model, GPT):
        raise LslmError(f"model must be an lslm GPT, got a {type(model).__name__}")
    if not isinstance(tokenizer, Tokenizer):
        raise LslmError(f"tokenizer must be an lslm Tokenizer, got a {type(tokenizer).__name__}")
    check_vocab(model.config.vocab_size, tokenizer.vocab_size, "this model")
    want = getattr(model, "tokenizer_fingerprint", None)
    if want is not None and want != tokenizer_fingerprint(tokenizer):
        raise LslmError(
            "this model was trained with another tokenizer (same vocabulary size, different "
            "pieces), so its token ids would mean other text: use the tokenizer that world_lm() "
            "returned with it"
        )


# ----------------------------------------------------------------- writing and judging
def first_sentences(text: str, n: int) -> list[str]:
    """The first sentence of each of the first ``n`` stories of ``text``: story openings to
    prompt with (take them from held-out text, e.g. the val split)."""
    from lslm.world import sentences_of

    n = whole_number("n", n, minimum=1)
    found = [story[0] for story in sentences_of(text) if story]
    if len(found) < n:
        raise LslmError(f"the text holds {len(found)} stories, fewer than the {n} asked for: "
                        "give a longer text or a smaller n")
    return found[:n]


@torch.no_grad()
def write_stories(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], *,
                  max_new_tokens: int = 320, temperature: float = 0.8, top_k: int | None = None,
                  top_p: float | None = None, seed: int = 0, chunk: int = 48) -> list[str]:
    """Continue each prompt until the story separator (a blank line) or ``max_new_tokens``;
    each story is its prompt and the continuation cut before the separator, on one line.

    Tokens come ``chunk`` at a time, so a story that ends early costs little more than its
    own length. Prompt ``i`` is sampled from seed ``seed + i``: the same call gives the same
    stories. Works for any lslm GPT and its tokenizer (char or BPE).
    """
    check_tokenizer(model, tokenizer)
    max_new_tokens = whole_number("max_new_tokens", max_new_tokens, minimum=1)
    chunk = whole_number("chunk", chunk, minimum=1)
    seed = whole_number("seed", seed, minimum=0)
    _check_prompts(prompts)
    out = []
    for i, prompt in enumerate(prompts):
        # No space after the prompt: in training text the space starts the next piece ("▁He").
        ids = tokenizer.encode(prompt)[-model.config.block_size :]
        new: list[int] = []
        step = 0
        while len(new) < max_new_tokens:
            context = (ids + new)[-model.config.block_size :]
            take = min(chunk, max_new_tokens - len(new))
            got = model.generate(torch.tensor([context]), take, temperature=temperature,
                                 top_k=top_k, top_p=top_p, seed=(seed + i) * 1000 + step)
            new += got[0, len(context) :].tolist()
            step += 1
            if SEPARATOR in tokenizer.decode(new):
                break
        out.append(_story(prompt, tokenizer.decode(new)))
    return out


def _check_prompts(prompts: object) -> None:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts or not all(
            isinstance(p, str) and p.strip() for p in prompts):
        raise LslmError("prompts must be a list of non-empty strings, e.g. the first sentence of "
                        "each story (see first_sentences)")


def _story(prompt: str, continuation: str) -> str:
    """The prompt and its continuation up to the separator, as one line (single newlines and
    runs of spaces become one space, as ``check_text`` reads them anyway). A continuation
    that stopped before the separator loses its unfinished last sentence: the checker would
    count a sentence cut off by the token budget as malformed."""
    body, *rest = continuation.split(SEPARATOR)
    if not rest:
        ends = [m.end() for m in _SENTENCE_END.finditer(body)]
        body = body[: ends[-1]] if ends else ""
    return " ".join((prompt + body).split())


@torch.no_grad()
def sample_stories(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str], *,
                   max_new_tokens: int | None = None, temperature: float = 0.8,
                   top_k: int | None = None, top_p: float | None = None, seed: int = 0) -> list[str]:
    """Like ``write_stories``, but fast: prompts of the same length in tokens are sampled
    together as one batch, every row for ``max_new_tokens`` (default: until the context
    window is full, so the KV cache serves every step). Each story is cut at the separator,
    or else after its last finished sentence."""
    check_tokenizer(model, tokenizer)
    _check_prompts(prompts)
    seed = whole_number("seed", seed, minimum=0)
    encoded = [tokenizer.encode(p)[-model.config.block_size + 1 :] for p in prompts]
    groups: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        groups.setdefault(len(ids), []).append(i)
    out: list[str] = [""] * len(prompts)
    for length, members in sorted(groups.items()):
        new = model.config.block_size - length if max_new_tokens is None else max_new_tokens
        new = whole_number("max_new_tokens", new, minimum=1)
        got = model.generate(torch.tensor([encoded[i] for i in members]), new, temperature=temperature,
                             top_k=top_k, top_p=top_p, seed=seed * 1000 + length)
        for row, i in zip(got.cpu().tolist(), members):
            out[i] = _story(prompts[i], tokenizer.decode(row[length:]))
    return out


def compare_settings(model: GPT, tokenizer: Tokenizer, prompts: Sequence[str],
                     methods: dict[str, dict] | None = None, *, seed: int = 0,
                     max_new_tokens: int | None = None) -> list[dict]:
    """Each sampling setting's stories for ``prompts`` (``sample_stories``), judged by the
    world's checker (``judge``) and measured for variety: one row per setting with its
    settings, the stories, the judge's rates, ``distinct_2`` over all its stories and the
    mean share of repeated word 3-grams per story (``lslm.generate``)."""
    from lslm.generate import METHODS, distinct_n, repeated_share

    methods = METHODS if methods is None else methods
    rows = []
    for name, settings in methods.items():
        stories = sample_stories(model, tokenizer, prompts, seed=seed, max_new_tokens=max_new_tokens,
                                 **settings)
        rows.append({"method": name, **settings, "samples": stories, **judge(stories),
                     "distinct_2": distinct_n(stories, 2),
                     "repeated_3": sum(repeated_share(s, 3) for s in stories) / len(stories)})
    return rows


def judge(stories: Sequence[str], prompt_sentences: int = 1) -> dict:
    """``lslm.world.check_text``'s rates over the sentences each story *added* to its prompt
    (the first ``prompt_sentences`` of each story are context, not judged), with counts.

    ``empty``: stories that added no sentence at all (they count in no rate, so watch it).
    """
    from lslm.world import check_text

    if isinstance(stories, str) or not stories:
        raise LslmError("judge takes a non-empty list of stories (strings), e.g. from write_stories")
    if any(not isinstance(s, str) or not s.strip() or SEPARATOR in s for s in stories):
        raise LslmError("each story must be a non-empty string without a blank line in it")
    report = check_text(SEPARATOR.join(stories))
    added = [s for s in report.sentences if s.index >= prompt_sentences]
    told = {s.story for s in added}
    pronouns = [p.agrees for s in added for p in s.pronouns]
    topic = [s.on_topic for s in added if s.on_topic is not None]
    formed = [s for s in added if s.well_formed]

    def rate(hits: int, total: int) -> float:
        return hits / total if total else math.nan

    return {
        "stories": len(stories),
        "empty": len(stories) - len(told),
        "sentences": len(added),
        "well_formed": rate(len(formed), len(added)),
        "pronouns": len(pronouns),
        "pronoun_agreement": rate(sum(pronouns), len(pronouns)),
        "on_topic": rate(sum(topic), len(topic)),
        "consistent": rate(sum(not s.problems for s in formed), len(formed)),
    }


@torch.no_grad()
def sliding_nats(model: GPT, ids: Sequence[int], batch_size: int = 32) -> float:
    """The total negative log-likelihood (nats) of ``ids[1:]``, each token given the ones
    before it, read in windows of ``block_size`` that overlap by half: each window scores
    only the tokens the window before did not, so every token after the first window
    sees at least half a context (``lslm.evaluate`` cuts the text into separate windows,
    where a window's first tokens see almost nothing)."""
    block = model.config.block_size
    if len(ids) < 2:
        raise LslmError("sliding_nats needs at least 2 token ids: one to read, one to predict")
    stride = max(1, block // 2)
    t = torch.as_tensor(list(ids), dtype=torch.long)
    starts = list(range(0, max(1, len(t) - block), stride))
    if starts[-1] + block < len(t) - 1:  # the last window ends at the last token
        starts.append(len(t) - 1 - block)
    total, done = 0.0, 0  # targets ids[1 .. done] are scored
    with evaluating(model):
        for i in range(0, len(starts), batch_size):
            group = starts[i : i + batch_size]
            x = torch.stack([t[s : s + block] for s in group]) if len(t) > block else t[None, :-1]
            y = torch.stack([t[s + 1 : s + 1 + block] for s in group]) if len(t) > block else t[None, 1:]
            logits = model(x.to(model_device(model)))[0].float().cpu()
            logp = torch.log_softmax(logits, dim=-1).gather(-1, y[..., None])[..., 0].double()
            for row, s in enumerate(group):
                total -= logp[row, max(done, s) - s :].sum().item()
                done = s + y.size(1)
    return total


def with_recipe(**changes) -> WorldRecipe:
    """The default recipe with some fields changed (``with_recipe(max_iters=10)``)."""
    return replace(WorldRecipe(), **changes)
