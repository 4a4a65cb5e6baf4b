"""The paper's "Gold" measure: how close the encoder's buttons come to the buttons a person would
press for a simple tune (Donahue et al. 2019, Table 1; magenta's ``gold.py``).

Eight public-domain tunes, written here note by note, each with the 8-button sequence a person
would play it with, written by hand (buttons 0-7, low to high): the same note on the same button,
a higher note on a higher button, a step (one or two semitones) on the neighbouring button, as
the paper's sequences have them, a leap (a third or more) at least two buttons away, and the
tune's span centred on the eight buttons (the paper's start lower: Mary on 1-5 of 1-8). Until
December 2026 some sequences spread a tune over all eight buttons and so put steps two buttons
apart, against their own rule (Gold 2.77 for the shipped model then, 2.57 with them corrected).
As in the paper, each tune is transposed -6..+5 semitones, every
note gets the same time since the previous one (bucket 8, 0.256 s), the encoder's buttons are read
for it, and Gold is the mean squared difference between the encoder's and the person's buttons
over every note of every transposition (lower is better; the paper: 1.70, 1.61 with the time
input). Magenta's gold sequences are written 1-8 against the encoder's 0-7; ours are 0-7.

Gold mixes two things a player feels differently: where a tune sits on the buttons and its shape.
``gold_l2_shape`` is the same measure after each tune's (and transposition's) constant offset is
taken away, the best any shift of the encoder's buttons could do; ``gold_l2`` minus it is the
cost of where the encoder puts the tune; ``register_slope``, how far the encoder's mean button moves
per semitone a tune is transposed (the least-squares slope within each tune, pooled), says how much
the register decides it. A person's buttons do not move with the register: their slope is 0.

``gold_l2_taught`` is Gold for the buttons ``genie buttons`` teaches: the encoder's, with each
tune's span centred on the eight buttons (``pianogenie.placement``; the person's rule above, so the
register no longer places the tune). ``replay`` plays the encoder's, the taught and the person's
buttons through the decoder (greedy, the same fixed time between notes) and counts how often the
played step between two notes is the tune's: whether a learner pressing those buttons hears the tune.
"""

from __future__ import annotations

import torch

from pianogenie import data
from pianogenie.placement import centre_span

DT_BUCKET = 8  # 0.256 s between notes, as magenta's gold.py
TRANSPOSITIONS = range(-6, 6)

# (name, MIDI pitches, buttons a person presses for them)
TUNES: list[tuple[str, list[int], list[int]]] = [
    ("mary had a little lamb",
     [64, 62, 60, 62, 64, 64, 64, 62, 62, 62, 64, 67, 67, 64, 62, 60, 62, 64, 64, 64, 64, 62, 62, 64, 62, 60],
     [3, 2, 1, 2, 3, 3, 3, 2, 2, 2, 3, 5, 5, 3, 2, 1, 2, 3, 3, 3, 3, 2, 2, 3, 2, 1]),
    ("twinkle twinkle little star",
     [60, 60, 67, 67, 69, 69, 67, 65, 65, 64, 64, 62, 62, 60, 67, 67, 65, 65, 64, 64, 62, 67, 67, 65, 65, 64,
      64, 62],
     [1, 1, 5, 5, 6, 6, 5, 4, 4, 3, 3, 2, 2, 1, 5, 5, 4, 4, 3, 3, 2, 5, 5, 4, 4, 3, 3, 2]),
    ("happy birthday",
     [67, 67, 69, 67, 72, 71, 67, 67, 69, 67, 74, 72, 67, 67, 79, 76, 72, 71, 69, 77, 77, 76, 72, 74, 72],
     [0, 0, 1, 0, 3, 2, 0, 0, 1, 0, 4, 3, 0, 0, 7, 5, 3, 2, 1, 6, 6, 5, 3, 4, 3]),
    ("jingle bells",
     [64, 64, 64, 64, 64, 64, 64, 67, 60, 62, 64, 65, 65, 65, 65, 65, 64, 64, 64, 64, 62, 62, 64, 62, 67],
     [3, 3, 3, 3, 3, 3, 3, 5, 1, 2, 3, 4, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 3, 2, 5]),
    ("frere jacques",
     [60, 62, 64, 60, 60, 62, 64, 60, 64, 65, 67, 64, 65, 67, 67, 69, 67, 65, 64, 60, 67, 69, 67, 65, 64, 60,
      60, 55, 60, 60, 55, 60],
     [2, 3, 4, 2, 2, 3, 4, 2, 4, 5, 6, 4, 5, 6, 6, 7, 6, 5, 4, 2, 6, 7, 6, 5, 4, 2, 2, 0, 2, 2, 0, 2]),
    ("god save the king",
     [67, 67, 69, 66, 67, 69, 71, 71, 72, 71, 69, 67, 69, 67, 66, 67],
     [2, 2, 3, 1, 2, 3, 4, 4, 5, 4, 3, 2, 3, 2, 1, 2]),
    ("korobeiniki",
     [76, 71, 72, 74, 72, 71, 69, 69, 72, 76, 74, 72, 71, 72, 74, 76, 72, 69, 69],
     [5, 2, 3, 4, 3, 2, 1, 1, 3, 5, 4, 3, 2, 3, 4, 5, 3, 1, 1]),
    ("ode to joy",
     [64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62, 64, 64, 62, 62, 64, 64, 65, 67, 67, 65, 64, 62, 60, 60, 62,
      64, 62, 60, 60],
     [3, 3, 4, 5, 5, 4, 3, 2, 1, 1, 2, 3, 3, 2, 2, 3, 3, 4, 5, 5, 4, 3, 2, 1, 1, 2, 3, 2, 1, 1]),
]


def transposed(pitches: list[int]) -> torch.Tensor:
    """A tune's keys (0..87) at every transposition: [len(TRANSPOSITIONS), T]."""
    return torch.tensor([[p + t - data.LOWEST_PITCH for p in pitches] for t in TRANSPOSITIONS])


@torch.no_grad()
def gold_measure(model) -> dict:
    """Mean squared (and absolute) difference between the encoder's buttons and the person's, per
    tune and over all, in shape alone and as ``genie buttons`` teaches them; the encoder's mean button
    beside the person's shows a squeeze or a shift. A model with a decoder also gets ``replay``."""
    model.eval()
    per: dict[str, float] = {}
    sq = ab = n = shape = 0.0
    enc_sum = gold_sum = 0.0
    moved = torch.tensor(list(TRANSPOSITIONS), dtype=torch.double)
    moved = moved - moved.mean()
    rise = 0.0  # over the tunes: sum of (transposition * the encoder's mean button), centred
    ordered = not getattr(getattr(model, "cfg", None), "vq", False)  # a VQ-VAE's codes have no order
    taught_sq, per_taught = 0.0, {}
    for name, pitches, gold in TUNES:
        keys = transposed(pitches)
        dts = torch.full_like(keys, DT_BUCKET)
        buttons = model.buttons(keys, dts).double()
        want = torch.tensor(gold, dtype=torch.double).expand_as(buttons)
        diff = buttons - want
        per[name] = float((diff ** 2).mean())
        sq, ab, n = sq + float((diff ** 2).sum()), ab + float(diff.abs().sum()), n + diff.numel()
        shape += float(((diff - diff.mean(dim=1, keepdim=True)) ** 2).sum())  # each transposition's offset out
        enc_sum, gold_sum = enc_sum + float(buttons.sum()), gold_sum + float(want.sum())
        rise += float((moved * buttons.mean(dim=1)).sum())
        taught = centre_span(buttons.long()).double() if ordered else buttons
        per_taught[name] = float(((taught - want) ** 2).mean())
        taught_sq += float(((taught - want) ** 2).sum())
    result = {"register_slope": rise / (len(TUNES) * float((moved ** 2).sum())),  # buttons per semitone moved
              "gold_l2": sq / n, "gold_l1": ab / n, "gold_l2_shape": shape / n, "per_tune": per, "notes": int(n),
              "encoder_mean_button": enc_sum / n, "person_mean_button": gold_sum / n,
              "gold_l2_taught": taught_sq / n, "per_tune_taught": per_taught}
    if ordered and getattr(model, "decoder", None) is not None:
        result["replay"] = replay(model)
    return result


@torch.no_grad()
def replay(model) -> dict:
    """How often the decoder, played the encoder's, the taught (``centre_span``) or the person's
    buttons for every gold tune and transposition, moves between two notes by the tune's interval
    (greedy decoding, the gold tunes' fixed time between notes)."""
    from pianogenie.model import sample

    model.eval()
    table, n = model.button_table(), model.cfg.num_buttons
    hits = {"encoder": 0, "taught": 0, "person": 0}
    steps = 0
    for _, pitches, gold in TUNES:
        keys = transposed(pitches)
        encoded = model.buttons(keys, torch.full_like(keys, DT_BUCKET))
        dt = [DT_BUCKET] * len(pitches)
        steps_of = [b - a for a, b in zip(pitches, pitches[1:])]  # the same at every transposition

        def right(buttons: list[int]) -> int:
            played = sample(model.decoder, buttons, dt, n, 0.0, table=table)
            return sum(b - a == want for a, b, want in zip(played, played[1:], steps_of))

        hits["person"] += right(gold) * len(encoded)  # the person's buttons are the same at every transposition
        for row in encoded:
            hits["encoder"] += right(row.tolist())
            hits["taught"] += right(centre_span(row, n).tolist())
        steps += len(steps_of) * len(encoded)
    return {who: h / steps for who, h in hits.items()} | {"steps": steps}
