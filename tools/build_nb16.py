"""Write notebooks/16_open_models.ipynb from the cells below (then run it with nbval and tidy
it with tools/nbtidy.py). Kept so the notebook's text can be reviewed as code."""

from nbbuild import code, coding_exercise, md, write

md("""
# 16 · From GPT-2 to today's open models: RoPE, RMSNorm, SwiGLU, grouped-query attention

**Goal:** the GPT of this course follows GPT-2 (2019). The open models you meet today
(Llama, Mistral, Qwen) keep its plan and change a handful of parts. You will take the parts
one at a time, check each against a written-out version, see what it costs and buys, and
finish by running a Llama-format checkpoint in lslm's own model:

1. **RMSNorm** instead of LayerNorm;
2. a **SwiGLU** feed-forward layer instead of GELU;
3. **rotary position embeddings (RoPE)** instead of learned positions;
4. **grouped-query attention (GQA)**: fewer key/value heads, a smaller KV cache;
5. each variant trained on the same data and budget, with an honest reading;
6. the parameters of Llama 2 7B and Mistral 7B from their published configs;
7. a Llama-format checkpoint loaded into lslm, matching `transformers`.

About a minute on a laptop CPU. Each part is an option of `GPTConfig`, off by default.

| part | GPT-2 (2019) | Llama 2 (2023) | `GPTConfig` option |
| --- | --- | --- | --- |
| positions | learned vectors, added | rotations of q and k (RoPE) | `position="rope"`, `rope_theta` |
| norm | LayerNorm | RMSNorm | `norm="rmsnorm"`, `norm_eps` |
| feed-forward | 4x wide, GELU | about 8/3x wide, SwiGLU | `mlp="swiglu"`, `mlp_hidden` |
| key/value heads | one per query head | 8 for 64 query heads (70B) | `n_kv_head` |
| biases | yes | none | `bias=False` |
| LM head | the token embedding (tied) | its own matrix | `tie_embeddings=False` |
""")

code("""
import math
import tempfile
import time
from dataclasses import replace

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from lslm.attention import KVCache, apply_rope
from lslm.hf import from_pretrained, llama_config
from lslm.model import GPT, GPTConfig, RMSNorm, SwiGLU, count_params, kv_cache_bytes_per_token, param_breakdown
from lslm.pipeline import prepare_data
from lslm.scale import flops_per_token
from lslm.train import TrainConfig, Trainer

data = prepare_data("python-docs", tokenizer="char")
gpt2_like = GPTConfig(vocab_size=data.tokenizer.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=64)
llama_like = replace(gpt2_like, position="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False,
                     tie_embeddings=False)
print(f"{'part':>22} {'GPT-2 style':>12} {'Llama style':>12}")
for part in ("token_embedding", "position_embedding", "blocks", "final_layernorm"):
    print(f"{part:>22} {param_breakdown(gpt2_like)[part]:>12,} {param_breakdown(llama_like)[part]:>12,}")
print(f"{'LM head':>22} {'(tied) 0':>12} {param_breakdown(llama_like)['lm_head']:>12,}")
print(f"{'total':>22} {count_params(gpt2_like):>12,} {count_params(llama_like):>12,}")
print(f"{'forward FLOPs a token':>22} {flops_per_token(gpt2_like, training=False):>12,.0f} "
      f"{flops_per_token(llama_like, training=False):>12,.0f}")
for config in (gpt2_like, llama_like):
    assert count_params(config) == GPT(config, seed=0).num_params()  # the count on paper is the model's
""")

md("""
At this size the untied head is the largest change: a second vocabulary-by-width matrix. In a
7B model the embedding is 2% of the weights and the head's copy costs little; it lets the
output and input meanings of a token differ. The compute follows the weights: about 2 FLOPs
per weight a token passes through, plus attention's term, which grows with the context
(Kaplan et al. 2020; `lslm.scale.flops_per_token`, notebook 10). The norms' and RoPE's
elementwise work is too small to count.

## 1 · RMSNorm: rescale, without centring

LayerNorm subtracts each vector's mean, divides by its standard deviation, then scales and
shifts: $\\text{LN}(x) = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} \\, g + b$. RMSNorm
(Zhang & Sennrich 2019) keeps only the rescaling: $\\text{RMS}(x) = \\frac{x}{\\sqrt{\\text{mean}(x^2) +
\\epsilon}} \\, g$. One reduction instead of two, no bias, and in their experiments the same
quality.
""")

code("""
torch.manual_seed(0)
x = torch.randn(3, 64) + 2.0  # vectors whose mean is far from 0
norm = RMSNorm(64)
with torch.no_grad():
    norm.weight.uniform_(0.5, 1.5)
by_hand = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
layer_norm = F.layer_norm(x, (64,), norm.weight, None, 1e-5)
print("mean of each vector after RMSNorm:  ", [round(v, 2) for v in (by_hand / norm.weight).mean(-1).tolist()])
print("mean of each vector after LayerNorm:", [round(v, 2) for v in (layer_norm / norm.weight).mean(-1).tolist()])
print("root mean square after RMSNorm:     ", [round(v, 2) for v in (by_hand / norm.weight).pow(2).mean(-1).sqrt().tolist()])
assert torch.allclose(norm(x), by_hand, atol=1e-6)  # lslm's RMSNorm is the formula
""")

md("""
RMSNorm leaves each vector's direction and sign pattern alone and only fixes its size (root
mean square 1), where LayerNorm also moves its mean to 0.

## 2 · SwiGLU: a gate inside the feed-forward layer

GPT-2's MLP widens each position 4x, applies GELU and projects back: two matrices, $8c^2$
weights for width $c$. SwiGLU (Shazeer 2020) makes two widened copies and lets one, through
SiLU, gate the other feature by feature: $\\text{down}(\\text{silu}(x W_g) \\odot x W_u)$. Three
matrices, so Llama narrows the hidden layer to about $\\frac{8}{3}c$ to keep $8c^2$ weights.
""")

code("""
mlp = SwiGLU(64, gpt2_like.hidden)  # the same hidden width as GPT-2's, for the formula check
h = x @ mlp.w_gate.weight.T
by_hand = (h * torch.sigmoid(h) * (x @ mlp.w_up.weight.T)) @ mlp.c_proj.weight.T  # silu(h) = h * sigmoid(h)
assert torch.allclose(mlp(x), by_hand, atol=1e-5)

c = 4096
gelu_weights = 2 * c * (4 * c)
swiglu_width = GPTConfig(n_embd=c, n_head=32, mlp="swiglu").hidden
print(f"width {c}: GELU MLP {gelu_weights / 1e6:.1f}M weights; SwiGLU at {swiglu_width} wide "
      f"{3 * c * swiglu_width / 1e6:.1f}M; Llama 2 7B uses 11008 wide: {3 * c * 11008 / 1e6:.1f}M")
assert abs(3 * c * swiglu_width / gelu_weights - 1) < 0.01
""")

md("""
## 3 · RoPE: positions as rotations

GPT-2 adds a learned vector for each position to each token, so a model trained on 1,024
positions has nothing for position 1,025. RoPE (Su et al. 2021) adds nothing. It turns each
query and key: pair $i$ of a head's dimensions rotates by the angle
$\\text{position} \\times \\theta^{-2i/d}$, fast for the first pairs and slow for the last, like the
hands of a clock. Below: one pair of a key's dimensions at positions 0 to 7, for the fastest
pair and a slow one.
""")

code("""
head = 16
key = torch.zeros(1, 1, 8, head)
key[..., 0], key[..., head // 2] = 1.0, 0.0       # fastest pair: dims 0 and 8
key[..., 2], key[..., head // 2 + 2] = 1.0, 0.0   # a slower pair: dims 2 and 10
turned = apply_rope(key)[0, 0]
fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
for ax, i, name in ((axes[0], 0, "pair 0 (fast)"), (axes[1], 2, "pair 2 (slower)")):
    for pos in range(8):
        u, v = turned[pos, i].item(), turned[pos, head // 2 + i].item()
        ax.annotate("", (u, v), (0, 0), arrowprops=dict(arrowstyle="->", color=plt.cm.viridis(pos / 7)))
        ax.text(1.12 * u, 1.12 * v, str(pos), ha="center", va="center", fontsize=9)
    ax.set(xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), aspect="equal", title=f"{name}: the same key at positions 0-7",
           xlabel=f"dimension {i}", ylabel=f"dimension {head // 2 + i}")
plt.tight_layout()
plt.show()
assert torch.allclose(turned.norm(dim=-1), key[0, 0].norm(dim=-1))  # turning never changes a length
""")

md("""
Why rotations: turning a query by angle $m\\phi$ and a key by $n\\phi$ leaves their dot product
depending on $(m - n)\\phi$ only. The score between two tokens then depends on how far apart
they are, not on where they sit. Check it: put the same query and key at every pair of
positions and compare the scores along each diagonal (same distance).
""")

code("""
torch.manual_seed(1)
q, k = torch.randn(head), torch.randn(head)
n = 12
qs = apply_rope(q.expand(1, 1, n, head).contiguous())[0, 0]  # the query at positions 0..11
ks = apply_rope(k.expand(1, 1, n, head).contiguous())[0, 0]
scores = qs @ ks.T  # scores[m, n]: the query at m, the key at n
spread = max((torch.diagonal(scores, d).max() - torch.diagonal(scores, d).min()).item() for d in range(-n + 1, n))
print(f"largest difference between scores at the same distance: {spread:.1e}")
assert spread < 1e-4
fig, ax = plt.subplots(figsize=(4.8, 4))
im = ax.imshow(scores, cmap="coolwarm")
ax.set(xlabel="position of the key", ylabel="position of the query", title="RoPE score: constant along diagonals")
fig.colorbar(im, ax=ax, label="q · k")
plt.show()
""")

coding_exercise("rms_norm", """
### Write it yourself: RMSNorm, SwiGLU and RoPE

Three of today's parts, each as a function; `check_code` tries each against lslm's own.

**RMSNorm:** write `rms_norm(x, weight, eps)` from the formula in section 1.
""")

coding_exercise("swiglu", """
**SwiGLU:** write `swiglu(x, w_gate, w_up, w_down)`, with the three weight matrices given.
""")

coding_exercise("rope", """
**RoPE:** write `rope(x, start)` from the description above; `check_code` tries it at position 0,
on one pair you can work out by hand, and on a batch of heads that starts at position 7.
""")

md("""
## 4 · Grouped-query attention: a smaller KV cache

To write token $t+1$ a model reuses the keys and values of tokens $1..t$ (notebook 06's KV
cache). Every layer keeps a key and a value for every head, so for long contexts the cache,
not the weights, fills a GPU. Grouped-query attention (Ainslie et al. 2023) lets a group of
query heads share one key/value head: with `n_kv_head` key/value heads the cache shrinks by
`n_head / n_kv_head`. One key/value head is multi-query attention (Shazeer 2019). Measure it
on a real cache, and check that the cache still changes nothing:
""")

code("""
prompt = torch.tensor([data.tokenizer.encode("The list is sorted in place, and")])
print(f"{'n_kv_head':>9} {'cache bytes per token':>22} {'on paper':>9}  same tokens as without a cache")
for n_kv in (4, 2, 1):
    config = replace(llama_like, n_kv_head=n_kv)
    model = GPT(config, seed=0).eval()
    cache = KVCache(config.n_layer)
    model(prompt, cache=cache)
    measured = sum(t.numel() * t.element_size() for t in cache.keys + cache.values) / prompt.size(1)
    same = torch.equal(model.generate(prompt, 20, temperature=0), model.generate(prompt, 20, temperature=0, use_cache=False))
    print(f"{n_kv:>9} {measured:>22,.0f} {kv_cache_bytes_per_token(config, 4):>9,}  {same}")
    assert measured == kv_cache_bytes_per_token(config, 4) and same  # float32: 4 bytes a number
""")

code("""
# Llama 2 70B's published shape (Touvron et al. 2023): 80 layers, 64 query heads of 128, 8 key/value heads.
llama2_70b = GPTConfig(vocab_size=32000, block_size=4096, n_layer=80, n_head=64, n_embd=8192, n_kv_head=8)
context = 4096
for name, config in (("64 key/value heads (no GQA)", replace(llama2_70b, n_kv_head=None)), ("8 key/value heads (GQA)", llama2_70b)):
    per_token = kv_cache_bytes_per_token(config, bytes_per_number=2)  # bfloat16
    print(f"{name:>28}: {per_token / 2**10:,.0f} KiB per token, {per_token * context / 2**30:.2f} GiB "
          f"for one {context}-token conversation")
""")

md("""
Eight times less memory per conversation means eight times more conversations on the same
GPU. The price is expressiveness: heads in a group read the same keys. Ainslie et al. found
that quality stays close to full multi-head attention with 8 groups.

## 5 · Train each variant: what a short CPU run can show

Every variant below trains on the same characters for the same 300 steps, from the same seed,
2 layers of 64. The GPT-2 style model runs a second time with another seed (other initial
weights, other batches), to show how much the result moves by chance alone.
""")

code("""
variants = {
    "GPT-2 style": gpt2_like,
    "GPT-2 style, seed 1": gpt2_like,
    "+ RoPE": replace(gpt2_like, position="rope"),
    "+ RMSNorm": replace(gpt2_like, norm="rmsnorm"),
    "+ SwiGLU": replace(gpt2_like, mlp="swiglu"),
    "+ GQA (2 of 4)": replace(gpt2_like, n_kv_head=2),
    "Llama style (all)": llama_like,
}
results = {}
start = time.perf_counter()
for name, config in variants.items():
    seed = 1 if "seed 1" in name else 0
    cfg = TrainConfig(max_iters=300, warmup_iters=30, lr=3e-3, min_lr=3e-4, batch_size=16, eval_interval=300,
                      eval_iters=20, progress=False, device="cpu", seed=seed)
    trainer = Trainer(GPT(config, seed=seed), data.tokenizer, data.tokens, cfg)
    history = trainer.fit()
    speed = sorted(history["tokens_per_sec"])[len(history["tokens_per_sec"]) // 2]  # median
    results[name] = {"val": history["val_loss"][-1], "params": trainer.model.num_params(),
                     "ms": 1000 * cfg.batch_size * config.block_size / speed}
    print(f"{name}: validation loss {results[name]['val']:.3f} ({time.perf_counter() - start:.0f} s so far)",
          flush=True)
print(f"\\n{len(variants)} runs of 300 steps in {time.perf_counter() - start:.0f} s\\n")
print(f"{'variant':>20} {'parameters':>10} {'val loss':>9} {'ms per step':>12}")
for name, r in results.items():
    print(f"{name:>20} {r['params']:>10,} {r['val']:>9.3f} {r['ms']:>12.1f}")
noise = abs(results["GPT-2 style"]["val"] - results["GPT-2 style, seed 1"]["val"])
print(f"\\nthe same model, two seeds: {noise:.3f} apart")
for r in results.values():
    assert r["val"] < math.log(data.tokenizer.vocab_size) - 1.5  # every variant learns
# Rotary positions give a head start far beyond chance: nothing about positions has to be learned.
assert results["+ RoPE"]["val"] < results["GPT-2 style"]["val"] - max(0.1, 5 * noise)
""")

code("""
names = list(results)
fig, ax = plt.subplots(figsize=(8, 3.6))
ax.barh(names, [results[n]["val"] for n in names], color=["tab:gray", "silver"] + ["tab:blue"] * (len(names) - 2))
base = results["GPT-2 style"]["val"]
ax.axvspan(base - noise, base + noise, color="tab:orange", alpha=0.2, label="GPT-2 style ± the seed-to-seed gap")
ax.invert_yaxis()
lo = min(r["val"] for r in results.values())
ax.set(xlim=(lo - 0.15, max(r["val"] for r in results.values()) + 0.1), xlabel="validation loss after 300 steps (nats per character)",
       title="Same data, same steps: rotary positions pull ahead, the rest stay close")
ax.legend(loc="lower right", fontsize=9)
plt.tight_layout()
plt.show()
""")

md("""
Read this with care. A 300-step run of a 100k-parameter model on a CPU shows that every
variant trains and what each costs per step; it ranks only what differs by far more than
chance. One part does here: with rotary positions nothing about position has to be learned,
while GPT-2's position vectors start random and take many steps to become useful, a head
start that matters most in a short run. The others land within about a tenth of a nat of
GPT-2's loss, and one short run at this size cannot say which is better. The reasons they
won are measured at scale: RoPE generalises over positions and extends to longer contexts, RMSNorm is
cheaper, SwiGLU gave lower perplexity at equal compute in Shazeer's experiments, and GQA
shrinks the cache with little loss of quality. What the small run does show is the parts'
cost on your machine, and that each one is a few lines you can read in `lslm/model.py` and
`lslm/attention.py`.

## 6 · Counting a published model

The same formulas count the real models from their published configurations. The loader's
`llama_config` turns a Hugging Face `config.json` into a `GPTConfig`, with no weights needed.
""")

code("""
published = {  # config.json fields (Hugging Face), and the totals their papers and model cards give
    "Llama 2 7B": ({"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 32, "max_position_embeddings": 4096,
                    "rms_norm_eps": 1e-5}, 6_738_415_616),
    "Mistral 7B": ({"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 32768,
                    "rms_norm_eps": 1e-5, "rope_theta": 10000.0}, 7_241_732_096),
}
for name, (fields, total) in published.items():
    config = llama_config(fields)
    parts = param_breakdown(config)
    print(f"{name}: {count_params(config):,} parameters (published: {total:,}); "
          f"embedding + head {(parts['token_embedding'] + parts['lm_head']) / count_params(config):.1%}, "
          f"KV cache {kv_cache_bytes_per_token(config) / 2**10:.0f} KiB per token in bfloat16")
    assert count_params(config) == total
""")

md("""
Mistral 7B has more weights than Llama 2 7B (a wider feed-forward layer) but a quarter of its
KV cache (8 key/value heads instead of 32). Its sliding-window attention changes which keys a
query reads, not the count; lslm does not implement it.

## 7 · Run a Llama-format checkpoint in lslm's model

`lslm.hf.from_pretrained` reads a local Hugging Face folder of the Llama format (used by
Llama 2 and 3 and many others): the separate q, k and v projections become lslm's one
`c_attn`, the gate, up and down projections become `w_gate`, `w_up` and `c_proj`. To test it
without downloading 13 GB, let `transformers` build a tiny Llama with random weights and
grouped-query attention, save it, and load the folder:
""")

code("""
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.utils import logging as hf_logging

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.manual_seed(0)
hf_model = LlamaForCausalLM(LlamaConfig(
    vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, rope_theta=10000.0, tie_word_embeddings=False)).eval()
folder = tempfile.mkdtemp()
hf_model.save_pretrained(folder)

ours = from_pretrained(folder)
ids = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    theirs = hf_model(ids).logits
mine = ours(ids)[0]
gap = (mine - theirs).abs().max().item()
print(ours.config)
print(f"largest logit difference from transformers: {gap:.1e}")
assert gap < 1e-4
assert ours.num_params() == sum(p.numel() for p in hf_model.parameters())
""")

md("""
The same code loads real Llama-format weights from a folder on disk, as far as they fit in
memory: lslm refuses a model over 8 GiB of float32, and variants it does not implement (scaled
RoPE for long contexts, biases, another activation) with a one-line error.

## Check yourself

Llama 2 70B has 80 layers and 8 key/value heads of 128 numbers each. How many **bytes** does
its KV cache hold per token in bfloat16 (2 bytes a number)? Replace `None` with your answer (a
number, or a Python expression) and run the cell.
""")

code("""
from lslm.checks import check

answer = None  # your answer here
check("kv_cache_bytes", answer, n_layer=80, n_kv_head=8, head_size=128, bytes_per_number=2)
""")

md("""
<details><summary>Solution (expand)</summary>

Each layer keeps a key and a value, 128 numbers each, for each of its 8 key/value heads:
2 × 80 × 8 × 128 = 163,840 numbers per token, × 2 bytes = **327,680 bytes** (320 KiB). With
64 key/value heads it would be 8 times as much, 2.5 MiB per token.
</details>
""")

code("""
assert check("kv_cache_bytes", 2 * 80 * 8 * 128 * 2, n_layer=80, n_kv_head=8, head_size=128, bytes_per_number=2)
assert 2 * 80 * 8 * 128 * 2 == kv_cache_bytes_per_token(llama2_70b)
""", "solution")

md("""
**Next:** [17 · Pictures and words](17_pictures_and_words.ipynb): the same Transformer reading
pictures, a tiny vision-language model that captions and answers questions.
""")

write("notebooks/16_open_models.ipynb")
