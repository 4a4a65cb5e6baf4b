"""Drum VAE: GrooVAE with one set of weights for reconstruction, humanize and tap2drum.

References: A. Roberts, J. Engel, C. Raffel, C. Hawthorne, D. Eck, "A Hierarchical Latent Vector
Model for Learning Long-Term Structure in Music" (MusicVAE, ICML 2018, arXiv:1803.05428);
J. Gillick, A. Roberts, J. Engel, D. Eck, D. Bamman, "Learning to Groove with Inverse Sequence
Transformations" (GrooVAE, ICML 2019, arXiv:1905.06118).

A 2-bar drum performance is x = [hits, velocities, offsets], 32 steps x (9 + 9 + 9).

1. **Input transform** T (GrooVAE's "inverse sequence transformations"): the encoder sees T(x), the
   decoder must produce x. T is one of
   0 reconstruction (identity); 1 humanize (hits only: velocities and offsets zeroed);
   2 tap2drum (at each step the loudest hit moved to one lane, the open hi-hat's, with its velocity
   and offset); 3 tap2drum with fixed velocity (as 2, velocity zeroed: timing only).
   One model learns all four: T is drawn per training window and its id is given to the encoder
   as a one-hot, so the same weights serve every mode (the id says what the input lacks).
2. **Encoder**: a bidirectional LSTM over [T(x), onehot(T)]; the final forward and backward states
   -> mu and log-variance of q(z | T(x)); z = mu + sigma * eps.
3. **Decoder**: an autoregressive LSTM stack whose initial state is tanh(Dense(z)); z, a style
   embedding and the beat/fill bit are concatenated to every input step, with the previous step's
   (hit, velocity, offset) (teacher forcing in training; its own output when free-running).
   Heads: hit logits (Bernoulli), velocity (sigmoid), offset (tanh).
4. **Loss** per window: sum over steps and classes of BCE(hit) + hit * (MSE(velocity) + MSE(offset))
   + beta * max(KL - free_bits * ln 2, 0) (MusicVAE's free bits, in bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from drumvae.kit import HUMANIZE, RECONSTRUCT, TAP, TAP_FIXED, TAP_LANE, TRANSFORM_NAMES  # noqa: F401 (re-exported)

NUM_TRANSFORMS = 4


@dataclass
class DrumVAEConfig:
    num_classes: int = 9  # drum classes (the reduced 9-class kit)
    steps: int = 32  # 2 bars of 16ths
    enc_hidden: int = 256  # BiLSTM units per direction (GrooVAE: 512)
    z_dim: int = 128  # latent size (GrooVAE: 256); room for the ~250 bits the free bits allow
    dec_hidden: int = 256  # decoder LSTM units per layer (GrooVAE: 2 x 256)
    dec_layers: int = 2
    num_styles: int = 18  # GMD's primary styles; the data's list is saved beside the weights
    style_dim: int = 8  # style embedding size (conditioning, not in GrooVAE)
    # KL below this many bits per window is free. GrooVAE: 48; MusicVAE's hi-KL 2-bar drums: 96. The KL
    # sits at the free bits, and reconstruction follows them: at 48 accuracy lagged (1,850 steps); at
    # 96 validation free-running step accuracy reached 0.68 by step 10,800; at 256 (z 128) 0.71 by 6,800.
    free_bits: float = 256.0
    beta: float = 0.2  # KL weight above the free bits (GrooVAE: max_beta 0.2, constant)
    dropout: float = 0.3  # between decoder layers (GrooVAE: keep prob. 0.3 at 4 bars); 16.9k windows overfit
    # Training only: parallel scheduled sampling (Duckworth et al. 2019). A first teacher-forced pass
    # without gradients predicts every step; each step's previous-step input is then the model's own
    # prediction with this probability, so the decoder learns to go on from its own mistakes, as it
    # must when free-running (MusicVAE's 2-bar drums used scheduled sampling too).
    sched_sampling: float = 0.3

    @property
    def step_dim(self) -> int:
        return 3 * self.num_classes

    def architecture(self) -> dict[str, int]:
        """The settings that shape the weights; the rest (dropout, the KL terms, scheduled
        sampling) are training's, and a run started from another run's weights may change them."""
        return {k: getattr(self, k) for k in ("num_classes", "steps", "enc_hidden", "z_dim", "dec_hidden",
                                              "dec_layers", "num_styles", "style_dim")}


# ---- input transforms (scriptable: the export uses these same functions) ---------------------


def transform(x: torch.Tensor, which: torch.Tensor, tap_lane: int = TAP_LANE) -> torch.Tensor:
    """T(x) per window: x [B, S, 27], which [B] long (0 reconstruct, 1 humanize, 2 tap, 3 tap fixed)."""
    n = x.shape[-1] // 3
    hits, vel, off = x[..., :n], x[..., n:2 * n], x[..., 2 * n:]
    w = which.view(-1, 1, 1)
    # humanize: hits only
    human = torch.cat([hits, torch.zeros_like(vel), torch.zeros_like(off)], -1)
    # tap: the loudest hit of each step, on one lane, with its velocity and offset
    loud = torch.argmax(vel * hits + hits * 1e-3, -1, keepdim=True)  # [B, S, 1]
    any_hit = hits.amax(-1, keepdim=True)  # [B, S, 1]
    tap_vel = torch.gather(vel, -1, loud) * any_hit
    tap_off = torch.gather(off, -1, loud) * any_hit
    lane = F.one_hot(torch.full_like(loud[..., 0], tap_lane), n).to(x.dtype)  # [B, S, n]
    tap = torch.cat([lane * any_hit, lane * tap_vel, lane * tap_off], -1)
    tap_fixed = torch.cat([lane * any_hit, torch.zeros_like(vel), lane * tap_off], -1)
    out = torch.where(w == 1, human, x)
    out = torch.where(w == 2, tap, out)
    return torch.where(w == 3, tap_fixed, out)


# ---- encoder -------------------------------------------------------------------------------


class Encoder(nn.Module):
    """BiLSTM over [T(x), onehot(T)] -> (mu, logvar) of q(z | T(x))."""

    def __init__(self, cfg: DrumVAEConfig) -> None:
        super().__init__()
        self.num_transforms: int = NUM_TRANSFORMS
        self.lstm = nn.LSTM(cfg.step_dim + NUM_TRANSFORMS, cfg.enc_hidden, batch_first=True, bidirectional=True)
        self.mu = nn.Linear(2 * cfg.enc_hidden, cfg.z_dim)
        self.logvar = nn.Linear(2 * cfg.enc_hidden, cfg.z_dim)

    def forward(self, x_in: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tid = F.one_hot(which, self.num_transforms).to(x_in.dtype)  # [B, 4]
        inp = torch.cat([x_in, tid[:, None].expand(-1, x_in.shape[1], -1)], -1)  # [B, S, 27 + 4]
        _, (h, _) = self.lstm(inp)  # h: [2, B, H] (forward, backward final states)
        hb = torch.cat([h[0], h[1]], -1)  # [B, 2H]
        return self.mu(hb), self.logvar(hb)


# ---- decoder -------------------------------------------------------------------------------


class Decoder(nn.Module):
    """LSTM stack, initial state tanh(Dense(z)); input [previous step, z, style, fill] each step."""

    def __init__(self, cfg: DrumVAEConfig) -> None:
        super().__init__()
        self.n: int = cfg.num_classes
        self.steps: int = cfg.steps
        self.layers: int = cfg.dec_layers
        self.hidden: int = cfg.dec_hidden
        self.style = nn.Embedding(cfg.num_styles, cfg.style_dim)
        self.init = nn.Linear(cfg.z_dim, 2 * cfg.dec_layers * cfg.dec_hidden)
        self.lstm = nn.LSTM(cfg.step_dim + cfg.z_dim + cfg.style_dim + 1, cfg.dec_hidden, cfg.dec_layers,
                            batch_first=True, dropout=cfg.dropout if cfg.dec_layers > 1 else 0.0)
        self.out = nn.Linear(cfg.dec_hidden, cfg.step_dim)

    def condition(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, self.style(style), fill.to(z.dtype)[:, None]], -1)  # [B, C]

    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.tanh(self.init(z)).view(z.shape[0], 2, self.layers, self.hidden)
        return s[:, 0].transpose(0, 1).contiguous(), s[:, 1].transpose(0, 1).contiguous()  # [L, B, H] each

    def heads(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        o = self.out(y)
        n = self.n
        return o[..., :n], torch.sigmoid(o[..., n:2 * n]), torch.tanh(o[..., 2 * n:])

    def forward(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, x: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher forcing: step t sees x[t-1] (zeros at t = 0). Returns [B, S, 9] x 3."""
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], 1)  # [B, S, 27]
        cond = self.condition(z, style, fill)[:, None].expand(-1, x.shape[1], -1)
        y, _ = self.lstm(torch.cat([prev, cond], -1), self.initial_state(z))
        return self.heads(y)

    def sample(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, noise: torch.Tensor,
               temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Free-running: hit = noise < sigmoid(logit / temperature) (noise 0.5: threshold 0.5);
        velocity and offset as decoded, zeroed where there is no hit. noise: [B, S, 9] in [0, 1);
        noise < 0 forces a hit and noise >= 1 forbids one (:func:`forced_hits`: humanize plays the
        input's own hits, as GrooVAE's hits-as-controls, with the model's velocity and timing).

        The LSTM's own weights, one cell at a time (the conditioning's share of the first layer's
        gates is computed once), so a live 2-bar decode costs a few small matrix products per step."""
        d = 3 * self.n
        w = self.lstm._flat_weights  # per layer: w_ih, w_hh, b_ih, b_hh
        cond = self.condition(z, style, fill)
        h0, c0 = self.initial_state(z)
        hs = [h0[i] for i in range(self.layers)]
        cs = [c0[i] for i in range(self.layers)]
        base = [w[4 * i + 2] + w[4 * i + 3] for i in range(self.layers)]
        base[0] = torch.addmm(base[0], cond, w[0][:, d:].t())  # [B, 4H]
        # transposed once, outside the loop (an ONNX export would otherwise hold one copy per step)
        wx = [w[0][:, :d].t()] + [w[4 * i].t() for i in range(1, self.layers)]
        wh = [w[4 * i + 1].t() for i in range(self.layers)]
        prev = torch.zeros(z.shape[0], d, dtype=z.dtype, device=z.device)
        logits, vels, offs = [], [], []
        for t in range(noise.shape[1]):
            x = prev
            for i in range(self.layers):
                gates = torch.addmm(torch.addmm(base[i], x, wx[i]), hs[i], wh[i])
                ig, fg, gg, og = gates.chunk(4, 1)
                cs[i] = torch.sigmoid(fg) * cs[i] + torch.sigmoid(ig) * torch.tanh(gg)
                hs[i] = torch.sigmoid(og) * torch.tanh(cs[i])
                x = hs[i]
            lg, v, o = self.heads(x)
            hit = (noise[:, t] < torch.sigmoid(lg / temperature)).to(z.dtype)
            v, o = v * hit, o * hit
            logits.append(lg)
            vels.append(v)
            offs.append(o)
            prev = torch.cat([hit, v, o], -1)
        return torch.stack(logits, 1), torch.stack(vels, 1), torch.stack(offs, 1)


def forced_hits(hits: torch.Tensor) -> torch.Tensor:
    """Decoder noise that plays exactly ``hits`` ([B, S, 9] 0/1): -1 where a hit, 2 where none."""
    return torch.where(hits > 0, torch.full_like(hits, -1.0), torch.full_like(hits, 2.0))


# ---- the VAE -------------------------------------------------------------------------------


def kl_bits(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per window, in bits. [B]"""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1) / math.log(2)


class DrumVAE(nn.Module):
    def __init__(self, cfg: DrumVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, x: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(transform(x, which), which)

    def forward(self, x: torch.Tensor, which: torch.Tensor, style: torch.Tensor, fill: torch.Tensor,
                sample: bool = True) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor,
                                              dict[str, torch.Tensor]]:
        """Teacher-forced pass: ((hit logits, velocity, offset), loss, terms). x: [B, S, 27]."""
        mu, logvar = self.encode(x, which)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        out = self.decoder(z, style, fill, self.scheduled_inputs(z, style, fill, x))
        loss, terms = self.loss(out, x, mu, logvar)
        return out, loss, terms

    def scheduled_inputs(self, z: torch.Tensor, style: torch.Tensor, fill: torch.Tensor, x: torch.Tensor
                         ) -> torch.Tensor:
        """The decoder's teacher-forcing sequence: ``x``, or in training with scheduled sampling,
        ``x`` with some steps replaced by the model's own prediction of them (its hits at threshold
        0.5, their velocities and offsets), from a teacher-forced pass without gradients."""
        p = self.cfg.sched_sampling
        if not self.training or p <= 0:
            return x
        with torch.no_grad():
            logits, vel, off = self.decoder(z, style, fill, x)
            hit = (logits > 0).to(x.dtype)
            own = torch.cat([hit, vel * hit, off * hit], -1)
            use = (torch.rand(x.shape[:2] + (1,), device=x.device) < p).to(x.dtype)
        return use * own + (1 - use) * x

    def loss(self, out: tuple[torch.Tensor, torch.Tensor, torch.Tensor], x: torch.Tensor, mu: torch.Tensor,
             logvar: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n = self.cfg.num_classes
        logits, vel, off = out
        hits, tvel, toff = x[..., :n], x[..., n:2 * n], x[..., 2 * n:]
        bce = F.binary_cross_entropy_with_logits(logits, hits, reduction="none").sum((1, 2))  # [B]
        vel_se = (hits * (vel - tvel).pow(2)).sum((1, 2))
        off_se = (hits * (off - toff).pow(2)).sum((1, 2))
        kl = kl_bits(mu, logvar)
        kl_cost = self.cfg.beta * torch.clamp(kl - self.cfg.free_bits, min=0.0) * math.log(2)  # nats
        loss = (bce + vel_se + off_se + kl_cost).mean()
        return loss, {"hits_bce": bce.mean(), "vel_se": vel_se.mean(), "off_se": off_se.mean(),
                      "kl_bits": kl.mean()}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, which: torch.Tensor, style: torch.Tensor, fill: torch.Tensor,
                    temperature: float = 1.0, noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Free-running decode from z = mu (noise None: threshold 0.5)."""
        mu, _ = self.encode(x, which)
        if noise is None:
            noise = torch.full(x.shape[:2] + (self.cfg.num_classes,), 0.5)
        return self.decoder.sample(mu, style, fill, noise, temperature)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
