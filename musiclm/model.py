"""Music Transformer: a decoder-only transformer with relative position attention.

References:
1) Huang et al., "Music Transformer: Generating Music with Long-Term Structure", ICLR 2019
   (arXiv 1809.04281): relative global attention and its memory-efficient "skewing" (section 3.4).
2) Shaw, Uszkoreit & Vaswani, "Self-Attention with Relative Position Representations", NAACL 2018:
   the relative logits S_rel = Q E_r^T added to Q K^T before the softmax.
3) Vaswani et al., "Attention Is All You Need", 2017: the baseline with sinusoidal absolute
   positions (``position="absolute"``), and the layer layout (pre-norm as in Tensor2Tensor).
4) karpathy/nanoGPT ``model.py``: the layout of this file.

The model sees at most ``max_len`` (L, the training length) tokens: token i attends to tokens
i-L+1 .. i. Relative embeddings exist for distances 0..L-1 (one table per layer and head). For a
sequence longer than L the uncached forward applies that band mask, and the cached ``step`` keeps
the last L-1 keys and values (a sliding window): both compute the same thing.

Incremental decoding (``step``) reads a key/value cache, a ring of L-1 slots written in place (the
newest token overwrites the oldest): no copy of the past per token, so a token costs the same at
position 10 as at 10,000. The relative term of the new query is q_t . E_r[distance] for each
slot's distance, gathered directly (no skew needed for one row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class MusicTransformerConfig:
    vocab_size: int = 391  # performance encoding (tokenizer.PERFORMANCE_VOCAB); JSB uses 131
    max_len: int = 512  # training length L = the context window; relative distances 0..L-1
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 256
    d_ff: int = 1024  # the feed-forward width (the paper's "ff")
    dropout: float = 0.1  # residual, attention and embedding dropout (the paper: 0.1)
    position: str = "relative"  # "relative" (the paper) or "absolute" (sinusoids: the baseline)
    pad_id: int = 0  # targets equal to this are not scored


# ---- attention -------------------------------------------------------------------------------


def skew(rel: torch.Tensor) -> torch.Tensor:
    """The paper's skewing: ``rel[..., i, c]`` holds q_i . E_r for relative distance c - (T-1)
    (columns -(T-1)..0); returns S_rel with ``S_rel[..., i, j] = rel[..., i, T-1-i+j]`` (valid
    for j <= i; the upper triangle is masked anyway). Pad one column on the left, reshape, drop
    the first row: O(T) extra memory instead of Shaw's O(T^2 D) gather."""
    b, h, t, _ = rel.shape
    x = F.pad(rel, (1, 0))  # (B, H, T, T+1)
    x = x.reshape(b, h, t + 1, t)  # (B, H, T+1, T)
    return x[:, :, 1:, :]  # (B, H, T, T)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, relative (Huang et al.) or plain, within a window of L."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        assert cfg.d_model % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.head_dim = cfg.d_model // cfg.n_head
        self.max_len = cfg.max_len
        self.relative = cfg.position == "relative"
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        # E_r[h, L-1-d] is the embedding of distance d (key d steps before the query): index L-1
        # is distance 0, as the columns of Q E_r^T run -(L-1)..0 in the paper.
        n_rel = cfg.max_len if self.relative else 0
        self.rel = nn.Parameter(torch.randn(cfg.n_head, n_rel, self.head_dim) * 0.02)
        self.attn_drop = nn.Dropout(cfg.dropout)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, Dh)
        k = k.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._heads(x)
        att = q @ k.transpose(-2, -1)  # (B, H, T, T)
        if self.relative:
            if t <= self.max_len:
                e = self.rel[:, self.max_len - t:]  # (H, T, Dh): distances T-1..0
            else:  # distances >= L are outside the window (masked): any value will do
                e = torch.cat([self.rel.new_zeros(self.n_head, t - self.max_len, self.head_dim), self.rel], 1)
            att = att + skew(q @ e.transpose(-2, -1).unsqueeze(0))  # Q E_r^T: (B, H, T, T)
        att = att * (1.0 / math.sqrt(self.head_dim))
        i = torch.arange(t, device=x.device)
        dist = i.view(-1, 1) - i.view(1, -1)  # query minus key
        allowed = (dist >= 0) & (dist < self.max_len)  # causal, within the window
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        y = self.attn_drop(att) @ v  # (B, H, T, Dh)
        y = y.transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.proj(y))

    def step(self, x: torch.Tensor, distance: torch.Tensor, heard: torch.Tensor, k_cache: torch.Tensor,
             v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new token per row, against a ring of the last L-1 keys and values. x: (B, 1, C);
        caches: (B, H, L-1, Dh), slot s holding the token ``distance[s]`` (1..L-1) steps back;
        ``heard[s]``: that token exists (the stream is long enough). Returns the output and this
        token's key and value (B, H, 1, Dh), for the caller to write into the ring."""
        b, _, c = x.shape
        q, k, v = self._heads(x)  # (B, H, 1, Dh)
        past = q @ k_cache.transpose(-2, -1)  # (B, H, 1, L-1), in slot order
        now = (q * k).sum(-1, keepdim=True)  # (B, H, 1, 1): the token attends to itself
        if self.relative:
            rel = q @ self.rel.transpose(-2, -1).unsqueeze(0)  # (B, H, 1, L): distances L-1..0
            past = past + rel.index_select(3, self.max_len - 1 - distance)
            now = now + rel[:, :, :, self.max_len - 1:]
        past = past.masked_fill(~heard, float("-inf"))
        att = (torch.cat([past, now], 3) * (1.0 / math.sqrt(self.head_dim))).softmax(-1)
        y = att[:, :, :, :-1] @ v_cache + att[:, :, :, -1:] * v  # (B, H, 1, Dh)
        return self.proj(y.transpose(1, 2).reshape(b, 1, c)), k, v


# ---- feed-forward and block ------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff)
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.relu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))

    def step(self, x: torch.Tensor, distance: torch.Tensor, heard: torch.Tensor, k_cache: torch.Tensor,
             v_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, k, v = self.attn.step(self.ln1(x), distance, heard, k_cache, v_cache)
        x = x + a
        return x + self.mlp(self.ln2(x)), k, v


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s timing signal, (length, dim)."""
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


# ---- the model -------------------------------------------------------------------------------


def grow_context(state: dict[str, torch.Tensor], max_len: int) -> dict[str, torch.Tensor]:
    """A model's weights for a longer context L' >= L (a new run that starts from a shorter one):
    each layer's relative embeddings gain distances L..L'-1, started at the farthest one learned
    (L-1); every other weight is unchanged (absolute sinusoids are not weights). The grown model
    gives the same logits as the original on any sequence of at most L tokens."""
    out = dict(state)
    for name, rel in state.items():
        if not name.endswith("attn.rel") or rel.shape[1] in (0, max_len):
            continue
        old = rel.shape[1]  # index L-1-d holds distance d: the far distances come first
        if max_len < old:
            raise ValueError(f"cannot shrink the context from {old} to {max_len} tokens")
        out[name] = torch.cat([rel[:, :1].expand(-1, max_len - old, -1), rel], 1).contiguous()
    return out


class MusicTransformer(nn.Module):
    """Token embedding (+ sinusoids when absolute), N blocks, final norm, linear to logits."""

    def __init__(self, cfg: MusicTransformerConfig) -> None:
        super().__init__()
        if cfg.position not in ("relative", "absolute"):
            raise ValueError(f"position must be 'relative' or 'absolute', not {cfg.position!r}")
        self.cfg = cfg
        self.absolute = cfg.position == "absolute"
        self.max_len = cfg.max_len
        self.n_layer = cfg.n_layer
        self.n_head = cfg.n_head
        self.head_dim = cfg.d_model // cfg.n_head
        self.pad_id = cfg.pad_id
        self.embed_scale = math.sqrt(cfg.d_model)
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.register_buffer("pos", sinusoids(cfg.max_len, cfg.d_model) if self.absolute
                             else torch.zeros(0, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _embed(self, idx: torch.Tensor, start: int) -> torch.Tensor:
        x = self.tok(idx) * self.embed_scale  # (B, T, C)
        if self.absolute:
            t = idx.shape[1]
            if start + t > self.max_len:
                raise ValueError("absolute positions exist only up to the training length")
            x = x + self.pos[start:start + t]
        return x

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) tokens -> logits (B, T, V), and the mean NLL (nats) over targets that are
        not PAD when ``targets`` (B, T) is given. T may exceed L (relative only): band mask."""
        x = self.drop(self._embed(idx, 0))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        loss: torch.Tensor | None = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=self.pad_id)
        return logits, loss

    @torch.jit.export
    def empty_cache(self, batch: int) -> torch.Tensor:
        """The cache before the first token: a ring of L-1 slots, (layers, 2, B, H, L-1, Dh)."""
        return torch.zeros(self.n_layer, 2, batch, self.n_head, self.max_len - 1, self.head_dim)

    @torch.jit.export
    def step(self, token: torch.Tensor, position: int, kv_cache: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row -> (logits (B, V), the cache). token: (B,) longs at stream position
        ``position`` (0-based: the number of tokens the cache has heard; the absolute model needs
        it < L); kv_cache: from ``empty_cache`` or the previous step. The new key and value are
        written into ``kv_cache`` in place (slot ``position % (L-1)``, the oldest token's) and the
        same tensor is returned: copy it first to branch (e.g. to try a continuation)."""
        x = self._embed(token.unsqueeze(1), position)
        return self.step_embedded(x, torch.tensor(position), kv_cache, True)

    def step_embedded(self, x: torch.Tensor, position: torch.Tensor, kv_cache: torch.Tensor, in_place: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``step`` after the embedding: x (B, 1, C) at ``position`` (a 0-d long tensor) -> (logits
        (B, V), the cache with this token written, in place or as a new tensor)."""
        ring = kv_cache.shape[4]  # L-1
        slot = torch.arange(ring)
        distance = torch.remainder(position - 1 - slot, ring) + 1  # steps back to the token in each slot
        heard = distance <= position
        ks: list[torch.Tensor] = []
        vs: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x, k, v = block.step(x, distance, heard, kv_cache[i, 0], kv_cache[i, 1])
            ks.append(k)
            vs.append(v)
        logits = self.head(self.ln_f(x))[:, 0]  # (B, V)
        new = torch.stack([torch.stack(ks), torch.stack(vs)], 1)  # (layers, 2, B, H, 1, Dh)
        at = torch.remainder(position, ring).reshape(1)
        if in_place:
            return logits, kv_cache.index_copy_(4, at, new)
        return logits, kv_cache.index_copy(4, at, new)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n: int, temperature: float = 1.0, top_k: int = 0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample ``n`` tokens after ``prompt`` (B, T) with the cache: temperature, optional top-k."""
        cache = self.empty_cache(prompt.shape[0])
        logits = torch.zeros(0)
        for pos in range(prompt.shape[1]):
            logits, cache = self.step(prompt[:, pos], pos, cache)
        out = [prompt]
        pos = prompt.shape[1]
        for _ in range(n):
            z = logits / max(temperature, 1e-6)
            if top_k:
                kth = torch.topk(z, top_k, -1).values[:, -1:]
                z = z.masked_fill(z < kth, float("-inf"))
            tok = torch.multinomial(z.softmax(-1), 1, generator=generator)  # (B, 1)
            out.append(tok)
            logits, cache = self.step(tok[:, 0], pos, cache)
            pos += 1
        return torch.cat(out, 1)
