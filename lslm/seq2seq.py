"""An encoder-decoder Transformer for translation: config, blocks, model, decoding.

This is the architecture of "Attention Is All You Need" (Vaswani et al. 2017), built
from the same parts as the GPT in ``lslm.model`` (so, like GPT-2, it normalises before
each sub-layer and learns its position embeddings, where the paper normalised after and
used fixed sine waves):

* the **encoder** reads the whole source sentence with self-attention that looks both
  ways (no causal mask), and turns each source word into a vector that knows its context;
* the **decoder** is a GPT-like stack that writes the translation one word at a time,
  with one more sub-layer per block: **cross-attention**, whose queries come from the
  target words written so far and whose keys and values are the encoder's vectors. Its
  weights say which source words the decoder reads while writing each target word.

Sentences in a batch have different lengths, so short ones are filled up with
``<pad>``; a mask (True = a real token) keeps every attention away from the padding,
and the loss skips padded target positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from lslm.attention import CausalSelfAttention, CrossAttention, SelfAttention
from lslm.devices import model_device
from lslm.errors import LslmError, whole_number
from lslm.model import MAX_SIZE, MLP, GPTConfig, LayerNorm, NumParams, Residual, init_weights, tie_weights
from lslm.utils import DictConfig, evaluating, seeded


@dataclass
class Seq2SeqConfig(DictConfig):
    """The shape of an encoder-decoder model. Both sides use the same width and depth."""

    src_vocab_size: int = 32
    tgt_vocab_size: int = 32
    block_size: int = 16  # the longest sentence, in tokens with its <bos>/<eos>, on either side
    n_layer: int = 2  # encoder blocks, and as many decoder blocks
    n_head: int = 4
    n_embd: int = 64
    dropout: float = 0.0
    bias: bool = True
    gelu_approx: str = "none"  # "tanh" is GPT-2's GELU, as in GPTConfig
    pad_id: int = 0  # the special tokens' ids, the same in both vocabularies
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self) -> None:
        for name in ("src_vocab_size", "tgt_vocab_size"):
            setattr(self, name, whole_number(name, getattr(self, name), minimum=1, maximum=MAX_SIZE))
        # The remaining fields mean what they mean in a GPT: let GPTConfig check them, and
        # keep its cleaned values (plain int and float).
        gpt = GPTConfig(vocab_size=1, block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head,
                        n_embd=self.n_embd, dropout=self.dropout, bias=self.bias, gelu_approx=self.gelu_approx)
        self.block_size, self.n_layer, self.n_head = gpt.block_size, gpt.n_layer, gpt.n_head
        self.n_embd, self.dropout = gpt.n_embd, gpt.dropout
        # Both vocabularies hold the special tokens, at the same ids.
        smaller = min(self.src_vocab_size, self.tgt_vocab_size)
        for name in ("pad_id", "bos_id", "eos_id"):
            setattr(self, name, whole_number(name, getattr(self, name), minimum=0, maximum=smaller - 1))


def _mlp(config: Seq2SeqConfig) -> MLP:
    return MLP(config.n_embd, 4 * config.n_embd, config.bias, config.gelu_approx)


class EncoderBlock(nn.Module):
    """Self-attention that looks both ways (padding hidden), then the MLP."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.attn = SelfAttention(
            config.n_embd, config.n_head, config.dropout, config.bias, causal=False
        )
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.mlp = _mlp(config)
        self.residual = Residual(config.dropout)

    def forward(self, x: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        x, _ = self.residual(x, self.ln_1, self.attn, key_mask=src_mask)
        return self.residual(x, self.ln_2, self.mlp)


class DecoderBlock(nn.Module):
    """Causal self-attention over the target, cross-attention to the source, then the MLP.

    It is a GPT block with one more residual sublayer in the middle, around ``cross_attn``.
    """

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.bias)
        self.self_attn = CausalSelfAttention(config.n_embd, config.n_head, config.dropout, config.bias)
        self.ln_2 = LayerNorm(config.n_embd, config.bias)
        self.cross_attn = CrossAttention(config.n_embd, config.n_head, config.dropout, config.bias)
        self.ln_3 = LayerNorm(config.n_embd, config.bias)
        self.mlp = _mlp(config)
        self.residual = Residual(config.dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor, return_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Target padding sits after the real words, so the causal mask already hides it
        # from every real word; the loss ignores what the padded positions compute.
        x, _ = self.residual(x, self.ln_1, self.self_attn)
        x, weights = self.residual(
            x, self.ln_2, self.cross_attn, memory, memory_mask=src_mask, return_weights=return_weights
        )
        return self.residual(x, self.ln_3, self.mlp), weights


class Seq2Seq(NumParams, nn.Module):
    """An encoder-decoder Transformer with greedy decoding and beam search.

    Like ``GPT``, it draws its initial weights from torch's global generator, or from
    ``seed`` without touching the caller's generator.
    """

    def __init__(self, config: Seq2SeqConfig, seed: int | None = None):
        super().__init__()
        self.config = config
        c = config
        with seeded(seed):
            self.src_wte = nn.Embedding(c.src_vocab_size, c.n_embd)
            self.tgt_wte = nn.Embedding(c.tgt_vocab_size, c.n_embd)
            self.src_wpe = nn.Embedding(c.block_size, c.n_embd)
            self.tgt_wpe = nn.Embedding(c.block_size, c.n_embd)
            self.drop = nn.Dropout(c.dropout)
            self.encoder = nn.ModuleList([EncoderBlock(c) for _ in range(c.n_layer)])
            self.ln_enc = LayerNorm(c.n_embd, c.bias)
            self.decoder = nn.ModuleList([DecoderBlock(c) for _ in range(c.n_layer)])
            self.ln_dec = LayerNorm(c.n_embd, c.bias)
            self.lm_head = nn.Linear(c.n_embd, c.tgt_vocab_size, bias=False)
            tie_weights(self.lm_head, self.tgt_wte)
            # The deepest path runs through n_layer encoder and n_layer decoder blocks.
            init_weights(self, 2 * c.n_layer)

    def _embed(self, idx: torch.Tensor, wte: nn.Embedding, wpe: nn.Embedding, side: str) -> torch.Tensor:
        t = idx.size(1)
        if t > self.config.block_size:
            raise LslmError(
                f"the {side} has {t} tokens but block_size is {self.config.block_size}: "
                "use shorter sentences or a larger block_size"
            )
        return self.drop(wte(idx) + wpe(torch.arange(t, device=idx.device)))

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Source ids (B, S) -> one vector per source token (B, S, n_embd), the "memory"."""
        src_mask = self.source_mask(src) if src_mask is None else src_mask
        x = self._embed(src, self.src_wte, self.src_wpe, "source")
        for block in self.encoder:
            x = block(x, src_mask)
        return self.ln_enc(x)

    def decode(
        self,
        tgt_in: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor,
        return_attention: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Next-word logits (B, T, tgt_vocab) for the target so far, and the cross-attention
        weights (one (B, heads, T, S) tensor per decoder block) if asked for."""
        x = self._embed(tgt_in, self.tgt_wte, self.tgt_wpe, "target")
        attention = []
        for block in self.decoder:
            x, weights = block(x, memory, src_mask, return_weights=return_attention)
            attention.append(weights)
        return self.lm_head(self.ln_dec(x)), (attention if return_attention else None)

    def source_mask(self, src: torch.Tensor) -> torch.Tensor:
        """True for real source tokens, False for padding."""
        mask = src != self.config.pad_id
        if not mask.any(dim=1).all():
            raise LslmError(
                "a source sentence is all padding: every sentence needs at least one token (its <eos>)"
            )
        return mask

    def forward(
        self, src: torch.Tensor, tgt_in: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, loss)``: logits for every target position, and the loss if ``targets``
        are given (else None).

        ``src`` (B, S) and ``tgt_in`` (B, T) are padded with ``pad_id``; the loss skips
        targets equal to ``pad_id``. The cross-attention weights come from
        ``decode(..., return_attention=True)``.
        """
        src_mask = self.source_mask(src)
        memory = self.encode(src, src_mask)
        logits, _ = self.decode(tgt_in, memory, src_mask)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=self.config.pad_id
            )
        return logits, loss

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_len: int | None = None) -> list[list[int]]:
        """Translate a batch by always writing the likeliest next word.

        Returns, per sentence, the ids written before ``<eos>``: at most ``max_len``
        (default ``block_size - 1``, the most a target of training can hold); a
        translation that has not ended by then is cut there.
        """
        c = self.config
        max_len = self._max_len(max_len)
        src, src_mask = self._source_on_device(src)
        with evaluating(self):
            memory = self.encode(src, src_mask)
            tokens = torch.full((src.size(0), 1), c.bos_id, dtype=torch.long, device=src.device)
            done = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
            for _ in range(max_len + 1):  # +1: room for the <eos> after max_len words
                logits = self.decode(tokens, memory, src_mask)[0][:, -1]
                next_id = logits.argmax(dim=-1).masked_fill(done, c.pad_id)
                tokens = torch.cat((tokens, next_id[:, None]), dim=1)
                done |= next_id == c.eos_id
                if done.all():
                    break
        return [self._strip(row[1:].tolist())[:max_len] for row in tokens]

    @torch.no_grad()
    def beam_search(
        self,
        src: torch.Tensor,
        beam_size: int = 4,
        max_len: int | None = None,
        length_penalty: float = 1.0,
    ) -> list[list[int]]:
        """Translate a batch, keeping the ``beam_size`` best partial translations at each step.

        Greedy decoding commits to the likeliest word at every step; a word that looked
        best can lead to a worse sentence. Beam search keeps ``beam_size`` candidates
        ("beams") alive, extends each by every word, and keeps the best ``beam_size`` of
        all those extensions. A translation of n tokens (its ``<eos>`` included) with
        total log-probability L scores L / n**length_penalty. Without that division
        (``length_penalty=0``), short translations would win simply because every extra
        word lowers L. The search for a sentence stops once ``beam_size`` translations
        have ended. With ``beam_size=1`` it is exactly greedy decoding.
        """
        if beam_size < 1:
            raise LslmError(f"beam_size must be at least 1, got {beam_size}")
        c, k, n = self.config, beam_size, src.size(0)
        max_len = self._max_len(max_len)
        src, src_mask = self._source_on_device(src)
        with evaluating(self):
            # Row b*k + j of everything below is beam j of sentence b.
            memory = self.encode(src, src_mask).repeat_interleave(k, dim=0)
            mask = src_mask.repeat_interleave(k, dim=0)
            tokens = torch.full((n * k, 1), c.bos_id, dtype=torch.long, device=src.device)
            # At the start all beams would be the same "<bos>": keep one alive, the rest at -inf.
            scores = torch.full((n, k), float("-inf"), device=src.device)
            scores[:, 0] = 0.0
            finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]  # (score, ids)
            for _ in range(max_len + 1):
                logits = self.decode(tokens, memory, mask)[0][:, -1]
                # Total log-probability of every beam extended by every word: (n, k * vocab).
                candidates = (scores.view(-1, 1) + F.log_softmax(logits, dim=-1)).view(n, -1)
                # 2k candidates: even if k of them end here, k stay alive.
                top = candidates.topk(2 * k, dim=1)
                top_scores, top_index = top.values.tolist(), top.indices.tolist()
                rows, words, new_scores = [], [], []
                for b in range(n):
                    alive = []
                    for rank in range(2 * k):
                        if len(finished[b]) >= k or len(alive) == k:
                            break
                        score = top_scores[b][rank]
                        beam, word = divmod(top_index[b][rank], c.tgt_vocab_size)
                        if word != c.eos_id:
                            alive.append((b * k + beam, word, score))
                        elif rank < k:  # an ending counts only if it is among the k best
                            ids = tokens[b * k + beam, 1:].tolist()
                            finished[b].append((score / (len(ids) + 1) ** length_penalty, ids))
                    while len(alive) < k:  # a sentence that is done keeps dead beams
                        alive.append((b * k, c.pad_id, float("-inf")))
                    for row, word, score in alive:
                        rows.append(row)
                        words.append(word)
                        new_scores.append(score)
                tokens = torch.cat((tokens[rows], torch.tensor(words, device=src.device)[:, None]), dim=1)
                scores = torch.tensor(new_scores, device=src.device).view(n, k)
                if all(len(f) >= k for f in finished):
                    break
        results = []
        for b in range(n):
            if not finished[b]:  # ran out of length: take the best beam, cut to max_len
                finished[b] = [(scores[b, 0].item(), tokens[b * k, 1:].tolist())]
            results.append(self._strip(max(finished[b], key=lambda f: f[0])[1])[:max_len])
        return results

    @torch.no_grad()
    def sequence_logprob(self, src: torch.Tensor, outputs: list[list[int]]) -> torch.Tensor:
        """The model's total log-probability of each output (its ids, then ``<eos>``) given
        its source: the quantity that greedy decoding and beam search try to make large."""
        c = self.config
        src = src.to(model_device(self))
        rows = [list(o) + [c.eos_id] for o in outputs]
        width = max(len(r) for r in rows)
        tgt_out = torch.tensor([r + [c.pad_id] * (width - len(r)) for r in rows], device=src.device)
        tgt_in = torch.cat((torch.full_like(tgt_out[:, :1], c.bos_id), tgt_out[:, :-1]), dim=1)
        logp = F.log_softmax(self(src, tgt_in)[0], dim=-1).gather(-1, tgt_out[..., None])[..., 0]
        return (logp * (tgt_out != c.pad_id)).sum(dim=1).cpu()

    def _source_on_device(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``src`` and its mask on the model's device. The mask is checked where ``src`` is
        (usually the CPU, so a GPU is not waited for), then both move."""
        src_mask = self.source_mask(src)
        device = model_device(self)
        return src.to(device), src_mask.to(device)

    def _max_len(self, max_len: int | None) -> int:
        # The decoder input is <bos> + the words so far, so at most block_size - 1 words fit.
        limit = self.config.block_size - 1
        if max_len is None:
            return limit
        if not 1 <= max_len <= limit:
            raise LslmError(f"max_len must be between 1 and block_size - 1 = {limit}, got {max_len}")
        return max_len

    def _strip(self, ids: list[int]) -> list[int]:
        """The ids before the first <eos> (and no padding)."""
        out = []
        for i in ids:
            if i == self.config.eos_id:
                break
            if i != self.config.pad_id:
                out.append(i)
        return out
