"""The encoder-decoder Transformer: shapes, masks, cross-attention and decoding."""

import pytest
import torch

from lslm.attention import CausalSelfAttention, CrossAttention, SelfAttention
from lslm.errors import LslmError
from lslm.model import MLP
from lslm.seq2seq import Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2


def tiny(**kw) -> Seq2Seq:
    cfg = dict(src_vocab_size=20, tgt_vocab_size=24, block_size=12, n_layer=2, n_head=2, n_embd=32)
    cfg.update(kw)
    return Seq2Seq(Seq2SeqConfig(**cfg)).eval()


def sharpen(model: Seq2Seq) -> Seq2Seq:
    """Bigger random weights, so an untrained model has clear favourites and varied outputs."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
    return model


# Two source sentences of different lengths, each ending in <eos>, padded with <pad>.
SHORT = [5, 9, 7, EOS]
LONG = [4, 6, 8, 10, 12, 14, 16, EOS]


def batch_of(*rows: list[int]) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows])


def test_config_is_checked():
    with pytest.raises(LslmError, match="src_vocab_size"):
        Seq2SeqConfig(src_vocab_size=0)
    with pytest.raises(LslmError, match="divisible by n_head"):
        Seq2SeqConfig(n_embd=30, n_head=4)
    with pytest.raises(LslmError, match="gelu_approx"):
        Seq2SeqConfig(gelu_approx="fast")


def test_built_from_the_library_parts():
    model = tiny()
    enc, dec = model.encoder[0], model.decoder[0]
    assert type(enc.attn) is SelfAttention and not enc.attn.causal
    assert isinstance(dec.self_attn, CausalSelfAttention) and dec.self_attn.causal
    assert isinstance(dec.cross_attn, CrossAttention) and isinstance(enc.mlp, MLP)
    assert model.lm_head.weight is model.tgt_wte.weight  # tied


def test_shapes_loss_and_gradients():
    model = tiny().train()
    src = batch_of(SHORT, LONG)
    tgt_in = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, 9, PAD]])
    targets = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, PAD]])
    logits, loss = model(src, tgt_in, targets=targets)
    assert logits.shape == (2, 4, 24)
    assert abs(loss.item() - torch.log(torch.tensor(24.0)).item()) < 0.3  # untrained: about uniform
    loss.backward()
    assert model.src_wte.weight.grad.abs().sum() > 0  # the loss reaches the encoder...
    assert model.decoder[0].cross_attn.q_proj.weight.grad.abs().sum() > 0  # ...through cross-attention


def test_loss_skips_padded_targets():
    model = tiny()
    src = batch_of(SHORT, LONG)
    tgt_in = torch.tensor([[BOS, 5, 6], [BOS, 8, PAD]])
    targets = torch.tensor([[5, 6, EOS], [8, EOS, PAD]])
    loss = model(src, tgt_in, targets=targets)[1]
    logits = model(src, tgt_in)[0]
    real = targets != PAD
    by_hand = torch.nn.functional.cross_entropy(logits[real], targets[real])
    assert torch.allclose(loss, by_hand)


def test_padding_does_not_change_a_sentence():
    """The short sentence gives the same logits and translations alone and padded in a batch."""
    model = sharpen(tiny())
    alone = torch.tensor([SHORT])
    batched = batch_of(LONG, SHORT, LONG[:5] + [EOS])
    tgt_in = torch.tensor([[BOS, 3, 7, 11]])
    logits_alone = model(alone, tgt_in)[0]
    logits_batched = model(batched, tgt_in.expand(3, -1))[0][1:2]
    assert torch.allclose(logits_alone, logits_batched, atol=1e-5)
    assert model.greedy_decode(alone)[0] == model.greedy_decode(batched)[1]
    assert model.beam_search(alone, beam_size=3)[0] == model.beam_search(batched, beam_size=3)[1]
    # Without the mask the padding would leak in: attending to it changes the answer.
    memory_unmasked = model.encode(batched, torch.ones_like(batched, dtype=torch.bool))
    assert not torch.allclose(memory_unmasked[1, :4], model.encode(alone)[0], atol=1e-3)


def test_encoder_looks_both_ways_decoder_only_back():
    model = sharpen(tiny())
    src = torch.tensor([[5, 9, 7, EOS]])
    changed = torch.tensor([[5, 9, 8, EOS]])
    # The encoder is bidirectional: a later source word changes the first word's vector.
    assert not torch.allclose(model.encode(src)[0, 0], model.encode(changed)[0, 0])
    # The decoder is causal: a later target word leaves earlier predictions alone.
    a = model(src, torch.tensor([[BOS, 3, 4, 5]]))[0]
    b = model(src, torch.tensor([[BOS, 3, 4, 9]]))[0]
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-6) and not torch.allclose(a[:, 3], b[:, 3])


def test_cross_attention_weights():
    model = tiny()
    src = batch_of(LONG, SHORT)
    tgt_in = torch.tensor([[BOS, 3, 4], [BOS, 5, 6]])
    mask = model.source_mask(src)
    logits, attention = model.decode(tgt_in, model.encode(src, mask), mask, return_attention=True)
    assert model(src, tgt_in)[1] is None and len(attention) == model.config.n_layer
    for w in attention:
        assert w.shape == (2, 2, 3, len(LONG))  # (batch, heads, target, source)
        assert torch.allclose(w.sum(-1), torch.ones(2, 2, 3))
        assert (w[1, :, :, len(SHORT):] == 0).all()  # no weight on padding
    assert torch.allclose(logits, model(src, tgt_in)[0], atol=1e-5)  # same answer either way


def test_beam_of_one_is_greedy():
    model = sharpen(tiny())
    src = batch_of(SHORT, LONG, [3, 3, EOS], [19, 18, 17, 16, 15, EOS])
    greedy = model.greedy_decode(src)
    assert model.beam_search(src, beam_size=1) == greedy
    assert len({tuple(g) for g in greedy}) > 1  # the outputs are not all the same
    for out in greedy + model.beam_search(src, beam_size=4):
        assert len(out) <= model.config.block_size - 1 and EOS not in out and PAD not in out


class Trap(Seq2Seq):
    """A decoder with fixed next-word probabilities, to test the search alone: the first
    word is A (0.4) or B (0.6); after A comes C for certain, after B comes D (0.55) or E
    (0.45); then <eos>. The likeliest translation, A C (0.4), starts with the less likely
    word: B D has 0.6 x 0.55 = 0.33."""

    A, B, C, D, E = 5, 6, 7, 8, 9
    TABLE = {(): {A: 0.4, B: 0.6}, (A,): {C: 1.0}, (B,): {D: 0.55, E: 0.45}}

    def decode(self, tgt_in, memory, src_mask, return_attention=False):
        logits = torch.full((*tgt_in.shape, self.config.tgt_vocab_size), -1e9)
        for b, row in enumerate(tgt_in.tolist()):
            for t in range(len(row)):
                for word, p in self.TABLE.get(tuple(row[1 : t + 1]), {EOS: 1.0}).items():
                    logits[b, t, word] = torch.tensor(p).log()
        return logits, None


def test_beam_search_finds_the_likeliest_translation_that_greedy_misses():
    model = Trap(Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=24, block_size=12, n_layer=1, n_head=2, n_embd=16))
    src = batch_of(SHORT, LONG)
    A, B, C, D = Trap.A, Trap.B, Trap.C, Trap.D
    assert model.greedy_decode(src) == [[B, D], [B, D]]  # the likelier first word, then stuck with it
    assert model.beam_search(src, beam_size=2) == [[A, C], [A, C]]
    logprob = model.sequence_logprob(src, [[A, C], [B, D]])
    assert torch.allclose(logprob.exp(), torch.tensor([0.4, 0.33]))


def test_decoding_leaves_training_mode_alone():
    model = tiny().train()
    model.greedy_decode(torch.tensor([SHORT]))
    model.beam_search(torch.tensor([SHORT]), beam_size=2)
    assert model.training


def test_bad_inputs_are_explained():
    model = tiny()
    with pytest.raises(LslmError, match="block_size is 12"):
        model(torch.full((1, 13), 5), torch.tensor([[BOS]]))
    with pytest.raises(LslmError, match="all padding"):
        model(batch_of(SHORT, [PAD]), torch.tensor([[BOS], [BOS]]))
    with pytest.raises(LslmError, match="beam_size"):
        model.beam_search(torch.tensor([SHORT]), beam_size=0)
    with pytest.raises(LslmError, match="max_len"):
        model.greedy_decode(torch.tensor([SHORT]), max_len=12)


def test_sequence_logprob_adds_up_the_steps():
    model = sharpen(tiny())
    src = batch_of(SHORT, LONG)
    outputs = [[5, 6], [7, 8, 9]]
    got = model.sequence_logprob(src, outputs)
    for b, out in enumerate(outputs):
        tgt_in = torch.tensor([[BOS, *out]])
        logp = torch.log_softmax(model(src[b : b + 1], tgt_in)[0][0], dim=-1)
        by_hand = sum(logp[i, tok].item() for i, tok in enumerate(out + [EOS]))
        assert abs(got[b].item() - by_hand) < 1e-4


def test_forward_is_logits_and_loss_and_a_seed_leaves_the_global_rng_alone():
    config = Seq2SeqConfig(src_vocab_size=20, tgt_vocab_size=24, block_size=12, n_layer=2, n_head=2, n_embd=32)
    before = torch.random.get_rng_state()
    a, b, c = Seq2Seq(config, seed=3), Seq2Seq(config, seed=3), Seq2Seq(config, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    # A seed gives the weights the global generator would give after manual_seed(seed).
    torch.manual_seed(3)
    unseeded = Seq2Seq(config)
    torch.random.set_rng_state(before)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), unseeded.state_dict().values()))
    assert not torch.equal(a.decoder[1].cross_attn.kv_proj.weight, c.decoder[1].cross_attn.kv_proj.weight)
    assert a.lm_head.weight is a.tgt_wte.weight
    with pytest.raises(TypeError):
        a(batch_of(SHORT), torch.tensor([[BOS, 5]]), return_attention=True)


def test_blocks_are_residual_sublayers():
    """Each decoder block is x + sublayer(norm(x)) three times: self-attention,
    cross-attention, MLP (dropout is off in eval mode)."""
    model = sharpen(tiny())
    block = model.decoder[0]
    src = batch_of(SHORT, LONG)
    mask = model.source_mask(src)
    memory = model.encode(src, mask)
    x = torch.randn(2, 4, 32)
    h = x + block.self_attn(block.ln_1(x))[0]
    a, weights = block.cross_attn(block.ln_2(h), memory, memory_mask=mask, return_weights=True)
    h = h + a
    expected = h + block.mlp(block.ln_3(h))
    got, got_weights = block(x, memory, mask, return_weights=True)
    assert torch.allclose(got, expected, atol=1e-6) and torch.equal(got_weights, weights)
    enc = model.encoder[0]
    h = x + enc.attn(enc.ln_1(x))[0]
    assert torch.allclose(enc(x, torch.ones(2, 4, dtype=torch.bool)), h + enc.mlp(enc.ln_2(h)), atol=1e-6)
