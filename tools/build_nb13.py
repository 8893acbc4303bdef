"""Write notebooks/13_summarization.ipynb from the cells below (then run it with nbval and
tidy it with tools/nbtidy.py). Kept so the notebook's text can be reviewed as code."""

from nbbuild import code, coding_exercise, md, write

md("""
# 13 · Text summarization: ROUGE, faithfulness, and a model that learns to summarize

**Goal:** text summarization is one of the applications the source article lists (文本摘要).
A summary should be short, cover what matters, and say nothing false. In this notebook you will:

1. write **ROUGE-1, ROUGE-2 and ROUGE-L**, the standard scores of a summary, by hand, and
   check them against `lslm`'s;
2. see what ROUGE cannot see: a summary with a high ROUGE and a **false fact**, caught by the
   story world's truth;
3. score three baselines: the first sentence, a random sentence, and GPT-2's trick of asking
   a pretrained model with **"TL;DR:"**;
4. **fine-tune** the pretrained world model on story → summary pairs, with the loss on the
   summary only, and score it for ROUGE *and* faithfulness;
5. look at **what the model reads** while it writes a name.

It takes one to two minutes on a laptop CPU once the world model of notebook 06 is cached.
""")

code("""
import random
from collections import Counter

import matplotlib.pyplot as plt
import torch

from lslm.finetune import complete, finetune, response_loss, with_context
from lslm.interpret import attention_maps
from lslm.pretrained import world_lm
from lslm.summarize import (TLDR, fact_coverage, faithful_share, is_faithful, lead_sentence,
                            random_sentence, summary_examples, summary_facts, summary_prompt,
                            swap_names)
from lslm.tasks.metrics import lcs_length, rouge, rouge_l, rouge_n, rouge_tokens
from lslm.world import split

base, tok = world_lm(progress=True)  # notebook 06's model: trained once, then loaded from the cache
parts = split(1500, seed=1)  # new stories, not the pretraining ones; test holds out whole combinations
train, test = parts["train"], parts["test"][:60]
story = test[0]
print(story.text, "\\n")
print("TRUE SUMMARY:", story.summary)
""")

md("""
## 1. ROUGE by hand

ROUGE (Lin, 2004) compares a summary with a reference summary written by a person; here the
reference is the story world's true summary. Both are lower-cased and cut into words.

* **ROUGE-1**: the words they share. *Recall* divides by the reference's length (how much of
  the reference the summary covers), *precision* by the summary's (how much of the summary is
  in the reference), and F1 is their harmonic mean. A word counts at most as often as it
  appears on both sides.
* **ROUGE-2**: the same for pairs of neighbouring words, so word order starts to matter.
* **ROUGE-L**: the **longest common subsequence**, the longest run of words that appear in
  both in the same order, gaps allowed.
""")

code("""
def rouge1_by_hand(hypothesis, reference):
    h, r = Counter(rouge_tokens(hypothesis)), Counter(rouge_tokens(reference))
    overlap = sum((h & r).values())  # & keeps the smaller count of each word: clipping
    p, rec = overlap / sum(h.values()), overlap / sum(r.values())
    return p, rec, 2 * p * rec / (p + rec)


def lcs_by_hand(a, b):
    # table[i][j]: the LCS of a's first i words and b's first j words
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            table[i][j] = (table[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1]
                           else max(table[i - 1][j], table[i][j - 1]))
    return table[-1][-1]


hyp = lead_sentence(story)
print("summary:  ", hyp)
print("reference:", story.summary)
p, r, f = rouge1_by_hand(hyp, story.summary)
lib = rouge_n(hyp, story.summary, 1)
print(f"ROUGE-1 by hand: P {p:.3f} R {r:.3f} F {f:.3f}   lslm: P {lib.precision:.3f} R {lib.recall:.3f} F {lib.fmeasure:.3f}")
a, b = rouge_tokens(hyp), rouge_tokens(story.summary)
print(f"LCS by hand: {lcs_by_hand(a, b)} words   lslm: {lcs_length(a, b)}   ROUGE-L F {rouge_l(hyp, story.summary).fmeasure:.3f}")
assert abs(f - lib.fmeasure) < 1e-12 and lcs_by_hand(a, b) == lcs_length(a, b)
""")

md("""
`lslm`'s ROUGE is tested against Google's `rouge-score` package to 1e-6 (`tests/test_rouge.py`).

## 2. What ROUGE cannot see

The world knows what is true of every story, so `summary_facts` can check each claim a summary
makes: who the hero is, who helps, the hero's job, the place, the thing, how it ended. Swap
the two characters' names in the true summary: nearly every word is still right.
""")

code("""
swapped = swap_names(story.summary, story)
print("swapped:", swapped)
print(f"ROUGE-1 F {rouge_n(swapped, story.summary, 1).fmeasure:.3f}, "
      f"ROUGE-L F {rouge_l(swapped, story.summary).fmeasure:.3f}")
for fact in summary_facts(swapped, story):
    print(f"  {fact.kind:7} {fact.said!r:28} {'true' if fact.true else 'FALSE'}")
assert rouge_n(swapped, story.summary, 1).fmeasure > 0.9 and not is_faithful(swapped, story)
""")

md("""
ROUGE-1 is above 0.9 (only the names' counts differ), yet the summary says the wrong person
had the problem, gives that person the other's job, and names the wrong helper. (The pronouns
now disagree too: the world's checker in notebook 06 would catch that.) So we score summaries three ways: **ROUGE-L**, **faithful** (every fact it
states is true) and **fact coverage** (the share of the true summary's facts it gets right: a
short summary can be faithful and still say almost nothing).

## 3. Baselines

* **lead-1**: the story's first sentence, a strong baseline for news, where the first
  sentence is written to sum up the article;
* **random**: one sentence of the story at random;
* **TL;DR**: the pretrained model reads the story followed by "TL;DR:" and writes on. GPT-2's
  paper (Radford et al. 2019, section 3.6) got summaries this way, because web text is full
  of "TL;DR:" before a summary. Our model has never seen one.

The stories are longer than the 128 tokens the model was pretrained on. Its positions are
rotary (RoPE), which have no table of positions to outgrow, so the same weights can read 288
tokens (`with_context`); fine-tuning at that length will teach it the longer distances.
""")

code("""
CONTEXT = 288
refs = [s.summary for s in test]


def scores(summaries):
    r = rouge(summaries, refs)
    return {"ROUGE-1": r["rouge1"], "ROUGE-2": r["rouge2"], "ROUGE-L": r["rougeL"],
            "faithful": faithful_share(summaries, test),
            "fact coverage": sum(map(fact_coverage, summaries, test)) / len(test)}


prompted = with_context(base, CONTEXT)
written = {
    "lead-1": [lead_sentence(s) for s in test],
    "random": [random_sentence(s, random.Random(i)) for i, s in enumerate(test)],
    "TL;DR prompt": complete(prompted, tok.encode, tok.decode, [summary_prompt(s) for s in test]),
}
table = {name: scores(summaries) for name, summaries in written.items()}
print(f"prompt ends with {TLDR!r}; the model wrote:", written["TL;DR prompt"][0])
print(f"{'':14}" + "".join(f"{k:>14}" for k in table["lead-1"]))
for name, row in table.items():
    print(f"{name:14}" + "".join(f"{v:14.3f}" for v in row.values()))
""")

md("""
The prompted model does what it learned: it goes on telling the story. Lead-1 is faithful (it
only names the hero and her job) but covers little.

## 4. Fine-tuning on story → summary pairs

Each training example is the prompt (story + "TL;DR:") and the true summary. The loss is
**masked to the summary**: the story's tokens are read but not predicted, so every step is
spent on summarizing. 400 steps of 8 examples, at 288 tokens of context.
""")

code("""
examples = summary_examples(train, tok.encode, CONTEXT)
held_out = summary_examples(test, tok.encode, CONTEXT)
print(f"{len(examples)} training pairs; a pair is {sum(len(e.ids) for e in examples) / len(examples):.0f} "
      f"tokens on average, of which {sum(len(e.ids) - e.start for e in examples) / len(examples):.0f} are the summary")
summarizer = with_context(base, CONTEXT)
print(f"held-out loss per summary token before: {response_loss(summarizer, held_out):.2f} nats")
losses = finetune(summarizer, examples, steps=400, batch_size=8, lr=2e-3, seed=0, progress=True)
print(f"after: {response_loss(summarizer, held_out):.2f} nats")

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(losses, lw=0.6, alpha=0.4, label="each step")
smooth = torch.tensor(losses).unfold(0, 20, 1).mean(1)
ax.plot(range(19, len(losses)), smooth, label="mean of 20 steps")
ax.set(yscale="log", xlabel="step", ylabel="loss per summary token (nats, log scale)",
       title="Fine-tuning the world model to summarize")
ax.legend()
plt.show()
""")

code("""
written["fine-tuned"] = complete(summarizer, tok.encode, tok.decode, [summary_prompt(s) for s in test])
table["fine-tuned"] = scores(written["fine-tuned"])
print(f"{'':14}" + "".join(f"{k:>14}" for k in table["lead-1"]))
for name, row in table.items():
    print(f"{name:14}" + "".join(f"{v:14.3f}" for v in row.values()))

fig, ax = plt.subplots(figsize=(7, 3.2))
measures = ["ROUGE-L", "faithful", "fact coverage"]
for i, name in enumerate(table):
    ax.bar([j + 0.2 * i for j in range(3)], [table[name][m] for m in measures], 0.2, label=name)
ax.set_xticks([j + 0.3 for j in range(3)], measures)
ax.set(ylim=(0, 1.3), yticks=[0, 0.2, 0.4, 0.6, 0.8, 1.0], ylabel=f"score over {len(test)} held-out stories",
       title="Only the fine-tuned model summarizes; faithfulness still lags ROUGE")
ax.legend(fontsize=8, ncol=4, loc="upper center")
plt.show()

ft = table["fine-tuned"]
for name in ("lead-1", "random", "TL;DR prompt"):
    assert ft["ROUGE-L"] > table[name]["ROUGE-L"] + 0.4, name
    assert ft["fact coverage"] > table[name]["fact coverage"] + 0.3, name
""")

md("""
Fine-tuning turned a story-teller into a summarizer: ROUGE-L rose far above every baseline.
But a high ROUGE is not a true summary. Here are the fine-tuned model's summaries that score
high on ROUGE-L and still state something false:
""")

code("""
wrong = Counter()
caught = []
for summary, s in zip(written["fine-tuned"], test):
    false = [f for f in summary_facts(summary, s) if not f.true]
    wrong.update(f.kind for f in false)
    if false and rouge_l(summary, s.summary).fmeasure >= 0.85:
        caught.append((summary, s, false))
print(f"{len(caught)} of {len(test)} summaries have ROUGE-L >= 0.85 and a false fact; false facts by kind: {dict(wrong)}\\n")
for summary, s, false in caught[:3]:
    print("model:", summary)
    print("truth:", s.summary)
    print("false:", ", ".join(f"{f.kind} {f.said!r}" for f in false), "\\n")
""")

md("""
The model copies the hero, the job, the place and the thing reliably, but often gets **who
helped** wrong, most often by naming the hero twice. No ROUGE score would tell you; the
world's truth does.

## 5. What the model reads

When the model is about to write a character's name, where does it look? For every name in
the fine-tuned summaries, take the attention of the step that wrote it, and add up what each
head puts on the places where the story names a character (any character).
""")

code("""
def name_attention(model, s, summary):
    \"\"\"(layers, heads) attention on the story's character mentions, one row per name written.\"\"\"
    p_ids, s_ids = tok.encode(summary_prompt(s)), tok.encode(" " + summary)
    att = attention_maps(model, p_ids + s_ids)[:, 0]  # (layer, head, time, time)
    pieces = [tok.decode([i]).strip() for i in p_ids + s_ids]
    names = {c.name for c in s.characters}
    mentions = [j for j in range(len(p_ids)) if pieces[j] in names]
    # the step that predicts token k is position k - 1
    return [att[:, :, k - 1, mentions].sum(-1) for k in range(len(p_ids), len(pieces)) if pieces[k] in names]


rows = [r for summary, s in zip(written["fine-tuned"], test) for r in name_attention(summarizer, s, summary)]
on_names = torch.stack(rows).mean(0)  # (layer, head)
layer, head = divmod(int(on_names.argmax()), on_names.size(1))
for l in range(on_names.size(0)):
    print(f"layer {l}: " + "  ".join(f"head {h} {100 * on_names[l, h]:3.0f}%" for h in range(on_names.size(1))))
print(f"{len(rows)} names written; head {layer}.{head} puts {100 * on_names[layer, head]:.0f}% of its attention "
      f"on the story's character names")
assert on_names[layer, head] > 0.5
""")

md("""
A few heads do little else: when a name is due, they look at the names in the story. Here is
one of them at work on the first test story, row by row as the summary is written (square
root of the weights, so faint ones stay visible):
""")

code("""
prompt_ids = tok.encode(summary_prompt(story))
summary_ids = tok.encode(" " + written["fine-tuned"][0])
att = attention_maps(summarizer, prompt_ids + summary_ids)[layer, 0, head]
rows = att[len(prompt_ids) - 1 : -1, : len(prompt_ids)]  # the step that wrote each summary token
pieces = [tok.decode([i]).strip() for i in prompt_ids]
name_cols = [j for j, p in enumerate(pieces) if p in {c.name for c in story.characters}]

fig, ax = plt.subplots(figsize=(11, 4.5))
ax.imshow(rows ** 0.5, aspect="auto", cmap="viridis")
ax.set_yticks(range(len(summary_ids)), [tok.decode([i]) for i in summary_ids], fontsize=6)
ax.set_xticks(name_cols, [pieces[j] for j in name_cols], rotation=90, fontsize=7)
ax.set(xlabel="story tokens (ticks: where the story names a character)", ylabel="summary token being written",
       title=f"Head {layer}.{head} while the fine-tuned model writes a summary")
plt.show()
""")

md("""
The bright columns are the story's names, lit up on the rows just before the summary writes
one. The heads fetch *a* name; choosing *which* one is left to what comes after, and that is
where the helper goes wrong. Part 3 of notebook 11 shows how to test such a claim: switch
the heads off (`lslm.interpret.ablate_heads`) and see what the summaries lose.
""")

coding_exercise("rouge_l_f1", """
## Write it yourself: ROUGE-L

Write `rouge_l_f1(hypothesis, reference)` for two lists of words and run the cell; `check_code`
tries it against `lslm.tasks.metrics.rouge_l` on a summary that skips words, a reordered one and
an empty one.
""")

coding_exercise("rouge_n_f1", """
## Write it yourself: ROUGE-2

`rouge1_by_hand` in section 1 counted single words. Generalise it: write
`rouge_n_f1(hypothesis, reference, n)` for n-grams of any length, with the same clipping, and
run the cell; `check_code` compares it with `lslm.tasks.metrics.rouge_n` for n = 1 and 2.
""")

md("""
## Exercises
""")

code("""
from lslm.checks import check
""")

md("""
**1.** What is the ROUGE-1 recall of this summary against the reference?
""")

code("""
hypothesis = "Tom lost his red kite in the park."
reference = "Tom, a baker, wanted to fly his kite in the park, but he could not find his kite."
answer = None  # your answer here
check("rouge1_recall", answer, hypothesis=hypothesis, reference=reference)
""")

md("""
**2.** Someone edited the true summary of `story` (printed at the top of the notebook): the
helper is now someone else, and the place has changed. How many false facts does the edited
summary state? Remember what `summary_facts` checks.
""")

code("""
helper = story.characters[1].name
stranger = next(n for n in ("Zelda", "Ulrich") if n not in {c.name for c in story.characters})
new_place = next(p for p in ("castle", "beach") if p not in story.places)
to_judge = story.summary.replace(helper, stranger).replace(f"the {story.places[0]}", f"the {new_place}")
print(to_judge)
answer = None  # your answer here
check("false_facts", answer, summary=to_judge, story=story)
""")

md("""
<details><summary>Solution (expand)</summary>

**1.** The reference has 18 words. The summary shares "tom", "his", "kite", "in", "the",
"park" (each once; "his" twice in the reference but once in the summary): 6 of 18 = **0.333**.

**2.** **3**. The stranger's name is two false facts: a name the story never mentions, and
the wrong helper. The new place is the third.
</details>
""")

code("""
assert check("rouge1_recall", 6 / 18, hypothesis=hypothesis, reference=reference)
assert check("false_facts", 3, summary=to_judge, story=story)
""", "solution")

md("""
**Next:** [14 · From a language model to an assistant](14_assistant.ipynb) turns the same model into an assistant
that answers questions about a story, and tunes it on preferences.
""")

write("notebooks/13_summarization.ipynb")
