"""Issue 16: a base model that writes sense on a laptop, measured against two baselines.

    python benchmarks/bench_world.py                          # 2 threads, 50 stories per model
    python benchmarks/bench_world.py --threads 1 --record benchmarks/RESULTS.md

What it measures, in this order, in one process:

1. **Pretraining from an empty cache**: ``lslm.pretrained.world_lm()`` with ``LSLM_CACHE``
   pointing at a new empty folder: writing the corpus, training the BPE tokenizer,
   tokenizing, training the GPT and saving it. Wall time, and the process's peak RSS
   (``resource.getrusage``) right after, which is the pretraining's peak (nothing ran
   before it). Then the time of a second call, which loads the cached model.
2. **Coherence** at temperature 0.8: each model continues the first sentence of the first
   ``--stories`` stories of the validation split (held out from training) until the
   story separator; ``lslm.world_model.judge`` (``lslm.world.check_text``) scores the
   sentences each model *added*: well formed, pronoun agreement, on topic, consistent.
3. **Validation perplexity** of the same text, the validation split (5% of the corpus),
   for all three models. Per-token perplexities do not compare across tokenizers, so the
   table gives the total negative log-likelihood of the whole split turned into **bits per
   character** and **per-word perplexity** (exp(nats / words), words being the
   whitespace-separated words of the split); the per-token figure is there for each
   model's own tokenizer. The GPTs are scored with a sliding window (stride half the
   context), so that every token but the first window's has at least half a context.

The baselines, on the same corpus:

* **n-gram**: ``lslm.ngram.NGramLM``, interpolated Kneser-Ney over the world model's own
  BPE tokens, fitted on the train split; the order (2-5) with the lowest validation loss.
* **char GPT**: notebook 04's GPT (4 layers, 4 heads, 128 wide, 64 characters of context,
  ``char_lm``'s shape) with the ``quick`` recipe's training settings (batch 32, lr 3e-3,
  bfloat16 autocast; ``--char-compile`` adds its torch.compile), trained for the wall
  time the world model's own training took: it runs 20 steps to time them, then as many
  steps as fit in the rest of that time.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

# --spin: worker threads spin between operations instead of sleeping, as `lslm train` sets
# it (lslm/cli.py); OpenMP reads it when torch is imported, hence before the imports.
if __name__ == "__main__" and "--spin" in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")

import torch  # noqa: E402

import lslm.data
import lslm.world_model as wm
from lslm.model import GPT, GPTConfig
from lslm.ngram import NGramLM
from lslm.pretrained import world_lm
from lslm.recipes import RECIPES
from lslm.tokenizers import train_tokenizer
from lslm.train import TrainConfig, Trainer
from machine import machine  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

TARGETS = {"pretrain_s": 180, "well_formed": 0.90, "pronoun_agreement": 0.90, "on_topic": 0.95,
           "rss_mb": 2000}
TEMPERATURE = 0.8


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def perplexities(nats: float, tokens: int, text: str) -> dict:
    words = len(text.split())
    return {"bits_per_char": nats / math.log(2) / len(text), "word_ppl": math.exp(nats / words),
            "token_ppl": math.exp(nats / tokens), "tokens": tokens}


def coherence_row(stories: list[str], seconds: float) -> dict:
    return {**wm.judge(stories), "gen_s": seconds}


def ngram_stories(model: NGramLM, tok, prompts: list[str], max_new: int, seed: int) -> list[str]:
    nl = tok.encode("\n")
    out = []
    for i, prompt in enumerate(prompts):
        ids = tok.encode(prompt)
        got = model.generate(ids, max_new, temperature=TEMPERATURE, seed=seed + i, stop=nl + nl)
        out.append(wm._story(prompt, tok.decode(got[len(ids) :])))
    return out


def train_char_gpt(text_splits, budget_s: float, compile_: bool, seed: int):
    """The char baseline: notebook 04's shape, the quick recipe's settings, ``budget_s`` of training."""
    tok = train_tokenizer("char", text_splits.train + text_splits.val + text_splits.test)
    data = lslm.data.encode_splits(text_splits, tok)
    quick = RECIPES["quick"]
    config = GPTConfig(vocab_size=tok.vocab_size, bias=False, **quick.model)
    settings = {k: v for k, v in quick.train.items() if k not in ("max_iters", "eval_interval")}
    settings["compile"] = compile_ and settings.get("compile", False)

    def trainer(steps: int) -> Trainer:
        cfg = TrainConfig(**settings, max_iters=steps, eval_interval=0, progress=False, device="cpu",
                          seed=seed, warmup_iters=min(100, steps // 10))
        return Trainer(GPT(config, seed=seed), tok, data, cfg)

    t0 = time.perf_counter()
    probe = trainer(10_000)
    probe.fit(20)  # with compile, this includes compiling, as the real run will
    per_step = (time.perf_counter() - t0) / 20
    steps = max(20, int(budget_s / per_step))
    t1 = time.perf_counter()
    real = trainer(steps)
    real.fit()
    return real.model.eval(), tok, steps, time.perf_counter() - t1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stories", type=int, default=50, help="prompts per model")
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--char-compile", action="store_true", help="torch.compile the char baseline")
    parser.add_argument("--orders", default="2,3,4,5",
                        help="n-gram orders to try (5 is the most that fits 64-bit keys at 2048 tokens)")
    parser.add_argument("--spin", action="store_true",
                        help="OMP_WAIT_POLICY=ACTIVE, as `lslm train` sets it (default: as a notebook runs)")
    parser.add_argument("--tiny", action="store_true",
                        help="a tiny recipe, to check that the benchmark runs (its figures mean nothing)")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="change one field of the world recipe (repeatable), e.g. --set max_iters=1700")
    parser.add_argument("--top-p", type=float, default=None,
                        help="also judge the world model sampled with nucleus (top-p) sampling at the same "
                             "temperature; the targets are still judged on plain sampling")
    parser.add_argument("--world-only", action="store_true",
                        help="measure the world model alone (skip the n-gram and char baselines)")
    parser.add_argument("--cache", type=Path,
                        help="an empty (or new) folder to use as LSLM_CACHE and keep afterwards "
                        "(default: a temporary one); notebooks can then load the model from it")
    parser.add_argument("--record", type=Path, help="append the results to this Markdown file")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    recipe = wm.WorldRecipe()
    if args.tiny:
        recipe = wm.with_recipe(stories=200, vocab_size=400, tokenizer_chars=50_000, n_layer=1, n_head=2,
                                n_embd=32, block_size=32, batch_size=4, max_iters=20, warmup_iters=2)
    if args.set:
        recipe = dataclasses.replace(recipe, **parse_fields(args.set, recipe))
    res: dict = {"recipe": recipe.__dict__, "threads": args.threads}

    # 1. pretraining from an empty cache
    if args.cache is not None and args.cache.exists() and any(args.cache.iterdir()):
        parser.error(f"--cache {args.cache} is not empty: the benchmark times an empty cache")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["LSLM_CACHE"] = str(args.cache or scratch)
        lslm.data.world_text.cache_clear()
        t0, c0 = time.perf_counter(), time.process_time()
        model, tok = world_lm(recipe)
        res["pretrain_s"] = time.perf_counter() - t0
        # CPU seconds of this process: on a busy machine, at 1 thread, close to what the wall
        # time would be on an idle one (the basis for extrapolating, not a measurement of it).
        res["pretrain_cpu_s"] = time.process_time() - c0
        res["pretrain_rss_mb"] = peak_rss_mb()
        t0 = time.perf_counter()
        world_lm(recipe)
        res["load_s"] = time.perf_counter() - t0
    res["params"] = model.num_params()
    print(f"pretraining {res['pretrain_s']:.1f} s ({res['pretrain_cpu_s']:.1f} CPU s), "
          f"peak RSS {res['pretrain_rss_mb']:.0f} MB, load {res['load_s']:.2f} s, {res['params']:,} parameters", flush=True)

    # The model's training time alone, for the char baseline's budget: time a re-run of the
    # pieces before training (corpus, tokenizer, tokens) and subtract it.
    t0 = time.perf_counter()
    data = wm.world_data(recipe)
    res["data_s"] = time.perf_counter() - t0
    lslm.data.world_text.cache_clear()
    t0 = time.perf_counter()
    lslm.data.world_text(recipe.stories, recipe.seed)
    res["corpus_s"] = time.perf_counter() - t0
    budget = 1.0 if args.tiny else max(10.0, res["pretrain_s"] - res["data_s"])
    splits, val = data.splits, data.splits.val
    # The split starts wherever 90% of the characters fall, mid-story: prompt from whole stories.
    prompts = wm.first_sentences(val[val.index(wm.SEPARATOR) :], args.stories)

    # 2 and 3 for the world model
    rows = {}
    t0 = time.perf_counter()
    stories = wm.write_stories(model, tok, prompts, max_new_tokens=args.max_new_tokens,
                               temperature=TEMPERATURE, seed=args.seed)
    rows["world GPT (BPE)"] = coherence_row(stories, time.perf_counter() - t0)
    val_ids = tok.encode(val)
    rows["world GPT (BPE)"].update(perplexities(wm.sliding_nats(model, val_ids), len(val_ids) - 1, val))
    samples = {"world GPT (BPE)": stories[:2]}
    print("world:", json.dumps(rows["world GPT (BPE)"]), flush=True)
    if args.top_p is not None:  # the same model, sampled with the tail of unlikely tokens cut off
        name = f"world GPT (BPE), top-p {args.top_p}"
        t0 = time.perf_counter()
        nucleus = wm.write_stories(model, tok, prompts, max_new_tokens=args.max_new_tokens,
                                   temperature=TEMPERATURE, top_p=args.top_p, seed=args.seed)
        rows[name] = coherence_row(nucleus, time.perf_counter() - t0)
        rows[name].update({k: v for k, v in rows["world GPT (BPE)"].items() if k in ("bits_per_char", "word_ppl", "token_ppl", "tokens")})
        print("world, top-p:", json.dumps(rows[name]), flush=True)
    if args.world_only:
        return 0

    # the n-gram baseline, over the same BPE tokens
    train_ids = data.tokens["train"].numpy()
    best = None
    for order in (int(o) for o in args.orders.split(",")):
        ng = NGramLM(tok.vocab_size, order).fit(train_ids)
        nats = ng.nats(val_ids)
        print(f"n-gram order {order}: {math.exp(nats / (len(val_ids) - 1)):.3f} per-token ppl", flush=True)
        if best is None or nats < best[1]:
            best = (ng, nats, order)
    ng, nats, order = best
    name = f"{order}-gram Kneser-Ney (BPE)"
    t0 = time.perf_counter()
    stories = ngram_stories(ng, tok, prompts, args.max_new_tokens, args.seed)
    rows[name] = coherence_row(stories, time.perf_counter() - t0)
    rows[name].update(perplexities(nats, len(val_ids) - 1, val))
    samples[name] = stories[:2]
    print("n-gram:", json.dumps(rows[name]), flush=True)

    # the char GPT baseline, for the world model's training time
    char_model, char_tok, steps, char_s = train_char_gpt(splits, budget, args.char_compile, 1337)
    name = f"char GPT 4x4x128 (quick settings, {steps} steps)"
    t0 = time.perf_counter()
    stories = wm.write_stories(char_model, char_tok, prompts, max_new_tokens=4 * args.max_new_tokens,
                               temperature=TEMPERATURE, seed=args.seed, chunk=192)
    rows[name] = coherence_row(stories, time.perf_counter() - t0)
    char_ids = char_tok.encode(val)
    rows[name].update(perplexities(wm.sliding_nats(char_model, char_ids), len(char_ids) - 1, val))
    rows[name]["train_s"] = char_s
    samples[name] = stories[:2]
    print("char:", json.dumps(rows[name]), flush=True)

    res.update(rows=rows, samples=samples, char_budget_s=budget, load_before=load_before,
               load_after=os.getloadavg(), peak_rss_mb=peak_rss_mb(), val_chars=len(val),
               val_words=len(val.split()), machine=machine())
    report = markdown(res, args)
    print(report)
    if args.record:
        with args.record.open("a", encoding="utf-8") as f:
            f.write("\n" + report)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    return 0


def parse_fields(pairs: list[str], recipe) -> dict:
    """``["max_iters=1700", "compile=true"]`` -> typed values for the recipe's fields."""
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in recipe.__dataclass_fields__:
            raise SystemExit(f"--set {pair}: the world recipe has no field {name!r}")
        kind = type(getattr(recipe, name))
        out[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def markdown(res: dict, args) -> str:
    r = res["recipe"]
    world = res["rows"]["world GPT (BPE)"]
    lines = [
        f"### {datetime.date.today()}: the world model (issue 16) against an n-gram and a char GPT",
        "",
        f"Command: `python {' '.join(shlex.quote(a) for a in sys.argv)}`",
        "",
        f"Machine: {res['machine']}; load average {res['load_before'][0]:.1f} before, "
        f"{res['load_after'][0]:.1f} after (1 minute)",
        "",
        f"Recipe: {r['stories']:,} stories (seed {r['seed']}), BPE {r['vocab_size']}, GPT "
        f"{r['n_layer']}x{r['n_head']}x{r['n_embd']} context {r['block_size']}, {r['position']} positions "
        f"({res['params']:,} parameters), batch {r['batch_size']}, {r['max_iters']} steps, "
        f"lr {r['lr']:g} -> {r['min_lr']:g}, amp {r['amp']}, compile {r['compile']}",
        "",
        f"- Pretraining from an empty cache (corpus, tokenizer, tokens, training, saving): "
        f"**{res['pretrain_s']:.1f} s** with {res['threads']} thread(s), {res['pretrain_cpu_s']:.1f} s of "
        f"CPU time (target <= {TARGETS['pretrain_s']} s "
        f"on 2 threads); writing the corpus alone {res['corpus_s']:.1f} s, corpus + tokenizer + "
        f"tokens {res['data_s']:.1f} s; loading it from the cache {res['load_s']:.2f} s",
        f"- Peak RSS of pretraining: **{res['pretrain_rss_mb']:.0f} MB** (target < {TARGETS['rss_mb']} MB); "
        f"of the whole benchmark {res['peak_rss_mb']:.0f} MB",
        f"- Validation split: {res['val_chars']:,} characters, {res['val_words']:,} words; "
        f"{args.stories} prompts (its stories' first sentences), temperature {TEMPERATURE}",
        "",
        "| model | sentences judged | well formed | pronoun agreement (pronouns) | on topic | "
        "consistent | empty | val bits/char | val per-word ppl | val per-token ppl |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in res["rows"].items():
        lines.append(
            f"| {name} | {row['sentences']} | {pct(row['well_formed'])} | "
            f"{pct(row['pronoun_agreement'])} ({row['pronouns']}) | {pct(row['on_topic'])} | "
            f"{pct(row['consistent'])} | {row['empty']} | {row['bits_per_char']:.4f} | "
            f"{row['word_ppl']:.3f} | {row['token_ppl']:.3f} |")
    met = [
        ("pretraining time", res["pretrain_s"] <= TARGETS["pretrain_s"]),
        ("well formed", world["well_formed"] >= TARGETS["well_formed"]),
        ("pronoun agreement", world["pronoun_agreement"] >= TARGETS["pronoun_agreement"]),
        ("on topic", world["on_topic"] >= TARGETS["on_topic"]),
        ("peak RSS", res["pretrain_rss_mb"] < TARGETS["rss_mb"]),
    ]
    lines += ["", "Targets met in this run: " + ", ".join(f"{k} {'yes' if ok else 'NO'}" for k, ok in met),
              "", f"Char baseline trained {res['rows'][list(res['rows'])[-1]]['train_s']:.1f} s "
              f"(budget: the world model's pretraining minus corpus and tokens, {res['char_budget_s']:.1f} s).",
              "", "Samples (the first two stories of each model; the prompt is the first sentence):", ""]
    for name, stories in res["samples"].items():
        for s in stories:
            lines.append(f"- {name}: {s}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
