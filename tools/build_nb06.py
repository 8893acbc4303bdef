"""Write notebooks/06_text_generation.ipynb from the cells below (then run it with nbval
and tidy it with tools/nbtidy.py). Kept so the notebook's text can be reviewed as code."""

from nbbuild import code, coding_exercise, md, write

md("""
# 06 · Text generation: how a model writes, and how to steer the dice

**Goal:** text generation is the first application the source article lists (文本生成).
A language model never writes a sentence; it gives a probability for every possible next
token, and *something else* picks one. In this notebook you will:

1. meet a model that writes readable stories, and the **judge** that reads them: the story
   world of `lslm.world` knows its own grammar, so a program can say whether each sentence
   is well formed, whether its pronouns agree and whether it stays with the story's characters;
2. look at one next-token distribution and see what greedy decoding, temperature, top-k
   and top-p (nucleus) sampling do to it, and build top-p by hand;
3. measure the trade-off between **sameness** and **nonsense** in numbers, with the judge;
4. see where the model looks when it writes a character's name;
5. speed generation up with a **KV cache**, and check that it gives the same tokens;
6. play with the settings in the sampling playground.

It takes about a minute on a laptop CPU once the world model is cached. The first time,
`world_lm()` trains it: about 3 minutes on a 2-core laptop, once for every notebook that uses it.
""")

code("""
import textwrap
import time

import matplotlib.pyplot as plt
import torch

import lslm
from lslm.data import split_text, world_text
from lslm.model import next_token_probs
from lslm.pretrained import world_lm
from lslm.world import check_text
from lslm.world.grammar import NAME_GENDER
from lslm.world_model import compare_settings, first_sentences, sample_stories

model, tok = world_lm(progress=True)  # trained once on this machine, then loaded from the cache
print(f"{model.num_params():,} parameters, {tok.vocab_size} BPE pieces, "
      f"{model.config.block_size} tokens (about {4 * model.config.block_size} characters) of context")
""")

md("""
## 1 · A model that writes stories, and a judge

`lslm.world` writes simple stories from a seed: about 1,100 words, 198 named characters
with jobs, places, objects, a problem and its solution. The model above is a GPT of about
2 million parameters (2 layers, 256 wide, rotary position embeddings) trained on 10,000 of
them with the library's own training loop; TinyStories (Eldan & Li 2023) showed that
small models write fluent English when the world is this small. Below, it continues the first sentence of stories it never saw:
the validation split.
""")

code("""
val = split_text(world_text()).val
val = val[val.index("\\n\\n"):]  # the split starts mid-story: begin at the next whole story
prompts = first_sentences(val, 32)  # 32 openings the model never trained on
stories = sample_stories(model, tok, prompts[:2], temperature=0.8, seed=1)
for story in stories:
    print(textwrap.fill(story, 100), "\\n")
""")

md("""
Because the world is ours, we can **judge** what the model writes. `check_text` reads a
text with the same sentence templates that wrote the world, and for every sentence says:

* **well formed**: it is a sentence of the world's grammar (no missing words, no made-up ones);
* **pronouns agree**: in this world a pronoun means the character named most recently, so
  "he" after "a nurse named Mia" is wrong;
* **on topic**: it is about a character the story has introduced, not a stranger;
* **consistent**: no object used before it exists, nobody in two places at once.

Here is the judge on the first story above, and on a story we spoiled by hand.
""")

code("""
def show(report):
    print(f"{'well formed':>11} {'pronouns':>8} {'on topic':>8}  sentence")
    for s in report.sentences:
        agree = "-" if not s.pronouns else ("yes" if all(p.agrees for p in s.pronouns) else "NO")
        topic = "-" if s.on_topic is None else ("yes" if s.on_topic else "NO")
        print(f"{'yes' if s.well_formed else 'NO':>11} {agree:>8} {topic:>8}  {s.text[:72]}")


show(check_text(stories[0]))
print()
spoiled = ("Once upon a time, there was a baker named Tom. Tom had a red kite that he loved very much. "
           "One day, she decided to show her kite in the woods. Zoe went to the the woods.")
spoiled_report = check_text(spoiled)
show(spoiled_report)
assert [s.well_formed for s in spoiled_report.sentences] == [True, True, True, False]
assert [p.agrees for p in spoiled_report.sentences[2].pronouns] == [False, False]
assert spoiled_report.sentences[3].on_topic is False  # Zoe was never introduced
""")

md("""
## 2 · One distribution, four ways to pick

Give the model a prompt and it returns logits for the next token (here a BPE piece: a
word or part of one). Softmax turns them into probabilities. Then a **decoding rule** chooses:

* **greedy**: always the likeliest token (`temperature=0`);
* **temperature** $T$: divide the logits by $T$ before softmax; $T<1$ sharpens the
  distribution, $T>1$ flattens it;
* **top-k**: keep only the $k$ likeliest tokens, renormalise, sample;
* **top-p** (nucleus): keep the smallest set of likeliest tokens whose probabilities add
  up to $p$, renormalise, sample. Unlike top-k, the set grows when the model is unsure.

Where will Mia take her kite? Any of the world's places fits the story here, and the model
spreads its bets over them:
""")

code("""
prompt = ("Once upon a time, there was a nurse named Mia. Mia had a red kite that she loved very much. "
          "One sunny day, she decided to show her kite in the")
with torch.no_grad():
    logits = model(torch.tensor([tok.encode(prompt)]))[0][:, -1, :]

rules = {"temperature 1 (as trained)": dict(temperature=1.0),
         "temperature 0.5": dict(temperature=0.5),
         "temperature 1.5": dict(temperature=1.5),
         "top-k 5": dict(temperature=1.0, top_k=5),
         "top-p 0.8": dict(temperature=1.0, top_p=0.8)}
dists = {name: next_token_probs(logits, **kw)[0] for name, kw in rules.items()}
base = dists["temperature 1 (as trained)"]
shown = 12  # the 12 likeliest pieces at temperature 1
order = base.argsort(descending=True)[:shown]
labels = [tok.id_to_piece(i).replace("▁", "␣") for i in order.tolist()]

fig, axes = plt.subplots(1, len(dists), figsize=(15, 3.8), sharey=True)
for ax, (name, p) in zip(axes, dists.items()):
    kept = p[order] > 0
    ax.bar(range(shown), p[order], color="tab:blue")
    # A cut piece has probability 0: draw its bar at its probability before the cut.
    cut = [i for i in range(shown) if not kept[i]]
    ax.bar(cut, base[order][cut], color="white", edgecolor="grey", hatch="///")
    if name.startswith("temperature 1 "):
        ax.bar(0, p[order][0], color="tab:orange")
    ax.set_xticks(range(shown), labels, fontsize=8, rotation=60, ha="right")
    ax.set_title(name, fontsize=10)
axes[0].set_ylabel("probability")
legend = [plt.matplotlib.patches.Patch(color="tab:blue", label="probability it is sampled with"),
          plt.matplotlib.patches.Patch(color="tab:orange", label="what greedy always picks"),
          plt.matplotlib.patches.Patch(facecolor="white", edgecolor="grey", hatch="///",
                                       label="cut: never sampled (drawn at its old probability)")]
fig.legend(handles=legend, loc="lower center", ncol=3, frameon=False)
fig.suptitle(f"Next piece after “…{prompt[-38:]}” (␣ = a space before the word)")
fig.tight_layout(rect=(0, 0.08, 1, 1))
plt.show()
print("likeliest:", ", ".join(f"{l} {base[i]:.0%}" for l, i in zip(labels[:6], order[:6].tolist())))
""")

md("""
### Top-p by hand

Sort the probabilities, add them up from the top, and keep tokens until the running total
reaches $p$. The library's `next_token_probs` does the same with tensors; check that the two agree.
""")

code("""
def top_p_by_hand(probs, p):
    ranked = sorted(enumerate(probs), key=lambda item: -item[1])
    kept, total = [], 0.0
    for token, prob in ranked:
        if total >= p:  # the tokens before this one already reach p
            break
        kept.append(token)
        total += prob
    out = [0.0] * len(probs)
    for token in kept:
        out[token] = probs[token] / total
    return out


mine = torch.tensor(top_p_by_hand(base.tolist(), 0.8))
assert torch.allclose(mine, dists["top-p 0.8"], atol=1e-6)
print(f"top-p 0.8 keeps {(mine > 0).sum().item()} of {tok.vocab_size} pieces here; the library agrees")
""")

md("""
## 3 · Sameness against nonsense, measured by the judge

Each rule below continues the same 32 openings, openings of the same length together in a
batch, until the model's context window is full; the judge reads every finished sentence
the model added. Two kinds of numbers:

* **quality**, from the judge: well formed, pronouns agree, on topic;
* **variety**: **distinct-2**, the share of different word pairs among all word pairs of
  the 32 stories (low = every story says the same), and **repeated 3-grams**, the share of
  word triples that already occurred earlier in the same story (high = loops).
""")

code("""
settings = {
    "greedy": dict(temperature=0.0),
    "temperature 0.5": dict(temperature=0.5),
    "temperature 0.8": dict(temperature=0.8),
    "temperature 1.0": dict(temperature=1.0),
    "temperature 1.3": dict(temperature=1.3),
    "temperature 1.6": dict(temperature=1.6),
    "top-k 10, T 1.3": dict(temperature=1.3, top_k=10),
    "top-p 0.9, T 1.3": dict(temperature=1.3, top_p=0.9),
}
start = time.perf_counter()
rows = compare_settings(model, tok, prompts, settings, seed=0)
print(f"wrote and judged {len(rows)} x {len(prompts)} stories in {time.perf_counter() - start:.1f} s\\n")
print(f"{'rule':<17} {'well formed':>11} {'pronouns':>9} {'on topic':>9} {'distinct-2':>11} {'repeated':>9}")
for r in rows:
    print(f"{r['method']:<17} {r['well_formed']:>11.0%} {r['pronoun_agreement']:>9.0%} "
          f"{r['on_topic']:>9.0%} {r['distinct_2']:>11.2f} {r['repeated_3']:>9.0%}")
by = {r["method"]: r for r in rows}
""")

code("""
temps = [r for r in rows if r["method"] == "greedy" or r["method"].startswith("temperature")]
fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
t = [r["temperature"] for r in temps]
for key, label, style in (("well_formed", "well formed", "o-"), ("pronoun_agreement", "pronouns agree", "s-"),
                          ("on_topic", "on topic", "^-"), ("distinct_2", "distinct-2 (variety)", "D--")):
    left.plot(t, [r[key] for r in temps], style, label=label)
left.set(xlabel="temperature (0 = greedy)", ylabel="share", ylim=(0, 1.05),
         title="Hotter: more variety, fewer good sentences")
left.legend(loc="lower left")
colours = plt.cm.viridis([i / (len(temps) - 1) for i in range(len(temps))])
for r in rows:
    cut = "top" in r["method"]
    colour = "tab:red" if r["method"].startswith("top-k") else "tab:orange" if cut else colours[temps.index(r)]
    right.scatter(r["distinct_2"], r["well_formed"], s=110 if cut else 60, marker="*" if cut else "o",
                  color=colour, label=r["method"], edgecolor="black", linewidth=0.4)
right.set(xlabel="distinct-2 across the 32 stories → variety", ylabel="well-formed sentences → quality",
          title="Top-k and top-p (stars) cut the tail: variety at less cost")
right.legend(loc="lower left", fontsize=9)
fig.tight_layout()
plt.show()
""")

code("""
# What the numbers say, checked (they hold for the model trained at 1 or 2 threads):
assert by["temperature 0.8"]["well_formed"] > 0.85 and by["temperature 0.8"]["pronoun_agreement"] > 0.85
assert by["greedy"]["distinct_2"] == min(r["distinct_2"] for r in rows)  # the same story, over and over
assert by["temperature 1.6"]["well_formed"] < by["temperature 0.8"]["well_formed"] - 0.2  # nonsense
for cut in ("top-k 10, T 1.3", "top-p 0.9, T 1.3"):  # cutting the tail buys quality back
    assert by[cut]["well_formed"] > by["temperature 1.3"]["well_formed"] + 0.05
print("greedy:     ", textwrap.shorten(by["greedy"]["samples"][0], 150))
print("greedy:     ", textwrap.shorten(by["greedy"]["samples"][1], 150))
print("temperature 1.6:", textwrap.shorten(by["temperature 1.6"]["samples"][0], 150))
""")

md("""
Greedy decoding writes good sentences, but nearly the *same* story for every opening: only
the names and a few words change, so distinct-2 is lowest. (A model this well fitted to its
world does not fall into loops: repeated 3-grams stay near 1% for every rule. The small
character model of notebook 04 does: `compare_methods(*char_lm(), "The list ")` from
`lslm.generate` shows its greedy samples repeating most of their word triples.) High temperatures give variety by sampling tokens
the model itself thinks unlikely, and the judge sees grammar break. Top-k and top-p cut
that unlikely tail before sampling, so a high temperature keeps most of its variety with
fewer broken sentences. No setting makes a weak model strong: a better model moves the
whole curve up.

## 4 · Where the model looks when it writes a name

To stay on topic the model must **copy** a name from earlier in the story: nothing in the
last few words says whether the nurse is Mia or Zara. Below, we read 32 held-out stories as
the world wrote them. For each place where a story names a character again, we take the
attention from the token just before the name (the one that predicts it) and measure, for
every head, how much of it lands on the earlier mentions of that same name.
""")

code("""
def name_copying(story):
    # Token ids, pieces, attention, and each later mention of a name with its earlier mentions.
    ids = tok.encode(story)[: model.config.block_size]
    pieces = [tok.id_to_piece(i).replace("▁", "␣") for i in ids]
    with torch.no_grad():
        _, attention = model.features(torch.tensor([ids]), return_attention=True)
    names = [i for i, p in enumerate(pieces) if p.strip("␣") in NAME_GENDER]
    repeats = [(i, [j for j in names if j < i and ids[j] == ids[i]]) for i in names]
    return ids, pieces, names, attention, [(i, earlier) for i, earlier in repeats if earlier]


# 32 held-out stories as the world wrote them: every later mention of a name is a real copy.
held_out = [s for s in val.split("\\n\\n") if s.strip()][:32]
share = torch.zeros(model.config.n_layer, model.config.n_head)  # attention on the earlier mentions
count = 0
for story in held_out:
    _, _, _, attention, repeats = name_copying(story)
    for i, earlier in repeats:  # from the token just before the name: the one that predicts it
        share += torch.stack([w[0, :, i - 1, earlier].sum(dim=-1) for w in attention])
        count += 1
share /= count
layer, head = divmod(int(share.argmax()), model.config.n_head)
for l in range(model.config.n_layer):
    print(f"layer {l}, heads 0-{model.config.n_head - 1}: " + "  ".join(f"{v:4.0%}" for v in share[l]))
print(f"{count} later mentions of a name in {len(held_out)} held-out stories; layer {layer}, head {head} copies most")

ids, pieces, names, attention, repeats = name_copying(held_out[0])
rows_shown = [i - 1 for i, _ in repeats]
fig, ax = plt.subplots(figsize=(15, 4.4))
ax.imshow(attention[layer][0, head, rows_shown].numpy(), cmap="Blues", vmin=0, aspect="auto")
ax.set_xticks(range(len(ids)), pieces, fontsize=6, rotation=90)
ax.set_yticks(range(len(rows_shown)), [f"{pieces[i]} → next is {pieces[i + 1]}" for i in rows_shown], fontsize=8)
for x in names:
    ax.get_xticklabels()[x].set_color("tab:red")
ax.set(title=f"Layer {layer}, head {head} on a held-out story: attention from the token before each repeated "
             "name (names in red, ␣ = space)", xlabel=f"the story's tokens (at most {model.config.block_size})")
fig.tight_layout()
plt.show()
assert share.max() > 0.5  # one head reads the earlier mentions of the name about to come
""")

md("""
A head or two does the copying: right before a name, it looks back at where that name was
written before. A model that had not learned this writes a stranger into the story, and the
judge's "on topic" falls. (Notebook 11 looks inside models this way.)

## 5 · The KV cache: do not recompute the past

`generate` feeds the model the whole context to get one new token. In a causal model the
keys and values of the earlier tokens never change, so recomputing them at every step is
waste. A **KV cache** keeps each layer's keys and values and, at each step, feeds only the
newest token: its query attends to the cached keys. The tokens must come out the same.
""")

code("""
idx = torch.tensor([tok.encode(prompt)])
new = model.config.block_size - idx.size(1)  # fill the context exactly once
timings = {}
for use_cache in (False, True):
    start = time.perf_counter()
    out = model.generate(idx, new, temperature=0, use_cache=use_cache)
    timings[use_cache] = time.perf_counter() - start
    if use_cache:
        assert torch.equal(out, without_cache), "the cache changed the tokens"
    else:
        without_cache = out
print(f"{new} tokens without the cache: {timings[False] * 1000:.0f} ms, with it: {timings[True] * 1000:.0f} ms "
      f"({timings[False] / timings[True]:.1f}x); identical tokens")

cache = lslm.attention.KVCache(model.config.n_layer)
with torch.no_grad():
    model(out[:, : model.config.block_size], cache=cache)
numbers = sum(k.numel() + v.numel() for k, v in zip(cache.keys, cache.values))
print(f"the full cache holds {numbers:,} numbers ({numbers * 4 / 1024:.0f} KiB): "
      f"2 (K and V) x {model.config.n_layer} layers x {len(cache)} positions x {model.config.n_embd}")
assert numbers == 2 * model.config.n_layer * len(cache) * model.config.n_embd
""")

md("""
The cache trades memory for time: it grows with layers × context × width, for every
sequence in the batch. For GPT-3 (96 layers, 12,288 wide, 2,048 tokens) that is about
4.8 billion numbers per sequence, which is why serving large models is memory-bound.
`benchmarks/bench_generate.py` measures the speed-up at longer contexts, where it grows:
without a cache each step costs time proportional to the context, with it roughly constant.
""")

coding_exercise("kv_cache_step", """
### Write it yourself: one step with a KV cache

Write `kv_cache_step(...)`: what each layer does for one new token when the keys and values of
the tokens before it are kept. `check_code` tries it against lslm's attention with an empty cache,
3 and 10 cached tokens.
""")

md("""
## 6 · The sampling playground

Move the sliders: the chart shows the distribution that is actually sampled from (blue)
and what top-k/top-p cut (grey); the button samples a continuation with these settings.
Try temperature 1.6 with and without top-p 0.9, and paste the story into `check_text`.
""")

code("""
from lslm.widgets import SamplingPlayground

playground = SamplingPlayground(model, tok, prompt=prompt, max_new_tokens=60)
playground
""")

code("""
playground.top_p.value = 0.8
assert torch.allclose(playground.probs(), dists["top-p 0.8"], atol=1e-6)
playground.top_p.value = 1.0
playground.temperature.value = 0.0  # greedy: all the weight on one piece
assert playground.probs().max().item() == 1.0
playground.temperature.value = 1.0
""")

coding_exercise("top_p_filter", """
## Write it yourself: nucleus filtering

Write `top_p_filter(probs, p)`, the step that turns a next-token distribution into the one
top-p samples from, and run the cell: `check_code` tries it against lslm's own on a worked
example, on shuffled rows and on a tiny `p`, and says what went wrong.
""")

md("""
## Check yourself

**1.** A model gives these next-token probabilities: `[0.05, 0.4, 0.1, 0.25, 0.2]`.
How many tokens does nucleus sampling keep with `top_p=0.8`?
""")

code("""
from lslm.checks import check

answer = None  # your answer here
check("top_p_kept", answer, probs=[0.05, 0.4, 0.1, 0.25, 0.2], top_p=0.8)
""")

md("""
**2.** Be the judge. How many pronouns in this story do not agree with the character they
refer to? (A pronoun means the character named most recently before it.)
""")

code("""
story_to_judge = ("Once upon a time, there was a farmer named Anna. Anna had a green hat that she "
                  "loved very much. One day, she decided to show her hat in the woods. In the woods, she "
                  "met a pilot named Leo. \\"What a green hat!\\" she said. But when Anna looked again, "
                  "her hat was gone. He looked everywhere and found her hat.")
answer = None  # your answer here
check("pronouns_that_disagree", answer, story=story_to_judge)
""")

md("""
<details><summary>Solution (expand)</summary>

**1.** Sorted: 0.4, 0.25, 0.2, 0.1, 0.05. Running totals: 0.4, 0.65, 0.85. The third token
takes the total past 0.8, so it is kept and the rest are cut: **3** tokens.

**2.** After "a pilot named Leo", "she said" means Leo: wrong. "But when Anna looked
again" names Anna, so "her hat" is right and "He looked" means Anna: wrong. **2**.
</details>
""")

code("""
probs = [0.05, 0.4, 0.1, 0.25, 0.2]
assert check("top_p_kept", sum(p > 0 for p in top_p_by_hand(probs, 0.8)), probs=probs, top_p=0.8)
assert check("pronouns_that_disagree", 2, story=story_to_judge)
""", "solution")

md("""
**Next:** [07 · Sentiment analysis](07_sentiment_analysis.ipynb) fine-tunes a pretrained model to read the sentiment of a review.
""")

write("notebooks/06_text_generation.ipynb")
