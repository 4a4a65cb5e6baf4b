"""Music Transformer: skewed relative logits equal the naive sum, the cached step equals the
uncached forward (within and past the window), and the exported TorchScript step matches."""

import pytest
import torch

from musiclm.model import MusicTransformer, MusicTransformerConfig, grow_context, skew


def tiny(position="relative", n_layer=2, max_len=12, dropout=0.0):
    torch.manual_seed(0)
    cfg = MusicTransformerConfig(vocab_size=40, max_len=max_len, n_layer=n_layer, n_head=2, d_model=16,
                                 d_ff=32, dropout=dropout, position=position)
    m = MusicTransformer(cfg).eval()
    with torch.no_grad():  # random, larger weights: relative terms matter
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


def test_skewed_relative_logits_equal_the_naive_computation():
    torch.manual_seed(1)
    b, h, t, d = 2, 3, 9, 4
    q, e = torch.randn(b, h, t, d), torch.randn(h, t, d)  # e[c]: distance c - (t - 1)
    fast = skew(q @ e.transpose(-2, -1).unsqueeze(0))
    for i in range(t):
        for j in range(i + 1):
            naive = (q[:, :, i] * e[:, t - 1 - (i - j)]).sum(-1)  # S_rel[i, j] = q_i . E_r[j - i]
            torch.testing.assert_close(fast[:, :, i, j], naive)


def test_relative_attention_is_naive_attention_with_relative_terms():
    m = tiny(n_layer=1)
    attn = m.blocks[0].attn
    x = torch.randn(1, 7, 16)
    b, t, c = x.shape
    q, k, v = attn._heads(x)
    ref = torch.zeros(b, attn.n_head, t, attn.head_dim)
    for i in range(t):
        s = torch.stack([(q[:, :, i] * (k[:, :, j] + attn.rel[:, attn.max_len - 1 - (i - j)])).sum(-1)
                         for j in range(i + 1)], -1) / attn.head_dim ** 0.5
        ref[:, :, i] = (s.softmax(-1).unsqueeze(-1) * v[:, :, :i + 1]).sum(2)
    expected = attn.proj(ref.transpose(1, 2).reshape(b, t, c))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def run_cached(m, idx):
    cache = m.empty_cache(idx.shape[0])
    out = []
    for pos in range(idx.shape[1]):
        logits, cache = m.step(idx[:, pos], pos, cache)
        out.append(logits)
    return torch.stack(out, 1), cache


@pytest.mark.parametrize("position", ["relative", "absolute"])
def test_cached_equals_uncached_within_the_window(position):
    m = tiny(position)
    idx = torch.randint(0, 40, (3, 12))
    with torch.no_grad():
        full, _ = m(idx)
        cached, cache = run_cached(m, idx)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=0)
    assert cache.shape == (2, 2, 3, 2, 11, 8)  # (layers, k/v, B, H, L-1, Dh)


def test_cached_past_the_window_equals_the_band_masked_forward():
    m = tiny("relative", max_len=8)
    idx = torch.randint(0, 40, (2, 30))
    with torch.no_grad():
        full, _ = m(idx)  # each token attends to the previous L-1 at every layer
        cached, cache = run_cached(m, idx)
    torch.testing.assert_close(cached, full, atol=1e-4, rtol=0)
    assert cache.shape[4] == 7  # the cache never grows past L-1


def test_one_layer_past_the_window_equals_uncached_on_the_last_L_tokens():
    # With one layer the sliding window is exactly "run the last L tokens again"; deeper models
    # differ from that (their cached keys saw context before the window), and equal the band mask.
    m = tiny("relative", n_layer=1, max_len=8)
    idx = torch.randint(0, 40, (2, 25))
    with torch.no_grad():
        cached, _ = run_cached(m, idx)
        for t in range(8, 25):
            last, _ = m(idx[:, t - 7:t + 1])
            torch.testing.assert_close(cached[:, t], last[:, -1], atol=1e-4, rtol=0)


def test_the_step_writes_its_ring_in_place_and_a_copy_branches():
    m = tiny("relative", max_len=8)  # a ring of 7 slots
    idx = torch.randint(0, 40, (1, 16))
    with torch.no_grad():
        want, _ = run_cached(m, idx)
        _, cache = run_cached(m, idx[:, :13])
        branch = cache.clone()
        for pos in range(13, 16):  # a branch (an answer) from a copy ...
            _, branch = m.step(torch.randint(0, 40, (1,)), pos, branch)
        before = cache.clone()
        got, same = m.step(idx[:, 13], 13, cache)  # ... leaves the heard cache as it was
        assert same.data_ptr() == cache.data_ptr()  # written in place: no copy of the past
        changed = (same != before).flatten(0, 3).any(0).any(-1)  # per slot
        assert changed.tolist() == [i == 13 % 7 for i in range(7)]  # the oldest token's slot only
        torch.testing.assert_close(got, want[:, 13], atol=1e-4, rtol=0)
        torch.testing.assert_close(m.step(idx[:, 14], 14, cache)[0], want[:, 14], atol=1e-4, rtol=0)


@pytest.mark.parametrize("position", ["relative", "absolute"])
def test_a_grown_context_keeps_the_short_model_and_learns_new_distances(position):
    torch.manual_seed(0)
    short = tiny(position, max_len=12)
    long = tiny(position, max_len=20)
    long.load_state_dict(grow_context(short.state_dict(), 20))  # strict: every weight accounted for
    idx = torch.randint(3, 40, (2, 12))
    torch.testing.assert_close(long(idx)[0], short(idx)[0], rtol=0, atol=1e-6)
    if position == "relative":  # the new far distances start as the farthest learned, and train apart
        rel = long.blocks[0].attn.rel
        assert torch.equal(rel[:, :8], short.blocks[0].attn.rel[:, :1].expand(-1, 8, -1))
        _, loss = long(torch.randint(3, 40, (2, 20)), torch.randint(3, 40, (2, 20)))
        loss.backward()
        assert rel.grad[:, :8].abs().sum() > 0
        with pytest.raises(ValueError, match="shrink"):
            grow_context(long.state_dict(), 12)


def test_absolute_step_refuses_positions_past_the_training_length():
    m = tiny("absolute", max_len=4)
    _, cache = run_cached(m, torch.randint(0, 40, (1, 4)))
    with pytest.raises(Exception):
        m.step(torch.tensor([1]), 4, cache)


def test_loss_ignores_pad_and_dropout_is_off_in_eval():
    m = tiny(dropout=0.5)
    idx = torch.randint(3, 40, (2, 10))
    tgt = idx.clone()
    tgt[:, 5:] = 0
    logits, loss = m(idx, tgt)
    ref = torch.nn.functional.cross_entropy(logits[:, :5].reshape(-1, 40), tgt[:, :5].reshape(-1))
    torch.testing.assert_close(loss, ref)
    a, _ = m(idx)
    b, _ = m(idx)
    torch.testing.assert_close(a, b)


def test_generate_uses_the_cache_and_returns_prompt_plus_tokens():
    m = tiny()
    out = m.generate(torch.tensor([[1, 5, 6]]), 20, temperature=1.0, top_k=5,
                     generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 23) and out[0, :3].tolist() == [1, 5, 6]


@pytest.mark.parametrize("position", ["relative", "absolute"])
def test_export_parity(tmp_path, position):
    from daemon import runtime
    from musiclm.export import export_model

    m = tiny(position)
    path = export_model(m, tmp_path / "step.pt", {"name": "test"})
    loaded = runtime.load_torchscript(path)
    idx = torch.randint(0, 40, (1, 12))
    with torch.no_grad():
        full, _ = m(idx)
        cache = loaded.empty_cache(1)
        for pos in range(12):
            logits, cache = loaded(idx[:, pos], pos, cache)
            torch.testing.assert_close(logits, full[:, pos], atol=1e-4, rtol=0)
    assert loaded.max_len == 12 and loaded.vocab_size == 40
