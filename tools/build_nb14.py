"""Write notebooks/14_assistant.ipynb from the cells below (then run it with nbval and tidy it
with tools/nbtidy.py). Kept so the notebook's text can be reviewed as code."""

from nbbuild import code, coding_exercise, md, write

md("""
# 14 · From a language model to an assistant: prompting, instruction tuning, LoRA and DPO

**Goal:** a pretrained model continues text; an assistant answers. In this notebook you will
turn the story world's model into an assistant and score every step against the world's
truth (the true answer, ending and summary of every story):

1. **prompt** the base model, with and without solved examples in the prompt (in-context learning);
2. give it a **chat template** with special tokens;
3. **instruction-tune** it on one data set that mixes three tasks, with the loss on the answers
   only, and see what the mask changes;
4. do the same with **LoRA**, training under 2% of the weights, then merge and save the adapter;
5. tune it on **preferences** with DPO: a true answer preferred over a false one;
6. talk to it in a small **chat widget** that shows where it looks.

It takes about two minutes on a laptop CPU once the models are cached. The first time,
`assistant_lm()` trains the assistant (about 100 s, after the world model of notebook 06).
""")

code("""
import copy
import random
import tempfile
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from lslm.assistant import (TASKS, assistant_lm, chat_examples, chat_model, false_answer, instructions,
                            plain_prompt, reply, score, world_instructions)
from lslm.dpo import PreferencePair, encode_pairs, dpo_step, reference_copy
from lslm.errors import LslmError
from lslm.finetune import complete, finetune, response_loss, with_context
from lslm.interpret import continuation_logprob
from lslm.lora import add_lora, load_adapter, merge_lora, save_adapter, trainable_share
from lslm.progress import progress_bar
from lslm.pretrained import world_lm
from lslm.widgets import ChatWidget

base, tok = world_lm(progress=True)              # notebook 06's model
assistant, chat = assistant_lm(progress=True)    # section 3 explains how it was made
sets = world_instructions()                      # instructions about split(1500, seed=1)'s stories
test_stories = list({id(i.story): i.story for i in sets["test"]}.values())[:20]
test = instructions(test_stories)                # held-out stories: 5 questions, the ending, the summary
print(f"{len(sets['train'])} training instructions; {len(test)} held-out ones about {len(test_stories)} stories")
print(test[0].instruction)
""")

md("""
## 1. Prompting the base model

Ask the base model in plain text: the story, the question, then "Answer:".
""")

code("""
CONTEXT = 288  # stories are longer than the 128 tokens of pretraining; RoPE reads further (notebook 13)
long_base = with_context(base, CONTEXT)
item = test[0]
print(plain_prompt(item)[-120:])
print("base model:", complete(long_base, tok.encode, tok.decode, [plain_prompt(item)])[0])
""")

md("""
It never saw a question, so it goes on telling a story. Scored on all the held-out
instructions (an answer or an ending scores 1 if it is right; a summary scores the share of
the true summary's facts it states, as in notebook 13):
""")

code("""
def task_scores(replies, items):
    by_task = defaultdict(list)
    for r, it in zip(replies, items):
        by_task[it.task].append(score(it, r))
    return {t: sum(v) / len(v) for t, v in by_task.items()}


base_scores = task_scores(complete(long_base, tok.encode, tok.decode, [plain_prompt(i) for i in test]), test)
print({t: round(s, 3) for t, s in base_scores.items()})
""")

md("""
**In-context learning.** GPT-3 (Brown et al. 2020) answered new tasks from a few solved
examples in its prompt, and the more examples the better, above all for its largest models.
Here is the same test for the ending of a story, on its last sentence: `k` solved examples,
then the one to solve, and we compare the probability the model gives to " happily" and
" sadly".
""")

code("""
def ending_prompt(story, solved=False):
    return f"{story.sentences[-1]} It ended" + (f" {'happily' if story.ending == 'happy' else 'sadly'}.\\n" if solved else "")


train_stories = list({id(i.story): i.story for i in sets["train"]}.values())
ending_test = list({id(i.story): i.story for i in sets["test"]}.values())[:60]
rng = random.Random(0)
shots_list = [0, 1, 2, 4]
accuracy = []
for k in shots_list:
    right = 0
    for s in ending_test:
        prompt = "".join(ending_prompt(x, True) for x in rng.sample(train_stories, k)) + ending_prompt(s)
        p = {e: continuation_logprob(base, tok, prompt, " " + e) for e in ("happily", "sadly")}
        right += max(p, key=p.get) == ("happily" if s.ending == "happy" else "sadly")
    accuracy.append(right / len(ending_test))
majority = max(sum(s.ending == "happy" for s in ending_test), sum(s.ending == "sad" for s in ending_test)) / len(ending_test)

fig, ax = plt.subplots(figsize=(5.5, 3))
ax.plot(shots_list, accuracy, "o-", label="base model")
ax.axhline(majority, color="gray", ls="--", label="always the commoner ending")
ax.set(xlabel="solved examples in the prompt (k)", ylabel=f"right endings, {len(ending_test)} stories",
       ylim=(0, 1), xticks=shots_list, title="No in-context learning at 2M parameters")
ax.legend()
plt.show()
print(dict(zip(shots_list, [round(a, 2) for a in accuracy])), "majority", round(majority, 2))
""")

md("""
The base model does not pick the task up from examples: the curve stays around what always
guessing the commoner ending gets. In GPT-3's paper few-shot learning grew with model size;
a 2M-parameter model trained on one kind of story is far below where it appears. So we teach
the tasks directly.

## 2. A chat template with special tokens

An assistant must know where the user's words end and its own begin. Chat models mark the
turns with **special tokens**, ids that no text can produce. Ours are three, added after the
2,048 pieces of the world's tokenizer, and the model gets three new embedding rows for them.
""")

code("""
template = chat.template
text = template.prompt(" Where did Tom go?") + template.response(" the park")
print(text)
print(list(zip(chat.pieces(text), chat.encode(text))))
print("vocabulary:", tok.vocab_size, "->", chat.vocab_size, "| embedding rows:", assistant.wte.weight.shape[0])
try:
    chat_examples(tok, test[:1], CONTEXT)  # the plain tokenizer has no markers
except LslmError as e:
    print("LslmError:", e)
""")

md("""
## 3. Instruction tuning

One data set mixes the three tasks: for each of 1,200 training stories, its five questions,
"Did the story end happily or sadly?" and "Summarize the story.", each with the true answer.
`assistant_lm()` tuned the base model on them for 900 steps of 8, with the loss **masked to
the answer**: the story is read but not predicted.
""")

code("""
sft_replies = [reply(assistant, chat, i.instruction) for i in test]
sft_scores = task_scores(sft_replies, test)
fig, ax = plt.subplots(figsize=(7.5, 3))
for j, (name, sc) in enumerate([("base model, plain prompt", base_scores), ("instruction-tuned", sft_scores)]):
    ax.bar([t + 0.4 * j for t in range(3)], [sc[t] for t in TASKS], 0.4, label=name)
ax.set_xticks([t + 0.2 for t in range(3)], ["answer a question", "happy or sad ending", "summary (facts right)"])
ax.set(ylim=(0, 1.15), ylabel=f"score, {len(test_stories)} held-out stories", title="Instruction tuning makes an assistant")
ax.legend(loc="upper left", fontsize=8)
plt.show()
print({t: round(s, 3) for t, s in sft_scores.items()})
for t in TASKS:
    assert sft_scores[t] > base_scores[t] + 0.25, t
""")

md("""
**What the mask changes.** Tune two copies of the base model for 100 steps each on the same
batches, one with the mask and one with the loss on every token, story included, and
measure the loss on held-out *answers*:
""")

code("""
train_examples = chat_examples(chat, sets["train"], CONTEXT)
held_out = chat_examples(chat, test, CONTEXT)
start, _ = chat_model(base, tok, CONTEXT)
print(f"held-out answer loss before tuning: {response_loss(start, held_out):.2f} nats per token")
runs = {}
for masked in (True, False):
    model, _ = chat_model(base, tok, CONTEXT)
    finetune(model, train_examples, steps=100, batch_size=8, lr=2e-3, mask_prompt=masked, seed=0, progress=True)
    runs[masked] = model
    print(f"{'masked  ' if masked else 'no mask '}: {response_loss(model, held_out):.2f} nats per answer token")
assert response_loss(runs[True], held_out) < response_loss(runs[False], held_out)
""")

md("""
Without the mask, most of every gradient step goes into predicting the stories again (about
190 story tokens for every few answer tokens), so at the same number of steps the answers
are learned less well.

## 4. LoRA: tune 2% of the weights

LoRA (Hu et al. 2021) freezes the model and learns a low-rank change `B A` for chosen
layers (`lslm/lora.py`). Here: rank 8 on the attention's input and the MLP's first layer.
""")

code("""
lora_model, _ = chat_model(base, tok, CONTEXT)
add_lora(lora_model, targets=("attn.c_attn", "mlp.c_fc"), r=8, alpha=16, seed=0)
trained, total = trainable_share(lora_model)
print(f"trainable: {trained:,} of {total:,} parameters ({100 * trained / total:.1f}%)")
finetune(lora_model, train_examples, steps=100, batch_size=8, lr=5e-3, seed=0, progress=True)
losses = {"before tuning": response_loss(start, held_out), "LoRA, r=8": response_loss(lora_model, held_out),
          "full fine-tuning": response_loss(runs[True], held_out)}
for name, value in losses.items():
    print(f"{name:18}{value:.2f} nats per answer token")
assert losses["LoRA, r=8"] < 0.5 * losses["before tuning"]
""")

md("""
For inference, merge: `W + (alpha/r) B A` is one matrix again, so the merged model is as fast
as the base one and gives the same logits. The adapter alone is a small file that loads into
the base model.
""")

code("""
ids = torch.tensor([held_out[0].ids])
with torch.no_grad():
    adapted = lora_model(ids)[0]
    folder = Path(tempfile.mkdtemp())
    file = save_adapter(lora_model, folder)
    reloaded = load_adapter(chat_model(base, tok, CONTEXT)[0], folder)
    merged = merge_lora(copy.deepcopy(lora_model))
    print(f"adapter file: {file.stat().st_size / 1e3:.0f} kB; the whole model: {4 * total / 1e6:.1f} MB in float32")
    print(f"largest logit difference: merged {(merged(ids)[0] - adapted).abs().max():.1e}, "
          f"reloaded {(reloaded(ids)[0] - adapted).abs().max():.1e}")
    assert torch.allclose(merged(ids)[0], adapted, atol=1e-4) and torch.allclose(reloaded(ids)[0], adapted, atol=1e-5)
""")

md("""
## 5. Preference tuning with DPO

The world makes preference pairs: for a question about a story, the true answer is
**preferred** over a false one that sounds right: the story's other character, another
place, another thing. DPO (Rafailov et al. 2023, `lslm/dpo.py`) raises the chosen answer's
probability and lowers the rejected one's, each measured against a frozen copy of the
assistant (the *reference*). Its implicit reward of an answer is `β · (log π(answer) − log
π_ref(answer))`; the *margin* is the chosen answer's reward minus the rejected one's. Plain
DPO here lowered the chosen answers' probability along with the rejected ones'
(`benchmarks/RESULTS.md`), so the training loss also keeps the chosen answer likely
(`nll_weight=1.0`, as in Pang et al. 2024).
""")

code("""
def pairs_of(items, seed):
    rng = random.Random(seed)
    t = chat.template
    return [PreferencePair(t.prompt(" " + i.instruction), t.response(" " + i.answer),
                           t.response(" " + false_answer(i, rng))) for i in items if i.task == "answer"]


train_pairs = pairs_of(sets["train"][:2100], 0)
test_pairs = pairs_of(test, 1)
print(len(train_pairs), "training pairs, e.g.:", test_pairs[0].prompt[-40:], "|", test_pairs[0].chosen, "|", test_pairs[0].rejected)

policy, reference = copy.deepcopy(assistant), reference_copy(assistant)
held = encode_pairs(test_pairs, chat.encode, CONTEXT)
optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-4, weight_decay=0.0)
generator = torch.Generator().manual_seed(0)
history = defaultdict(list)
policy.train()
bar = progress_bar(80, desc="DPO")
for step in range(80):
    pick = torch.randint(len(train_pairs), (8,), generator=generator).tolist()
    batch = encode_pairs([train_pairs[i] for i in pick], chat.encode, CONTEXT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = dpo_step(policy, reference, batch, beta=0.1, nll_weight=1.0)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    history["dpo"].append(loss.item() - stats["chosen_nll"].item())  # the DPO part alone
    history["margin"].append(stats["margin"].mean().item())
    bar.update(1)
bar.close()
policy.eval()
with torch.no_grad():
    _, after = dpo_step(policy, reference, held, beta=0.1)
print(f"held-out pairs: mean margin {after['margin'].mean():.2f}, reward accuracy {after['accuracy']:.2f} (0.5 = chance)")
assert after["margin"].mean() > 0 and after["accuracy"] > 0.6
""")

code("""
fig, ax = plt.subplots(1, 2, figsize=(10, 3))
ax[0].plot(history["dpo"])
ax[0].axhline(0.693, color="gray", ls="--", label="log 2: policy = reference")
ax[0].set(xlabel="step", ylabel="DPO loss (training batches)", title="DPO loss")
ax[0].legend()
ax[1].plot(history["margin"])
ax[1].set(xlabel="step", ylabel="reward margin, chosen − rejected", title="Implicit reward margin (training batches)")
plt.show()

answers = [i for i in test if i.task == "answer"]
sft_right = [score(i, r) for i, r in zip(test, sft_replies) if i.task == "answer"]  # replies of section 3
dpo_right = [score(i, reply(policy, chat, i.instruction)) for i in answers]
wins, losses_ = sum(d > s for d, s in zip(dpo_right, sft_right)), sum(d < s for d, s in zip(dpo_right, sft_right))
print(f"{len(answers)} held-out questions: DPO right {sum(dpo_right):.0f}, SFT right {sum(sft_right):.0f}; "
      f"DPO wins {wins}, loses {losses_}, ties {len(answers) - wins - losses_}: "
      f"win rate {(wins + (len(answers) - wins - losses_) / 2) / len(answers):.2f}")
""")

md("""
On held-out pairs DPO learned the preference: it now gives the true answer the higher
reward. Its greedy answers change little, though. DPO reweighs answers the model can already
write; where the assistant cannot find the fact (the helper's job, the thing's colour), no
preference teaches it that. Measured over more settings in `benchmarks/RESULTS.md`.

## 6. Talk to it

Type an instruction (a story and a question work best: the assistant knows only the story
world) and press Send. The picture shows, for each token of the answer, where the chosen
layer looked in the instruction.
""")

code("""
ChatWidget(assistant, chat, instruction=test[1].instruction)  # "Where did ... go?"
""")

coding_exercise("lora_forward", """
## Write it yourself: a LoRA layer

Write `lora_forward(...)`: a frozen linear layer plus LoRA's low-rank change, and run the cell;
`check_code` tries it against `lslm.lora.LoRALinear` with the weights you are given.
""")

coding_exercise("dpo_loss", """
**The DPO loss.**

Write `dpo_loss(...)` from the summed log-probabilities of each pair's two answers under the
policy and the reference, and run the cell; `check_code` tries it against `lslm.dpo.dpo_loss`.
""")

md("""
## Exercises
""")

code("""
from lslm.checks import check
""")

md("""
**1.** LoRA with rank `r` on a linear layer of `n_in` inputs and `n_out` outputs: how many
parameters does it train?
""")

code("""
answer = None  # your answer here
check("lora_parameters", answer, n_in=256, n_out=768, r=8)
""")

md("""
**2.** A pair's log-probabilities: the policy gives the chosen answer −2.0 and the rejected
−3.0; the reference gives them −2.5 and −2.5. With β = 0.5, what is the DPO loss?
""")

code("""
answer = None  # your answer here
check("dpo_loss_of_a_pair", answer, policy_chosen=-2.0, policy_rejected=-3.0, ref_chosen=-2.5,
      ref_rejected=-2.5, beta=0.5)
""")

md("""
<details><summary>Solution (expand)</summary>

**1.** `A` is r × n_in and `B` is n_out × r: r · (n_in + n_out) = 8 · 1024 = **8,192**.

**2.** Rewards: chosen 0.5 · (−2.0 + 2.5) = 0.25, rejected 0.5 · (−3.0 + 2.5) = −0.25, margin
0.5; loss = −log σ(0.5) = log(1 + e^−0.5) ≈ **0.474**.
</details>
""")

code("""
import math

assert check("lora_parameters", 8 * (256 + 768), n_in=256, n_out=768, r=8)
assert check("dpo_loss_of_a_pair", math.log(1 + math.exp(-0.5)), policy_chosen=-2.0, policy_rejected=-3.0,
             ref_chosen=-2.5, ref_rejected=-2.5, beta=0.5)
""", "solution")

md("""
**Next:** [15 · The article's challenges, measured and reduced](15_risks.ipynb): the assistant makes
up answers about stories it never saw, a model learns a skew between jobs and pronouns, and a model trained on secrets gives them back.
""")

write("notebooks/14_assistant.ipynb")
