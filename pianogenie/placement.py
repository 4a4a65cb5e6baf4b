"""Where ``genie buttons`` puts a piece on the eight buttons when it teaches it.

The encoder places a tune by its register as well as by its shape: the decoder reads the register
from the buttons, so the shipped encoder's buttons rise 0.12 per semitone a tune is transposed
(Gold's ``register_slope``), and a simple tune lands on buttons 2-6 or 3-7 by where it lies on the
keyboard. A person learning a tune does not do that: they centre its span on the buttons, as the
Gold sequences do. ``centre_span`` moves the encoder's buttons, all by one whole number, so that
the piece's lowest and highest buttons sit around the middle of the eight (the lower of the two
places when it cannot be exact, the person's rule in ``pianogenie.gold``). The shape is kept
button for button, and a piece that already spans every button stays where it is.

Only ordered buttons (the IQAE's levels) can move like this; a VQ-VAE's buttons are codebook
entries with no order, so they are taught as the encoder gives them.
"""

from __future__ import annotations

import torch


def centre_span(buttons: torch.Tensor, num_buttons: int = 8) -> torch.Tensor:
    """``buttons`` [..., T] (0..num_buttons-1) moved so that each row's span is centred."""
    if buttons.size(-1) == 0:
        return buttons
    lo = buttons.min(dim=-1, keepdim=True).values
    hi = buttons.max(dim=-1, keepdim=True).values
    return buttons - lo + torch.div(num_buttons - 1 - (hi - lo), 2, rounding_mode="floor")
