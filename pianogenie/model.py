"""Piano Genie: an 8-button interface to the 88 piano keys, learned as a discrete autoencoder.

References:
1) C. Donahue, I. Simon, S. Dieleman, "Piano Genie", IUI 2019, arXiv:1810.05246 (the method).
2) C. Donahue's PyTorch re-implementation of the paper, Magenta 2021 (the loss written as here).

A performance is a sequence of notes: key k_i in 0..87 and delta-time d_i (time since the previous
onset, 33 buckets of 32 ms). The model is an autoencoder whose bottleneck is the button a
musician would press:

    encoder   (k_i, d_i)_i  --BiLSTM-->  e_i in R             one real number per note
    IQAE      e_i  -->  b_i = round((clip(e_i) + 1) / 2 * 7)   8 levels, straight-through gradient
    decoder   (b_i, k_{i-1}, d_i)  --LSTM-->  P(k_i)           a causal language model over keys

At play time only the decoder runs: the musician supplies b_i and, by pressing, d_i. The loss
is the reconstruction cross-entropy plus two penalties on the encoder's real output e:
the range penalty keeps e inside [-1, 1], where the quantizer has levels, and the contour
penalty asks that e move the way the pitch moves, so that higher buttons mean higher notes:

    L = CE(k, decoder) + mean(max(|e| - 1, 0)^2) + mean(max(1 - dk * de, 0)^2)

The paper's baseline is the same decoder with no button input: a plain language model over
(k_{i-1}, d_i), which the button should beat by a wide margin in perplexity. Every model can also
be trained without the time input (``time_input = False``: no d_i into encoder or decoder), the
paper's rows without "+ΔT".

The paper's other bottleneck, a VQ-VAE (van den Oord et al. 2017; magenta's ``StpVq`` configs),
is an option (``bottleneck = "vq"``): the encoder emits a 64-d vector per note, the nearest of 8
learned code vectors is the button (both l2-normalized, see ``VectorQuantizer``), and the decoder
sees that code vector. Its loss replaces both
penalties with the VQ-VAE's codebook and commitment terms:

    L = CE(k, decoder) + mean((sg(e) - c)^2) + commitment * mean((e - sg(c))^2)

Nothing asks the codes to follow pitch, so the paper found it ignores contour (violations 36 %);
here the codes are numbered by the mean pitch they play (:func:`sort_codes_by_pitch`), so button 0
is the code that plays lowest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class PianoGenieConfig:
    num_keys: int = 88  # A0..C8
    num_buttons: int = 8  # bottleneck levels; 0 gives the no-button baseline (decoder only)
    num_dt: int = 33  # delta-time buckets at 31.25 Hz; the last one means ">= 1.024 s"
    rnn_dim: int = 128  # every dense layer and LSTM has this width, as in the paper
    rnn_layers: int = 2
    range_weight: float = 1.0  # the paper weights both penalties 1.0 next to the cross-entropy
    contour_weight: float = 1.0
    bottleneck: str = "iqae"  # "iqae" (the paper's model) or "vq" (the paper's VQ-VAE row)
    code_dim: int = 64  # VQ: size of a code vector (magenta's StpVq: 8 codes x 64)
    commitment: float = 0.25  # VQ: weight of the commitment term (magenta, sonnet: 0.25)
    time_input: bool = True  # the paper's "+ΔT" rows: delta-time into the encoder and the decoder

    def __post_init__(self) -> None:
        if self.bottleneck not in ("iqae", "vq"):
            raise ValueError(f"bottleneck must be 'iqae' or 'vq', not {self.bottleneck!r}")

    @property
    def baseline(self) -> bool:
        return self.num_buttons == 0

    @property
    def vq(self) -> bool:
        return self.bottleneck == "vq" and not self.baseline

    @property
    def button_dim(self) -> int:
        """Width of the button's input to the decoder: 0 (baseline), 1 (IQAE level), code_dim (VQ)."""
        return 0 if self.baseline else (self.code_dim if self.vq else 1)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- encoder ------------------------------------------------------------------------------


class Encoder(nn.Module):
    """(key, delta-time) one-hots -> dense -> bidirectional LSTM -> one real number per note
    ([B, T]), or, for the VQ-VAE, one ``code_dim`` vector per note ([B, T, D])."""

    def __init__(self, cfg: PianoGenieConfig) -> None:
        super().__init__()
        self.num_keys, self.num_dt = cfg.num_keys, cfg.num_dt
        self.vector: bool = cfg.vq
        self.time_input: bool = cfg.time_input
        self.input = nn.Linear(cfg.num_keys + (cfg.num_dt if cfg.time_input else 0), cfg.rnn_dim)
        self.lstm = nn.LSTM(cfg.rnn_dim, cfg.rnn_dim, cfg.rnn_layers, batch_first=True,
                            bidirectional=True)
        self.output = nn.Linear(2 * cfg.rnn_dim, cfg.button_dim)

    def forward(self, keys: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        x = F.one_hot(keys, self.num_keys).float()
        if self.time_input:
            x = torch.cat([x, F.one_hot(dt, self.num_dt).float()], -1)
        x = self.input(x)  # [B, T, H]
        x, _ = self.lstm(x)  # [B, T, 2H]
        x = self.output(x)  # [B, T, 1 or D]
        return x if self.vector else x.squeeze(-1)


# ---- IQAE bottleneck ----------------------------------------------------------------------


class IntegerQuantizer(nn.Module):
    """Round a real number in [-1, 1] to one of ``n`` evenly spaced levels (the buttons).

    Forward: the level. Backward: the identity (straight-through), so the encoder learns through
    the rounding. Values outside [-1, 1] clip to the end buttons; the range penalty pulls them in.
    """

    def __init__(self, num_levels: int) -> None:
        super().__init__()
        self.num_levels = num_levels

    def to_buttons(self, e: torch.Tensor) -> torch.Tensor:
        x = (e.clamp(-1.0, 1.0) + 1.0) / 2.0 * (self.num_levels - 1)
        return torch.round(x).long()  # [...] in 0..n-1

    def to_real(self, buttons: torch.Tensor) -> torch.Tensor:
        return buttons.float() / (self.num_levels - 1) * 2.0 - 1.0

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        q = self.to_real(self.to_buttons(e))
        return e + (q - e).detach()  # the value of q, the gradient of e

    def table(self) -> torch.Tensor:
        """The decoder's input for each button: [n, 1] levels."""
        return self.to_real(torch.arange(self.num_levels)).unsqueeze(-1)


# ---- VQ-VAE bottleneck --------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """The nearest of ``num_codes`` learned vectors (the buttons); straight-through in training.

    Encoder outputs and codes are compared on the unit sphere (l2-normalized, as Yu et al. 2021's
    improved VQGAN): trained with plain vectors, the encoder's outputs and the codes chasing them
    grew without bound here (norm 18 by step 2,000, the codebook term rising with it, validation
    cross-entropy 0.5 nats behind the IQAE's); normalized, the decoder's input stays bounded."""

    def __init__(self, num_codes: int, dim: int) -> None:
        super().__init__()
        self.num_levels = num_codes
        self.codebook = nn.Parameter(torch.randn(num_codes, dim))

    def codes(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1)

    def to_buttons(self, e: torch.Tensor) -> torch.Tensor:
        return (F.normalize(e, dim=-1) @ self.codes().t()).argmax(-1)  # nearest on the sphere

    def to_real(self, buttons: torch.Tensor) -> torch.Tensor:
        return self.codes()[buttons]

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        e = F.normalize(e, dim=-1)
        q = self.to_real(self.to_buttons(e))
        return e + (q - e).detach()

    @torch.no_grad()
    def restart_unused(self, e: torch.Tensor) -> int:
        """Move each code that no note of the batch ``e`` [..., D] chose onto a random one of the
        batch's encoder outputs (a dead code otherwise stays dead: with 8 codes, the buttons would
        shrink). Returns how many moved; uses torch's RNG, which a checkpoint keeps."""
        flat = F.normalize(e.reshape(-1, e.shape[-1]), dim=-1)
        used = torch.bincount(self.to_buttons(flat), minlength=self.num_levels) > 0
        dead = (~used).nonzero().flatten()
        if len(dead):
            pick = torch.randint(0, len(flat), (len(dead),), device=flat.device)
            self.codebook.data[dead] = flat[pick]
        return len(dead)

    def losses(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codebook term: codes move to the encoder's outputs, commitment term: the reverse)."""
        e = F.normalize(e, dim=-1)
        q = self.to_real(self.to_buttons(e))
        return F.mse_loss(q, e.detach()), F.mse_loss(e, q.detach())

    def table(self) -> torch.Tensor:
        return self.codes().detach().clone()  # [k, D]


# ---- decoder ------------------------------------------------------------------------------


class Decoder(nn.Module):
    """(button, previous key, delta-time) -> dense -> LSTM -> logits over the 88 keys.

    The previous key of the first note is a start symbol (index ``num_keys``). The button enters
    as a vector [..., button_dim]: the IQAE's real level in [-1, 1], the VQ-VAE's code vector, or
    nothing (the baseline). ``step`` is one note of ``forward``, with the LSTM state explicit: the
    function the daemon runs per press.
    """

    def __init__(self, cfg: PianoGenieConfig) -> None:
        super().__init__()
        self.num_keys, self.num_dt = cfg.num_keys, cfg.num_dt
        self.num_buttons = cfg.num_buttons
        self.use_button = not cfg.baseline
        self.time_input: bool = cfg.time_input
        n_in = (cfg.num_keys + 1) + (cfg.num_dt if cfg.time_input else 0) + cfg.button_dim
        self.input = nn.Linear(n_in, cfg.rnn_dim)
        self.lstm = nn.LSTM(cfg.rnn_dim, cfg.rnn_dim, cfg.rnn_layers, batch_first=True)
        self.output = nn.Linear(cfg.rnn_dim, cfg.num_keys)

    def features(self, button: torch.Tensor, prev_keys: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        x = F.one_hot(prev_keys, self.num_keys + 1).float()
        if self.time_input:
            x = torch.cat([x, F.one_hot(dt, self.num_dt).float()], -1)
        if self.use_button:
            x = torch.cat([x, button], -1)
        return self.input(x)

    def forward(self, button: torch.Tensor, keys: torch.Tensor, dt: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Teacher-forced: predicts keys[:, i] from keys[:, :i]. keys, dt: [B, T]; button [B, T, D]."""
        start = torch.full_like(keys[:, :1], self.num_keys)
        prev_keys = torch.cat([start, keys[:, :-1]], 1)  # [B, T]
        x = self.features(button, prev_keys, dt)  # [B, T, H]
        x, state = self.lstm(x, state)  # [B, T, H]
        return self.output(x), state  # [B, T, 88]

    def step(self, button: torch.Tensor, prev_key: torch.Tensor, dt: torch.Tensor,
             h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One note for N players at once. button [N, D]; prev_key, dt: [N]; h, c: [layers, N, H]."""
        x = self.features(button, prev_key, dt).unsqueeze(1)  # [N, 1, H]
        x, (h, c) = self.lstm(x, (h, c))
        return self.output(x[:, 0]), h, c  # [N, 88]


# ---- the autoencoder ----------------------------------------------------------------------


def range_penalty(e: torch.Tensor) -> torch.Tensor:
    """mean(max(|e| - 1, 0)^2): zero inside the quantizer's range."""
    return torch.square(torch.clamp(e.abs() - 1.0, min=0.0)).mean()


def contour_penalty(keys: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """mean(max(1 - dk * de, 0)^2) over consecutive notes: e should rise when the pitch rises,
    by at least 1 / |dk|; where dk = 0 the term is constant (no gradient)."""
    dk = torch.diff(keys, dim=1).float()  # [B, T-1], semitones
    de = torch.diff(e, dim=1)  # [B, T-1]
    return torch.square(torch.clamp(1.0 - dk * de, min=0.0)).mean()


class PianoGenie(nn.Module):
    """Encoder -> IQAE (or VQ) -> decoder; with ``num_buttons = 0``, the decoder alone (the baseline)."""

    def __init__(self, cfg: PianoGenieConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = None if cfg.baseline else Encoder(cfg)
        self.quantizer: IntegerQuantizer | VectorQuantizer | None = (
            None if cfg.baseline else VectorQuantizer(cfg.num_buttons, cfg.code_dim) if cfg.vq
            else IntegerQuantizer(cfg.num_buttons))
        self.decoder = Decoder(cfg)

    @torch.no_grad()
    def buttons(self, keys: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        """The buttons that play ``keys``: [B, T] in 0..7."""
        return self.quantizer.to_buttons(self.encoder(keys, dt))

    def button_table(self) -> torch.Tensor:
        """What the decoder sees for each button: [num_buttons, button_dim]."""
        return self.quantizer.table()

    def forward(self, keys: torch.Tensor, dt: torch.Tensor, targets: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, torch.Tensor]]:
        """Autoencode ``keys`` (with their delta-times ``dt``), both [B, T] longs.

        Returns logits [B, T, 88] and, when ``targets`` (normally ``keys``) are given, the loss
        and its terms. The baseline's loss is the cross-entropy alone.
        """
        terms: dict[str, torch.Tensor] = {}
        if self.encoder is None:
            button = torch.zeros(keys.shape + (0,), dtype=torch.float32, device=keys.device)
        elif self.cfg.vq:
            e = self.encoder(keys, dt)  # [B, T, D]
            if self.training and targets is not None:
                self.quantizer.restart_unused(e)
            button = self.quantizer(e)  # the nearest code, straight-through
            if targets is not None:
                terms["codebook"], terms["commitment"] = self.quantizer.losses(e)
        else:
            e = self.encoder(keys, dt)  # [B, T]
            button = self.quantizer(e).unsqueeze(-1)  # [B, T, 1], one of 8 values, straight-through
            if targets is not None:
                terms["range"] = range_penalty(e)
                terms["contour"] = contour_penalty(targets, e)
        logits, _ = self.decoder(button, keys, dt)
        if targets is None:
            return logits, None, terms
        terms["ce"] = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        loss = terms["ce"]
        if "range" in terms:
            loss = loss + self.cfg.range_weight * terms["range"] + self.cfg.contour_weight * terms["contour"]
        if "codebook" in terms:
            loss = loss + terms["codebook"] + self.cfg.commitment * terms["commitment"]
        return logits, loss, terms


@torch.no_grad()
def sort_codes_by_pitch(model: PianoGenie, keys: torch.Tensor, dts: torch.Tensor) -> list[int]:
    """Number a VQ-VAE's codes by the mean key of the notes the encoder gives them (``keys``, ``dts``:
    [B, T] windows), so that button 0 is the code that plays lowest; the codebook is permuted in
    place (the nearest-code rule is blind to the order, so nothing else changes). Returns the old
    index of each new button; an unused code goes last."""
    b = model.buttons(keys, dts).reshape(-1)
    k = keys.reshape(-1).double()
    n = model.cfg.num_buttons
    count = torch.bincount(b, minlength=n).double()
    mean = torch.bincount(b, weights=k, minlength=n) / count.clamp(min=1)
    mean[count == 0] = float("inf")
    order = torch.argsort(mean).tolist()
    model.quantizer.codebook.data = model.quantizer.codebook.data[order]
    return order


@torch.no_grad()
def sample(decoder: Decoder, buttons: list[int], dt: list[int], num_buttons: int = 8,
           temperature: float = 0.25, generator: torch.Generator | None = None,
           table: torch.Tensor | None = None) -> list[int]:
    """Play ``buttons`` (with delta-time buckets ``dt``) through the decoder, one note at a time;
    ``table`` ([num_buttons, D], ``PianoGenie.button_table``) is what the decoder sees per button
    (None: the IQAE's levels)."""
    if table is None:
        table = IntegerQuantizer(num_buttons).table()
    layers, hidden = decoder.lstm.num_layers, decoder.lstm.hidden_size
    h = torch.zeros(layers, 1, hidden)
    c = torch.zeros(layers, 1, hidden)
    key = torch.tensor([decoder.num_keys])
    out = []
    for b, d in zip(buttons, dt):
        logits, h, c = decoder.step(table[b:b + 1], key, torch.tensor([d]), h, c)
        if temperature == 0:
            key = logits.argmax(-1)
        else:
            probs = F.softmax(logits / temperature, -1)
            key = torch.multinomial(probs, 1, generator=generator)[:, 0]
        out.append(int(key))
    return out
