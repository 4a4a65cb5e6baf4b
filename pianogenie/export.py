"""Export Piano Genie for the daemon, and read a piece's buttons with the exported encoder.

Two TorchScript artefacts (written through ``daemon.runtime.save_model``, scripted, never traced):

- ``pianogenie_decoder.pt``: ``forward(button, prev_key, dt, h, c) -> (logits, h, c)``, one note
  for N independent rows at once (button, prev_key, dt: [N] longs; h, c: [layers, N, hidden];
  logits: [N, 88]). ``prev_key`` 88 is the start symbol. ``init_state(n)`` gives zeros. The LSTM
  state is explicit: the daemon carries it, the artefact holds none.
- ``pianogenie_encoder.pt``: ``forward(keys, dt) -> buttons`` ([1, T] longs -> [1, T] in 0..7),
  for ``genie buttons FILE.mid``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from daemon import runtime
from pianogenie import data
from pianogenie.model import Decoder, Encoder, IntegerQuantizer, PianoGenieConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DECODER_FILE = "pianogenie_decoder.pt"
ENCODER_FILE = "pianogenie_encoder.pt"


class DecoderStep(nn.Module):
    """The trained decoder as a step function: the same layers, an explicit state."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.num_keys: int = decoder.num_keys
        self.num_dt: int = decoder.num_dt
        self.num_buttons: int = decoder.num_buttons
        self.num_layers: int = decoder.lstm.num_layers
        self.hidden: int = decoder.lstm.hidden_size
        self.input = decoder.input
        self.lstm = decoder.lstm
        self.output = decoder.output

    @torch.jit.export
    def init_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(self.num_layers, n, self.hidden)
        return z, z.clone()

    def forward(self, button: torch.Tensor, prev_key: torch.Tensor, dt: torch.Tensor,
                h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        level = button.float() / float(self.num_buttons - 1) * 2.0 - 1.0  # [N]
        x = torch.cat([F.one_hot(prev_key, self.num_keys + 1).float(),
                       F.one_hot(dt, self.num_dt).float(), level.unsqueeze(-1)], -1)
        x = self.input(x).unsqueeze(1)  # [N, 1, H]
        y, (h2, c2) = self.lstm(x, (h, c))
        return self.output(y[:, 0]), h2, c2  # [N, 88]


class EncoderButtons(nn.Module):
    """The trained encoder and quantizer: a performance in, the buttons that play it out."""

    def __init__(self, encoder: Encoder, quantizer: IntegerQuantizer) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_levels: int = quantizer.num_levels

    def forward(self, keys: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        e = self.encoder(keys, dt)
        x = (e.clamp(-1.0, 1.0) + 1.0) / 2.0 * float(self.num_levels - 1)
        return torch.round(x).long()


def export_model(model, out_dir: str | Path) -> list[Path]:
    """Write the decoder step and the encoder of an eager ``PianoGenie`` into ``out_dir``."""
    if model.cfg.baseline:
        raise ValueError("the baseline has no buttons: there is nothing to play")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    for p in model.parameters():  # an artefact for inference: no autograd bookkeeping when it runs
        p.requires_grad_(False)
    runtime.save_model(DecoderStep(model.decoder).eval(), out / DECODER_FILE)
    runtime.save_model(EncoderButtons(model.encoder, model.quantizer).eval(), out / ENCODER_FILE)
    return [out / DECODER_FILE, out / ENCODER_FILE]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    from pianogenie.train import load_checkpoint, model_from_checkpoint

    return export_model(model_from_checkpoint(load_checkpoint(checkpoint)), out_dir or WEIGHTS_DIR)


# ---- genie buttons FILE.mid ------------------------------------------------------------------


def buttons_for_file(midi_file: str | Path, weights: str | Path | None = None) -> dict:
    """The buttons that play a MIDI file: {times, pitches, buttons}, one entry per onset (88 keys)."""
    times, pitches = data.read_onsets(midi_file)
    keep = (pitches >= data.LOWEST_PITCH) & (pitches < data.LOWEST_PITCH + data.NUM_KEYS)
    times, pitches = times[keep], pitches[keep]
    keys, dt = data.encode(times, pitches)
    encoder = runtime.load_model(weights or WEIGHTS_DIR / ENCODER_FILE)
    with torch.no_grad():
        buttons = encoder(torch.from_numpy(keys)[None], torch.from_numpy(dt)[None])[0] if len(keys) \
            else torch.zeros(0, dtype=torch.long)
    return {"times": times.tolist(), "pitches": pitches.tolist(), "buttons": buttons.tolist()}


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def format_buttons(result: dict) -> list[str]:
    """One line per onset: time, the note, the button (1-8) and where it sits on the 8 keys."""
    lines = []
    for t, p, b in zip(result["times"], result["pitches"], result["buttons"]):
        lane = "".join("#" if i == b else "." for i in range(8))
        lines.append(f"{t:9.3f}s  {note_name(p):>4}  button {b + 1}  {lane}")
    return lines


def write_buttons_midi(result: dict, path: str | Path, duration_s: float = 0.1) -> None:
    """Button b as note 60 + b at each onset (a track to read the buttons from in a DAW)."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0, name="Piano Genie buttons")
    for t, b in zip(result["times"], result["buttons"]):
        inst.notes.append(pretty_midi.Note(velocity=100, pitch=60 + b, start=t, end=t + duration_s))
    pm.instruments.append(inst)
    pm.write(str(path))


def plot_buttons(result: dict, path: str | Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 5))
    top.scatter(result["times"], result["pitches"], s=4)
    top.set_ylabel("pitch")
    bottom.scatter(result["times"], np.array(result["buttons"]) + 1, s=4, c="C1")
    bottom.set_ylabel("button")
    bottom.set_yticks(range(1, 9))
    bottom.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


if __name__ == "__main__":
    from pianogenie.cli import export_cmd

    export_cmd()
