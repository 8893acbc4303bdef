"""Write notebooks/17_pictures_and_words.ipynb from the cells below (then run it with nbval and
tidy it with tools/nbtidy.py). Kept so the notebook's text can be reviewed as code."""

from nbbuild import code, coding_exercise, md, write

md("""
# 17 · Pictures and words: a tiny vision-language model

**Goal:** the article's second trend is multimodal learning: models that read images (and
sound, and more) as well as text. The idea behind today's vision-language models fits on a
laptop: **cut a picture into patches, turn each patch into a vector the size of a word
embedding, and let the same Transformer read the picture's vectors followed by the words.**
You will

1. meet a picture world drawn by code, whose truth we know, with colour-shape pairs that
   training never shows;
2. turn a picture into 16 "image tokens" by hand and check them against the model's;
3. train one small model to caption pictures and to answer questions about them;
4. score it, claim by claim, against a baseline that never sees the picture;
5. see where it looks, patch by patch, while it writes each word;
6. compare the toy with a published open vision-language model.

About a minute on a laptop CPU.
""")

code("""
import time

import matplotlib.pyplot as plt
import torch

from lslm import vlm
from lslm.vision import HELD_OUT, patch_mask, patchify, pictures, read_caption, unpatchify
from lslm.widgets.patches import PatchAttention, draw_patch_attention

train = pictures(3000, seed=0)
test = pictures(300, seed=0, split="test")
held_out = pictures(300, seed=0, split="held_out")

fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
for ax, pic in zip(axes.flat, train[:8]):
    ax.imshow(pic.image.permute(1, 2, 0).numpy())
    ax.set_title(pic.caption.replace(" above", "\\nabove").replace(" left of", "\\nleft of"), fontsize=9)
    ax.set_xticks([]); ax.set_yticks([])
fig.suptitle("Training pictures (32 x 32 pixels) and their true captions")
plt.show()
for question, answer in train[1].questions:
    print(f"{question:<32} {answer}")
seen = {(t.colour, t.shape) for pic in train for t in pic.things}
assert not seen & HELD_OUT and all({(t.colour, t.shape) for t in p.things} & HELD_OUT for p in held_out)
print("never in training:", ", ".join(f"{c} {s}" for c, s in sorted(HELD_OUT)))
""")

md("""
Every picture holds one or two shapes (circle, square, triangle) in one of five colours and
two sizes. Its caption and answers are computed from the same numbers the drawing used, so
the truth is exact. A caption names the upper (or left) thing first, so each picture has one
caption. Two colour-shape pairs, **green triangle** and **purple circle**, never appear in the
3,000 training pictures; the `held_out` pictures each hold one, to test whether the model
composes a colour and a shape it has only seen apart.

## 1 · Patches are the picture's tokens

A 32 x 32 picture cut into 8 x 8 patches gives a 4 x 4 grid: 16 patches, read row by row.
Each patch is 8 x 8 pixels x 3 colours = 192 numbers.
""")

code("""
pic = train[1]
patches = patchify(pic.image, 8)  # (16, 192)
print("patches:", tuple(patches.shape))
assert torch.equal(unpatchify(patches[None], 8, 32, 32)[0], pic.image)  # the round trip loses nothing

fig, axes = plt.subplots(4, 4, figsize=(4.2, 4.4))
for k, ax in enumerate(axes.flat):
    ax.imshow(patches[k].reshape(8, 8, 3).numpy())
    ax.set_xticks([]); ax.set_yticks([])
    ax.set_title(str(k), fontsize=8, pad=2)
fig.suptitle(f"The 16 patches of '{pic.caption}'", fontsize=9)
plt.show()
""")

md("""
The model turns each patch into a vector of the model's width (64 here) with **one linear
map**, and adds a learned vector for the patch's **row** and one for its **column**, so the
model knows where each patch sits (words get a position too; here RoPE turns their queries and
keys). Build the 16 image tokens by hand and check them against the model's own:
""")

code("""
model = vlm.TinyVLM(vlm.vlm_config(), seed=0)
W, b = model.patch_embed.weight, model.patch_embed.bias  # (64, 192), (64,)
pixels = patches.float() / 255
where = torch.arange(16)
by_hand = pixels @ W.T + b + model.row_embed.weight[where // 4] + model.col_embed.weight[where % 4]
library = model.image_tokens(pic.image[None])[0]
print("image tokens:", tuple(library.shape))
torch.testing.assert_close(by_hand, library)
print(f"{model.num_params():,} parameters, of which {sum(p.numel() for p in model.patch_embed.parameters()):,} "
      "turn patches into vectors")
""")

md("""
**The layout.** One training row is the 16 image tokens, then `<bos>`, then the text: a
caption, or a question and its answer, then `<eos>`:

`[16 image tokens] <bos> what colour is the circle ? red <eos>`

The GPT is the same causal model as in notebook 03: every word sees every patch (they come
first) and no word sees a later word. The loss counts only the answer's words (as notebook 14
did for the assistant), so the model learns to write about the picture, not to predict the
question. A baseline uses the **same questions but no picture**: for each question, the answer
most often right in training. No model that reads only the question can do better on pictures
like the training ones: this table is what a text-only model would learn at best.
""")

coding_exercise("answer_targets", """
## Write it yourself: the answer-only targets

Write `answer_targets(prompt, answer)`, one row's input ids and targets (the image tokens come
before them and are never targets); `check_code` compares it with `lslm.vlm.batch`, which builds
every training batch below.
""")

md("""
## 2 · Train one model for both tasks

1,500 steps; each batch is 32 captions and 32 questions about random training pictures.
""")

code("""
start = time.perf_counter()
model, losses = vlm.train_vlm(train, "both", steps=1500, progress=True)
print(f"trained in {time.perf_counter() - start:.0f} s, loss {sum(losses[:50]) / 50:.2f} -> {sum(losses[-50:]) / 50:.2f}")

smooth = torch.tensor(losses).unfold(0, 50, 10).mean(1)
plt.figure(figsize=(6, 3))
plt.plot(torch.arange(len(smooth)) * 10 + 50, smooth)
plt.xlabel("step"); plt.ylabel("loss on the answers (mean of 50 steps)")
plt.title("The tiny VLM learning to caption and answer")
plt.show()
""")

md("""
## 3 · Score every claim, against a baseline that cannot see

A caption is scored **claim by claim**: each thing's colour, shape and size, and the relation
between two things (`lslm.vision.caption_scores`). Answers are scored by exact match, per kind
of question. The held-out pictures are scored apart.
""")

code("""
prior = vlm.PriorBaseline(train)
scores = {
    "captions, test": (vlm.caption_report(model, test), prior.caption_report(test)),
    "captions, held-out pairs": (vlm.caption_report(model, held_out), prior.caption_report(held_out)),
    "answers, test": (vlm.vqa_scores(model, test), prior.vqa_scores(test)),
    "answers, held-out pairs": (vlm.vqa_scores(model, held_out), prior.vqa_scores(held_out)),
}
for name, (seeing, blind) in scores.items():
    print(f"{name:<26}" + "".join(f"{k:>10}" for k in seeing if k != "parsed"))
    for who, row in (("  model (sees)", seeing), ("  no picture", blind)):
        print(f"{who:<26}" + "".join(f"{v:>10.2f}" for k, v in row.items() if k != "parsed"))
print(f"the no-picture caption for every picture: '{prior.caption}'")
""")

code("""
cap, cap_blind = scores["captions, test"]
ans, ans_blind = scores["answers, test"]
assert cap["colour"] > cap_blind["colour"] + 0.4 and cap["shape"] > cap_blind["shape"] + 0.2
assert ans["colour"] > ans_blind["colour"] + 0.4 and ans["size"] > ans_blind["size"] + 0.15
assert ans["all"] > ans_blind["all"] + 0.15
held, _ = scores["captions, held-out pairs"]
assert held["colour"] > cap_blind["colour"] + 0.4  # colours still read right ...
assert held["shape"] < cap["shape"] - 0.3  # ... but the unseen colour-shape pairs are not named
held_answers, _ = scores["answers, held-out pairs"]
assert held_answers["colour"] < held["colour"] - 0.4  # asked by its shape, the colour is lost
""")

md("""
What the numbers say:

* **Colours and sizes are read from the picture:** far above what the question alone gives
  away. Without the picture, "what colour is the circle?" has only a prior to go on.
* **Shapes are harder:** a small shape covers parts of a few patches, and one linear map per
  patch sees edges only coarsely.
* **"Where is the circle?" is no better than the prior:** the answer needs the relation *and*
  the other thing's shape, and 1,500 steps are not enough for this model to learn it.
  Captions get relations right more often than the prior, because a caption's relation is
  always "above" or "left of".
* **Held-out pairs:** in a caption the colour is still right, but the model then names a
  *seen* shape: a green triangle becomes a green circle or square. Asked "what colour is the
  triangle?" about a green triangle, it answers another colour: the word "triangle" in the
  question brings what training taught, that triangles are never green, and it outweighs the
  pixels. In a caption the model writes the colour *before* the shape, so nothing pulls it
  away. Composing a colour and a shape never seen together is exactly what a small model on
  little data does not get for free.

Captions of a few pictures, then of held-out ones:
""")

code("""
shown = test[:4] + held_out[:4]
said = vlm.captions(model, shown)
fig, axes = plt.subplots(2, 4, figsize=(11, 7.4))
for ax, pic, text in zip(axes.flat, shown, said):
    ax.imshow(pic.image.permute(1, 2, 0).numpy())
    mark = "right" if text == pic.caption else "WRONG"
    wrap = lambda s: s.replace(" above", "\\nabove").replace(" left of", "\\nleft of")
    ax.set_title(f"model ({mark}): {wrap(text)}\\ntruth: {wrap(pic.caption)}", fontsize=7.5)
    ax.set_xticks([]); ax.set_yticks([])
axes[0, 0].set_ylabel("test pictures"); axes[1, 0].set_ylabel("held-out pairs")
plt.tight_layout()
plt.show()
""")

md("""
## 4 · Where the model looks while it writes a word

While it writes a word, the position just before that word attends to the 16 image tokens
(and to the words so far). Lay those weights over the picture: layer 1, the last, looks at
the thing whose colour or shape it is writing.
""")

code("""
two = next(p for p, s in zip(test, vlm.captions(model, test)) if len(p.things) == 2 and s == p.caption)
words = two.caption.split()
picks = [2, 3, len(words) - 2, len(words) - 1]  # both colours and both shapes
fig, axes = plt.subplots(1, 4, figsize=(12, 3.6))
for ax, k in zip(axes, picks):
    w = vlm.word_attention(model, two.image, two.caption, k)[1].mean(0)  # layer 1, mean of heads
    draw_patch_attention(ax, two.image, w, f"writing '{words[k]}'\\n{w.sum():.0%} of it on the picture")
fig.suptitle(f"'{two.caption}': layer 1, mean of 4 heads", fontsize=10)
plt.show()
""")

md("""
One picture could be luck. Measure it over the test pictures: when the model names the first
thing rightly, what share of each layer's attention on the picture lands on the patches that
thing covers, against the share of the picture those patches are?
""")

code("""
rows = {(layer, k): [] for layer in (0, 1) for k in (2, 3)}  # word 2 is the colour, word 3 the shape
area = []
for pic, text in zip(test, vlm.captions(model, test)):
    claim, truth = read_caption(text), read_caption(pic.caption)
    if not claim or claim["things"][0] != truth["things"][0]:
        continue
    thing = next(t for t in pic.things if (t.size, t.colour, t.shape) == tuple(truth["things"][0]))
    mask = patch_mask(thing).float()
    area.append(float(mask.mean()))
    for k in (2, 3):
        w = vlm.word_attention(model, pic.image, pic.caption, k).mean(1)  # (layers, 4, 4), mean of heads
        for layer in (0, 1):
            rows[layer, k].append(float((w[layer] * mask).sum() / w[layer].sum()))
covered = sum(area) / len(area)
print(f"{len(area)} pictures; the first thing's patches are {covered:.0%} of the picture")
for (layer, k), shares in rows.items():
    print(f"layer {layer}, writing its {('colour', 'shape')[k - 2]:<6}: {sum(shares) / len(shares):.0%} "
          "of the attention on the picture is on the thing")
looked = sum(rows[1, 3]) / len(rows[1, 3])
assert looked > covered + 0.15
""")

md("""
Layer 1 looks at the thing far more than its size alone would give; layer 0 looks more
evenly. Attention is a clue to what a model uses, not a proof (notebook 11 tests the claim by
switching heads off).

Explore it yourself: pick a picture, what the model writes (its caption or its answer to
one of the picture's questions), a word, a layer and a head. The left panel is the picture;
on the right, the brighter a patch, the more of that position's attention it got (its share
is written in it).
""")

code("""
PatchAttention(model, test[:12])
""")

coding_exercise("patchify", """
## Write it yourself: patches

Write `patchify(images, patch)` and run the cell; `check_code` tries it against
`lslm.vision.patchify` on a tiny picture whose numbers you can print, a batch, and a patch as big
as the picture.
""")

md("""
## 5 · From the toy to a real vision-language model

Real systems keep this layout and scale every part. **PaliGemma** (Beyer et al. 2024,
[arXiv:2407.07726](https://arxiv.org/abs/2407.07726); [Hugging Face docs](https://huggingface.co/docs/transformers/model_doc/paligemma))
is an open model of about 3B parameters:

| part | this notebook | PaliGemma (224 x 224 version) |
| --- | --- | --- |
| picture | 32 x 32 pixels, drawn by code | 224 x 224 photos |
| patches → tokens | 8 x 8 patches: 16 tokens | 14 x 14 patches: 256 tokens |
| image encoder | none: one linear map per patch | SigLIP So400m, a ~400M-parameter vision Transformer pretrained on image-text pairs |
| projector | (the linear map above) | one linear map into the language model's width |
| language model | 2 layers, width 64, trained from scratch | Gemma 2B, pretrained on text |
| attention over the prefix | causal, as in every notebook | full attention among the image tokens and the prompt |
| training | 1,500 steps of 64 on 3,000 pictures | pretraining on a large multilingual mix of image-text tasks, then transfer |
""")

code("""
print(f"this notebook's model: {model.num_params():,} parameters")
print(f"PaliGemma: about 3,000,000,000 parameters, {3e9 / model.num_params():,.0f} times as many")
""")

md("""
What the toy leaves out: **a pretrained vision encoder** (its patches pass through many layers
that already know edges, textures and objects before the language model sees them), real
photos and their variety, high resolutions (and the cost: 896 x 896 pixels is 4,096 tokens),
and the scale of data that makes held-out combinations work. What it keeps is the idea that
carries them all: a picture becomes a sequence of vectors, and attention lets each word look at
the patches it needs.

## Check yourself

PaliGemma also comes in a 448 x 448 version with the same 14 x 14 patches. How many image
tokens does one picture become? Replace `None` with your answer and run the cell.
""")

code("""
from lslm.checks import check

answer = None  # your answer here
check("image_tokens", answer, image_size=448, patch=14)
""")

md("""
<details><summary>Solution (expand)</summary>

448 / 14 = 32 patches along each side, so 32 x 32 = **1,024** image tokens: four times the
224-pixel version's 256, for twice the width. Attention's cost grows with the square of the
sequence, so higher resolution is expensive.
</details>
""")

code("""
assert check("image_tokens", (448 // 14) ** 2, image_size=448, patch=14)
assert check("image_tokens", model.n_image_tokens, image_size=32, patch=8)
""", "solution")

md("""
**Next:** that is the last notebook of the suite so far. The [README](../README.md) has the
command line, the data and how to run the tests.
""")

write("notebooks/17_pictures_and_words.ipynb")
