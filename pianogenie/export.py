"""Export Piano Genie for the daemon, and read a piece's buttons with the exported encoder.

Two TorchScript artefacts (written through ``daemon.runtime.save_model``, scripted, never traced):

- ``pianogenie_decoder.pt``: ``forward(button, prev_key, dt, h, c) -> (logits, h, c)``, one note
  for N independent rows at once (button, prev_key, dt: [N] longs; h, c: [layers, N, hidden];
  logits: [N, 88]). ``prev_key`` 88 is the start symbol. ``init_state(n)`` gives zeros. The LSTM
  state is explicit: the daemon carries it, the artefact holds none.
- ``pianogenie_encoder.pt``: ``forward(keys, dt) -> buttons`` ([1, T] longs -> [1, T] in 0..7),
  for ``genie buttons FILE.mid``.

Beside the decoder, the same function as ONNX (``pianogenie_decoder.onnx``, :func:`export_onnx`) for
the torch-free runtime, checked against the TorchScript over a whole song of presses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from daemon import runtime
from modelkit.checkpoints import best_or_last
from pianogenie import data
from pianogenie.model import Decoder, Encoder, IntegerQuantizer, VectorQuantizer
from pianogenie.placement import centre_span

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DECODER_FILE = "pianogenie_decoder.pt"
VQ_DECODER_FILE = "pianogenie_vq_decoder.pt"  # the VQ-VAE option, a second choice for players
VQ_ENCODER_FILE = "pianogenie_vq_encoder.pt"
BUTTON_NOTES = (60, 62, 64, 65, 67, 69, 71, 72)  # the daemon's default button map ("white-keys")
ENCODER_FILE = "pianogenie_encoder.pt"


class DecoderStep(nn.Module):
    """The trained decoder's own ``step`` as the artefact's ``forward``, with a button index in and
    an explicit state: the same function training evaluates, nothing written twice."""

    def __init__(self, decoder: Decoder) -> None:
        super().__init__()
        self.num_keys: int = decoder.num_keys
        self.num_dt: int = decoder.num_dt
        self.num_buttons: int = decoder.num_buttons
        self.num_layers: int = decoder.lstm.num_layers
        self.hidden: int = decoder.lstm.hidden_size
        self.decoder = decoder

    @torch.jit.export
    def init_state(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.zeros(self.num_layers, n, self.hidden)
        return z, z.clone()

    def forward(self, button: torch.Tensor, prev_key: torch.Tensor, dt: torch.Tensor,
                h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        level = button.float() / float(self.num_buttons - 1) * 2.0 - 1.0  # [N]: the IQAE's level
        return self.decoder.step(level.unsqueeze(-1), prev_key, dt, h, c)  # ([N, 88], h, c)


class VQDecoderStep(DecoderStep):
    """``DecoderStep`` of the VQ-VAE option: a button index reads its code vector from ``table``."""

    def __init__(self, decoder: Decoder, table: torch.Tensor) -> None:
        super().__init__(decoder)
        self.register_buffer("table", table.detach().clone())  # [num_buttons, code_dim]

    def forward(self, button: torch.Tensor, prev_key: torch.Tensor, dt: torch.Tensor,
                h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decoder.step(self.table[button], prev_key, dt, h, c)


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


class VQEncoderButtons(nn.Module):
    """The VQ-VAE's encoder and codebook: the nearest code of each note is its button."""

    def __init__(self, encoder: Encoder, quantizer: VectorQuantizer) -> None:
        super().__init__()
        self.encoder = encoder
        self.quantizer = quantizer
        self.num_levels: int = quantizer.num_levels

    def forward(self, keys: torch.Tensor, dt: torch.Tensor) -> torch.Tensor:
        return self.quantizer.to_buttons(self.encoder(keys, dt))


def metrics_file(vq: bool) -> str:
    return "pianogenie_vq_metrics.json" if vq else "pianogenie_metrics.json"


def artefact_files(vq: bool) -> tuple[str, str]:
    """(decoder, encoder) file names of the IQAE model or the VQ-VAE option."""
    return (VQ_DECODER_FILE, VQ_ENCODER_FILE) if vq else (DECODER_FILE, ENCODER_FILE)


def export_model(model, out_dir: str | Path) -> list[Path]:
    """Write the decoder step and the encoder of an eager ``PianoGenie`` into ``out_dir`` (a VQ-VAE's
    under the ``pianogenie_vq_*`` names, beside the IQAE's)."""
    if model.cfg.baseline:
        raise ValueError("the baseline has no buttons: there is nothing to play")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    for p in model.parameters():  # an artefact for inference: no autograd bookkeeping when it runs
        p.requires_grad_(False)
    dec_file, enc_file = artefact_files(model.cfg.vq)
    if model.cfg.vq:
        runtime.save_model(VQDecoderStep(model.decoder, model.button_table()).eval(), out / dec_file)
        runtime.save_model(VQEncoderButtons(model.encoder, model.quantizer).eval(), out / enc_file)
    else:
        runtime.save_model(DecoderStep(model.decoder).eval(), out / dec_file)
        runtime.save_model(EncoderButtons(model.encoder, model.quantizer).eval(), out / enc_file)
    return [out / dec_file, out / enc_file]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    from pianogenie.train import load_checkpoint, model_from_checkpoint

    return export_model(model_from_checkpoint(load_checkpoint(checkpoint)), out_dir or WEIGHTS_DIR)


# ---- ONNX beside the TorchScript artefacts ----------------------------------------------------


def _decoder_from(scripted: torch.jit.ScriptModule) -> DecoderStep:
    """The eager decoder step rebuilt from its TorchScript artefact (strict load). Artefacts
    exported before ``DecoderStep`` wrapped ``Decoder`` hold its layers at the top level."""
    from pianogenie.model import PianoGenieConfig

    sd = {k if k.startswith(("decoder.", "table")) else f"decoder.{k}": v
          for k, v in scripted.state_dict().items()}
    layers = len([k for k in sd if k.startswith("decoder.lstm.weight_ih_l")])
    table = sd.get("table")
    num_keys, button_dim = int(scripted.num_keys), int(table.shape[1]) if table is not None else 1
    cfg = PianoGenieConfig(num_keys=num_keys, num_dt=int(scripted.num_dt),
                           num_buttons=int(scripted.num_buttons),
                           rnn_dim=int(sd["decoder.lstm.weight_hh_l0"].shape[1]), rnn_layers=layers,
                           bottleneck="vq" if table is not None else "iqae",
                           code_dim=button_dim if table is not None else 64,
                           time_input=int(sd["decoder.input.weight"].shape[1]) > num_keys + 1 + button_dim)
    step = VQDecoderStep(Decoder(cfg), table) if table is not None else DecoderStep(Decoder(cfg))
    step.load_state_dict(sd)
    return step.eval()


def decoder_parity_run(model: runtime.Model, presses: int = 300) -> list[np.ndarray]:
    """A song of ``presses`` presses (buttons and gaps drawn from a fixed seed) through the decoder,
    its state carried as the daemon does, each press also as the look-ahead's batch of all buttons
    at two gaps: the key probabilities of every row."""
    from modelkit.onnx_export import probabilities

    step = model.function()
    n, layers, hidden = int(model.attr("num_buttons")), int(model.attr("num_layers")), int(model.attr("hidden"))
    rng = np.random.default_rng(0)
    h = c = np.zeros((layers, 1, hidden), np.float32)
    prev, out = int(model.attr("num_keys")), []
    for _ in range(presses):
        b, dt = int(rng.integers(n)), int(rng.integers(int(model.attr("num_dt"))))
        rows = step(np.tile(np.arange(n), 2), np.full(2 * n, prev), np.repeat([dt, max(dt - 1, 0)], n),
                    np.repeat(h, 2 * n, 1), np.repeat(c, 2 * n, 1))
        logits, h, c = step(np.array([b]), np.array([prev]), np.array([dt]), h, c)
        out += [probabilities(rows[0]), probabilities(logits)]
        prev = int(np.argmax(out[-1][0]))
    return out


def export_onnx(weights_dir: str | Path | None = None, decoder_file: str = DECODER_FILE
                ) -> list[tuple[Path, float]]:
    """Write ``pianogenie_decoder.onnx`` (or ``decoder_file``'s) beside the TorchScript decoder in ``weights_dir``:
    [(file, largest difference from TorchScript)]. The encoder stays TorchScript only: it serves
    ``genie buttons`` (a whole file at once, not the daemon), and torch 2.13's export fixes the
    length of its two-layer bidirectional LSTM to the example's (the exporter refuses such a graph)."""
    from modelkit.onnx_export import OnnxFunction, export_checked

    d = Path(weights_dir) if weights_dir else WEIGHTS_DIR
    dec_ts = runtime.load_torchscript(d / decoder_file)
    dec = _decoder_from(dec_ts)
    n, layers, hidden = dec.num_buttons, dec.num_layers, dec.hidden
    batch = ("rows", 1, 1024)  # one press, or the look-ahead's rows of every button
    h0 = torch.zeros(layers, 2 * n, hidden)
    dec_fn = OnnxFunction("forward", dec, (torch.arange(2 * n) % n, torch.full((2 * n,), dec.num_keys),
                                          torch.zeros(2 * n, dtype=torch.long), h0, h0.clone()),
                          ("button", "prev_key", "dt", "h", "c"), ("logits", "h_out", "c_out"),
                          {"button": {0: batch}, "prev_key": {0: batch}, "dt": {0: batch},
                           "h": {1: batch}, "c": {1: batch}})
    attrs = {k: getattr(dec, k) for k in ("num_keys", "num_dt", "num_buttons", "num_layers", "hidden")}
    files, diff = export_checked(d / decoder_file, [dec_fn], attrs, decoder_parity_run)
    return [(f, diff) for f in files]


# ---- genie buttons FILE.mid ------------------------------------------------------------------


def buttons_for_file(midi_file: str | Path, weights: str | Path | None = None, centre: bool = True) -> dict:
    """The buttons that play a MIDI file: {times, pitches, buttons, moved}, one entry per onset (88
    keys). With ``centre`` the piece's span is centred on the buttons (``pianogenie.placement``), as
    a person places a tune, and ``moved`` is how many buttons that moved the encoder's; a VQ-VAE's
    unordered codes are never moved."""
    times, pitches = data.read_onsets(midi_file)
    keep = (pitches >= data.LOWEST_PITCH) & (pitches < data.LOWEST_PITCH + data.NUM_KEYS)
    times, pitches = times[keep], pitches[keep]
    keys, dt = data.encode(times, pitches)
    encoder = runtime.load_torchscript(weights or WEIGHTS_DIR / ENCODER_FILE)
    with torch.no_grad():
        buttons = encoder(torch.from_numpy(keys)[None], torch.from_numpy(dt)[None])[0] if len(keys) \
            else torch.zeros(0, dtype=torch.long)
    moved = 0
    if centre and len(buttons) and not hasattr(encoder, "quantizer"):  # the VQ-VAE's encoder has a codebook
        moved = int(centre_span(buttons, int(encoder.num_levels))[0] - buttons[0])
    return {"times": times.tolist(), "pitches": pitches.tolist(), "buttons": (buttons + moved).tolist(),
            "moved": moved}


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def format_buttons(result: dict) -> list[str]:
    """One line per onset: time, the note, the button (0-7, as everywhere) and where it sits."""
    lines = []
    for t, p, b in zip(result["times"], result["pitches"], result["buttons"]):
        lane = "".join("#" if i == b else "." for i in range(8))
        lines.append(f"{t:9.3f}s  {note_name(p):>4}  button {b}  {lane}")
    return lines


def write_buttons_midi(result: dict, path: str | Path, duration_s: float = 0.1) -> None:
    """Button b as the note that presses it in the default button map (the white keys C4-C5) at
    each onset: played back into ``genie run`` it presses the same buttons."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0, name="Piano Genie buttons")
    for t, b in zip(result["times"], result["buttons"]):
        inst.notes.append(pretty_midi.Note(velocity=100, pitch=BUTTON_NOTES[b], start=t, end=t + duration_s))
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


# ---- shipping: weights, metrics, loss curve and model card -----------------------------------

LICENCE_LINE = "Licence: CC BY-NC-SA 4.0 (weights, trained on MAESTRO via ASAP); the code is MIT"
TARGETS = {"perplexity": 3.0, "perplexity_ratio": 0.25, "contour_violations": 0.03,
           "button_usage_perplexity": 6.0}


def plot_runs(model_history: list[dict], baseline_history: list[dict], path: str | Path) -> bool:
    """Model and baseline cross-entropy (train and validation) against step, one PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax, pen) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, height_ratios=(3, 1.3))
    for name, hist, color in (("Piano Genie", model_history, "C0"), ("baseline (no buttons)", baseline_history, "C3")):
        tr = [h for h in hist if "ce" in h]
        va = [h for h in hist if "val_ce" in h]
        if tr:
            ax.plot([h["step"] for h in tr], [h["ce"] for h in tr], color=color, lw=0.6, alpha=0.5,
                    label=f"{name}, train CE")
        if va:
            ax.plot([h["step"] for h in va], [h["val_ce"] for h in va], "o-", color=color, ms=2.5,
                    label=f"{name}, validation CE")
    ax.axhline(np.log(TARGETS["perplexity"]), color="k", ls="--", lw=0.8, label="target: perplexity 3.0")
    ax.set_ylabel("cross-entropy, nats per note")
    ax.set_ylim(0.5, 4.6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    tr = [h for h in model_history if "range" in h]
    for term, color in (("range", "C2"), ("contour", "C1")):
        pen.plot([h["step"] for h in tr], [h[term] for h in tr], color=color, lw=0.8,
                 label=f"Piano Genie {term} penalty (train)")
    pen.set_xlabel("step (batch 32)")
    pen.set_ylabel("penalty")
    pen.grid(alpha=0.3)
    pen.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def ship(model_run: str | Path, baseline_run: str | Path, out_dir: str | Path | None = None,
         which: str = "best.pt", perf: data.Performances | None = None, player_seeds: int = 10) -> dict:
    """Export ``model_run/which``, evaluate it beside the baseline on the test split, and write the
    metrics, the loss curve and the model card into ``out_dir`` (the shipped weights by default)."""
    from pianogenie import evaluate
    from pianogenie.train import load_checkpoint, model_from_checkpoint

    model_run, baseline_run = Path(model_run), Path(baseline_run)
    out = Path(out_dir) if out_dir else WEIGHTS_DIR
    ckpt = load_checkpoint(model_run / which)
    export_model(model_from_checkpoint(ckpt), out)
    onnx = {f.name: diff for f, diff in export_onnx(out)}  # beside it, checked
    result = evaluate.run(model_run / which, best_or_last(baseline_run),  # checkpoints/ keeps only its last
                          perf=perf, player_seeds=player_seeds)
    latest = load_checkpoint(model_run / "ckpt.pt")
    base_latest = load_checkpoint(baseline_run / "ckpt.pt")
    plot_runs(latest["history"], base_latest["history"], out / "pianogenie_loss.png")
    result["runs"] = {"model_latest_step": latest["step"], "model_latest_wall_time_s": latest["wall_time_s"],
                      "baseline_latest_step": base_latest["step"],
                      "baseline_latest_wall_time_s": base_latest["wall_time_s"],
                      "baseline_val": [(h["step"], h["val_ce"]) for h in base_latest["history"] if "val_ce" in h],
                      "model_val": [(h["step"], h["val_ce"]) for h in latest["history"] if "val_ce" in h],
                      "model_last_train": next((h for h in reversed(latest["history"]) if "range" in h), {}),
                      "data": latest.get("meta", {}).get("counts") or latest.get("data", {}), "config": latest["config"],
                      "model_args": latest["model_args"], "torch": latest.get("torch", "")}
    result["onnx"] = onnx
    (out / "pianogenie_metrics.json").write_text(json.dumps(result, indent=1))
    (out / "pianogenie.md").write_text(model_card(result))
    vq_metrics = out / metrics_file(True)
    if vq_metrics.is_file():  # the VQ-VAE's card compares it with this model: its row follows
        beside = json.loads(vq_metrics.read_text())
        beside["model"] = result["model"]
        vq_metrics.write_text(json.dumps(beside, indent=1))
        (out / "pianogenie_vq.md").write_text(vq_card(beside))
    return result


def _trend(val: list[tuple[int, float]]) -> str:
    """How the baseline's validation cross-entropy moved over its last evaluations."""
    if len(val) < 3:
        return ""
    (s0, v0), (s1, v1) = val[-3], val[-1]
    return (f"Its validation cross-entropy moved {v1 - v0:+.3f} nats per note over its last "
            f"{s1 - s0:,} steps (perplexity {math.exp(v0):.1f} -> {math.exp(v1):.1f}), so longer "
            "training would lower it somewhat too.")


def _schedule(cfg: dict) -> str:
    """The learning rate as the run had it: the paper's constant one, or that with a cosine tail."""
    if not cfg.get("decay_from"):
        return f"{cfg['lr']:g} (constant, as the paper)"
    return (f"{cfg['lr']:g}, constant to step {cfg['decay_from']:,}, then falling along a cosine to a "
            f"tenth at step {cfg['steps']:,}")


def _train_command(cfg: dict) -> str:
    """The command that made the run (its folder, and its width where it is not the paper's)."""
    width = cfg.get("model", {}).get("rnn_dim", 128)
    return f"genie train pianogenie --out {cfg['out_dir']}" + (f" --rnn-dim {width}" if width != 128 else "")


def _export_command(cfg: dict) -> str:
    """The command that wrote this card from the run's best checkpoint."""
    from pianogenie.train import TrainConfig

    default = cfg["out_dir"] == TrainConfig.out_dir
    return "genie export pianogenie" + ("" if default else f" --checkpoint {cfg['out_dir']}/best.pt") + " --card"


def _tail_command(cfg: dict) -> str:
    """How the run was resumed for its tail, where it had one."""
    if not cfg.get("decay_from"):
        return ""
    return (f", resumed for its last stretch with `genie train pianogenie --out {cfg['out_dir']} "
            f"--steps {cfg['steps']} --decay-from {cfg['decay_from']}`")


def _tail_effect(cfg: dict, val: list[tuple[int, float]], span: int = 2000) -> str:
    """What the learning rate's tail did: validation cross-entropy just before it and at its end."""
    start = cfg.get("decay_from") or 0
    if not start or not val or val[-1][0] <= start + span:
        return ""
    before = [v for s, v in val if start - span < s <= start]
    end = [v for s, v in val if s > val[-1][0] - span]
    if not before:
        return ""
    return (f" Validation cross-entropy, mean of the evaluations over {span:,} steps: {sum(before) / len(before):.3f} "
            f"before the tail, {sum(end) / len(end):.3f} at its end (step {val[-1][0]:,}).")


def _limits_training(cfg: dict) -> str:
    """What longer training can still do, as the run's schedule tells."""
    if not cfg.get("decay_from"):
        return ("- Trained far less than the paper's model (see the step count and the curve); where a target above\n"
                "  says \"not met\", that is the gap still to close by training on.")
    return ("- The validation curve has flattened at this size: the learning rate's tail (see Training) moved it\n"
            "  little, so the perplexity target will not be met by training this model on. What is left to\n"
            "  try: a wider decoder, or the quantizer passing its gradient only inside [-1, 1] (see the range\n"
            "  penalty above).")


def _baseline_which(b: dict, runs: dict) -> str:
    """The baseline's row: its best checkpoint, or its last where only that is kept."""
    where = f"step {b.get('step', 0):,} ({(b.get('wall_time_s') or 0) / 3600:.2f} h)"
    if b.get("step") == runs["baseline_latest_step"]:
        return f"its last checkpoint, {where}, the one kept in `checkpoints/pianogenie/baseline`."
    return f"best checkpoint at {where}; its run had reached step {runs['baseline_latest_step']:,}."


def _ok(value: float, target: float, higher: bool = False) -> str:
    return "met" if (value >= target if higher else value <= target) else "not met"


def _gold_paragraph(g: dict | None) -> str:
    """The card's Gold measure (``pianogenie.gold``), or nothing for an older evaluation."""
    if not g:
        return ""
    tunes = ", ".join(f"{k} {v:.2f}" for k, v in g["per_tune"].items())
    return f"""
Gold (the paper's measure, `pianogenie/gold.py`): the encoder's buttons against the buttons a person
would press, written by hand for {len(g['per_tune'])} public-domain tunes, each transposed -6..+5
semitones at a fixed 0.256 s between notes: mean squared difference **{g['gold_l2']:.2f}** (paper 1.70,
1.61 with the time input; target <= 2: {_ok(g['gold_l2'], 2.0)}), mean absolute {g['gold_l1']:.2f}; per
tune: {tunes}. The encoder's mean button is {g['encoder_mean_button']:.2f} where the person's is
{g['person_mean_button']:.2f}.{_gold_shape(g)}{_gold_taught(g)}
"""


def _gold_taught(g: dict) -> str:
    """What ``genie buttons`` teaches (the encoder's buttons, each tune's span centred), and how the
    decoder replays each set of buttons (an older result lacks them)."""
    if "gold_l2_taught" not in g:
        return ""
    text = (f"\n\n`genie buttons` teaches the encoder's buttons with each piece's span centred on the eight "
            f"(`pianogenie/placement.py`: the same shape, moved by a whole number of buttons, as a person "
            f"places a tune; `--as-encoded` keeps the encoder's placement). Gold for those buttons is "
            f"**{g['gold_l2_taught']:.2f}** (target <= 2: {_ok(g['gold_l2_taught'], 2.0)} for what a learner is "
            "shown; the encoder's own figure above is the paper's measure).")
    if "replay" in g:
        r = g["replay"]
        text += (f" Played back through the decoder (greedy, the gold tunes' fixed time between notes), the "
                 f"encoder's buttons give the tune's step between two notes {r['encoder']:.0%} of the time, the "
                 f"taught buttons {r['taught']:.0%} and the person's {r['person']:.0%}: the decoder takes part "
                 "of its register from the buttons, so moving them costs a little, and a person's buttons, "
                 "written without the model, replay the tune least.")
    return text


def _gold_shape(g: dict) -> str:
    """Gold split into where the encoder puts a tune and the tune's shape (an older result lacks it)."""
    if "gold_l2_shape" not in g:
        return ""
    return (f" In shape alone, with each tune's constant offset taken away (per transposition), the "
            f"difference is {g['gold_l2_shape']:.2f}: the other {g['gold_l2'] - g['gold_l2_shape']:.2f} is "
            "where the encoder puts the tune on the buttons, not the steps and leaps within it" +
            (f": its mean button rises {g['register_slope']:.2f} per semitone the tune is moved up (buttons 0 "
             f"to 7 span about {7 / g['register_slope']:.0f} semitones of register), so it places a tune by where "
             "on the keyboard it lies, where a person centres every tune."
             if g.get("register_slope", 0) >= 7 / 88 else "."))  # a slope that spans the keyboard or less


def _range_paragraph(g: dict | None) -> str:
    """The card's account of the range penalty (``evaluate.range_report``)."""
    if not g:
        return ""
    return f"""
Why the range penalty stays high ({g['range_penalty']:.2f} on this split): not a sum where a mean
was meant (it is the mean of max(|e| - 1, 0)^2 over notes, as magenta's), but the straight-through
estimator. The quantizer clips e to [-1, 1] before rounding, yet passes the gradient of the
unclipped e (magenta's `iqst` does the same: `x + stop_gradient(q - x)`), so for a note the decoder
would like lower than button 0 (or higher than 7) the reconstruction keeps pushing e past the end,
where the decoder cannot see it, and only the range penalty pulls back: they settle where the two
gradients balance. {g['outside']:.1%} of the notes' e lie outside [-1, 1]; {g['far_outside']:.1%} lie beyond
|e| = 3 and carry {g['far_share_of_penalty']:.0%} of the penalty: {g['far_low']:,} low ones (median pitch
{g['far_low_median_pitch'] or 0:.0f}, the bass) and {g['far_high']:,} high ones (median pitch
{g['far_high_median_pitch'] or 0:.0f}), against a median pitch of {g['median_pitch']:.0f}. It costs
nothing audible (those notes play on the end buttons either way); passing the gradient only inside
[-1, 1] would remove it, a change to the paper's method not tried here.
"""


ONNX_SEQUENCE = ("a song of 300 presses (buttons and gaps from a fixed seed), the state carried from "
                 "press to press, each press also as the look-ahead's batch of 16 rows")


def model_card(r: dict) -> str:
    from modelkit.onnx_export import card_section

    m, b, runs = r["model"], r.get("baseline", {}), r["runs"]
    last = runs.get("model_last_train", {})
    counts = runs["data"]
    cfg = runs["config"]
    dim, layers = cfg["model"].get("rnn_dim", 128), cfg["model"].get("rnn_layers", 2)
    split_rows = "\n".join(f"| {s} | {c['pieces']} | {c['performances']} | {c['notes']:,} |"
                           for s, c in counts.items())
    ratio = r.get("perplexity_ratio", float("nan"))
    player = m["player"]
    melodies = ", ".join(f"{k} {v:.0%}" for k, v in player["per_melody"].items())
    return f"""# Model card: Piano Genie (`pianogenie_decoder.pt`, `pianogenie_encoder.pt`)

Piano Genie (C. Donahue, I. Simon, S. Dieleman, IUI 2019, arXiv:1810.05246), reimplemented in
PyTorch in `pianogenie/` and trained here. A bidirectional-LSTM encoder turns each note of a piano
performance into one of 8 buttons (integer-quantized autoencoder, straight-through gradient); an
LSTM decoder learns to play the performance back from the buttons, the previous key and the time
since the previous note. The `pianogenie` processor runs the decoder: one note per button press.

- `pianogenie_decoder.pt`: TorchScript step `forward(button, prev_key, dt, h, c) -> (logits[88], h, c)`
  with the LSTM state explicit (`init_state(n)` gives zeros); prev_key 88 is the start symbol,
  dt is the delta-time bucket (31.25 Hz, 0..32, saturating).
- `pianogenie_encoder.pt`: `forward(keys, dt) -> buttons`, used by `genie buttons FILE.mid`.
- `pianogenie_metrics.json`: every number below; `pianogenie_loss.png`: the loss curves.

Made by: `{_train_command(cfg)}`{_tail_command(cfg)} and `genie train
pianogenie --baseline --out runs/pianogenie/baseline`, then `{_export_command(cfg)}` (export of
`best.pt`, the checkpoint with the lowest validation cross-entropy, evaluation with `genie eval
pianogenie`, this card).

## Data

- ASAP's copies of MAESTRO piano performances (`../shared/datasets/asap-maestro-subset`: 519
  performances, 44 h, see its SOURCE.md). Note onsets only, sorted by time then pitch; pitches
  21-108 as keys 0-87; delta-time to the previous onset quantized at 31.25 Hz into 33 buckets
  (the last one means 1.024 s or more, and is the first note's).
- Training examples: random 128-note crops, time stretch U[0.95, 1.05], transposition -6..+5
  semitones (notes pushed off the keyboard dropped), as the paper.

## Split

By piece, the rule of the dataset's SOURCE.md: h = int(sha1(composer + "|" + title), 16) mod 10;
0 test, 1 validation, otherwise train. No piece is in two splits.

| split | pieces | performances | notes |
|---|---:|---:|---:|
{split_rows}

## Training

- Model: encoder dense {dim} -> BiLSTM {layers}x{dim} -> 1; 8-level IQAE; decoder dense {dim} -> LSTM {layers}x{dim} ->
  88{" (the paper: 128 wide)" if dim != 128 else ""}. Loss: cross-entropy + range penalty + contour penalty, weights 1.0. Adam {_schedule(cfg)},
  batch {cfg['batch_size']}, seed {cfg['seed']}; torch {runs['torch']}, CPU.
- Shipped checkpoint: step **{m['step']:,}** (best validation cross-entropy), {m['wall_time_s'] / 3600:.2f} h
  of training wall time; the run had reached step {runs['model_latest_step']:,}
  ({runs['model_latest_wall_time_s'] / 3600:.2f} h) when this card was written.{_tail_effect(cfg, runs.get('model_val', []))}
- Baseline (the same decoder with no button input), trained alongside on the same data and split:
  {_baseline_which(b, runs)} {_trend(runs.get('baseline_val', []))}
- Hardware: 2 shared CPU cores (other jobs running), one or two torch threads, niced. The paper's
  checkpoint ran 166k steps; this one ran far fewer, so read the numbers as a curve in progress.
- Continue from the shipped run: copy `checkpoints/pianogenie` to `runs/`, then `genie train
  pianogenie --out {cfg['out_dir']}` resumes its `ckpt.pt` exactly (see
  `checkpoints/pianogenie/README.md`).

![loss curves](pianogenie_loss.png)

The two penalties pull against each other: the contour penalty asks the encoder's output to move
by at least 1/|dpitch| per note (a run of semitones wants steps of 1), the range penalty keeps it
within [-1, 1], where the 8 levels are. At the last logged step the training loss terms were
CE {last.get('ce', float('nan')):.3f}, range {last.get('range', float('nan')):.3f}, contour
{last.get('contour', float('nan')):.3f}: the range term rose early in training and levelled off
(lower panel); the checkpoint is chosen by validation cross-entropy alone.

## Metrics (test split: {m['windows']:,} non-overlapping 128-note windows, {m['notes']:,} notes, no augmentation)

| measure | Piano Genie | baseline (no buttons) | target | |
|---|---:|---:|---:|---|
| perplexity (exp mean CE, decoder given the encoder's buttons) | {m['perplexity']:.3f} | {b.get('perplexity', float('nan')):.3f} | <= 3.0 | {_ok(m['perplexity'], 3.0)} |
| perplexity, model / baseline | {ratio:.3f} | | <= 0.25 | {_ok(ratio, 0.25)} |
| top-1 accuracy | {m['accuracy']:.3f} | {b.get('accuracy', float('nan')):.3f} | | |
| contour violations (pairs with dpitch * dbutton < 0) | {m['contour_violations']:.2%} | | <= 3% | {_ok(m['contour_violations'], 0.03)} |
| button-usage perplexity (of 8) | {m['button_usage_perplexity']:.2f} | | >= 6 | {_ok(m['button_usage_perplexity'], 6.0, True)} |

Player's measure: {len(player['per_melody'])} melodies written for this (in no split), pressed with
buttons that follow their contour (their pitch range spread over the 8 buttons) in their rhythm,
decoded at temperature {player['temperature']} with {player['seeds']} seeds: the played pitch moves
the way the button moves **{player['contour_agreement']:.1%}** of the time ({melodies}).

Button use on the test split (buttons 0-7): {m['button_counts']}.
{_gold_paragraph(m.get('gold'))}{_range_paragraph(m.get('range'))}
{card_section(r.get('onnx') or {}, ONNX_SEQUENCE)}## Limits

{_limits_training(cfg)}
- Piano performances of 13 classical composers, mostly Bach, Beethoven and Chopin: the decoder
  plays in that style, whatever the musician has in mind.
- The decoder knows only the buttons, the keys it played and the timing: not velocity, pedal or
  note lengths (a note lasts as long as its button is held).

## Licence

{LICENCE_LINE}

- The data is CC BY-NC-SA 4.0: "ASAP dataset (Foscarin et al., ISMIR 2020), CC BY-NC-SA 4.0;
  performances from the MAESTRO dataset (Hawthorne et al., ICLR 2019, Google LLC), CC BY-NC-SA
  4.0". These weights are an adaptation of it: non-commercial use only, with attribution, and
  ShareAlike. A commercial use would need legal review.
- The code that made and plays them (Genie) is MIT.
"""


# ---- the VQ-VAE option -------------------------------------------------------------------------


def ship_vq(run: str | Path, out_dir: str | Path | None = None, which: str = "best.pt",
            perf: data.Performances | None = None, player_seeds: int = 10) -> dict:
    """Export the VQ-VAE option (``run/which``, its codes numbered by pitch) beside the IQAE's files,
    evaluate both shipped models on the test split, and write ``pianogenie_vq_metrics.json`` and
    the card ``pianogenie_vq.md``."""
    from pianogenie import evaluate
    from pianogenie.train import load_checkpoint, model_from_checkpoint

    run, out = Path(run), Path(out_dir) if out_dir else WEIGHTS_DIR
    if perf is None:
        perf = data.prepare()
    ckpt = load_checkpoint(run / which)
    model = model_from_checkpoint(ckpt)
    order = evaluate.number_codes(model, perf)
    export_model(model, out)
    onnx = {f.name: diff for f, diff in export_onnx(out, VQ_DECODER_FILE)}
    result = evaluate.run(evaluate.SHIPPED, None, perf=perf, player_seeds=player_seeds, weights_dir=out,
                          vq_path=evaluate.SHIPPED_VQ)
    latest = load_checkpoint(run / "ckpt.pt")
    result["vq"].update(step=ckpt["step"], wall_time_s=ckpt["wall_time_s"])
    result["runs"] = {"vq_latest_step": latest["step"], "vq_latest_wall_time_s": latest["wall_time_s"],
                      "vq_val": [(h["step"], h["val_ce"]) for h in latest["history"] if "val_ce" in h],
                      "code_order": order, "config": latest["config"], "model_args": latest["model_args"],
                      "torch": latest.get("torch", "")}
    result["onnx"] = onnx
    (out / metrics_file(True)).write_text(json.dumps(result, indent=1))
    (out / "pianogenie_vq.md").write_text(vq_card(result))
    return result


def refresh_cards(out_dir: str | Path | None = None) -> list[Path]:
    """Measure again what the shipped artefacts alone decide (the Gold measure, whose tunes live in
    ``pianogenie.gold``) and write both cards again from the kept metrics, updated: no run needed."""
    from pianogenie import evaluate
    from pianogenie.gold import gold_measure

    out, written, gold = Path(out_dir) if out_dir else WEIGHTS_DIR, [], {}
    shipped = {"model": evaluate.SHIPPED, "vq": evaluate.SHIPPED_VQ}
    for vq, card, write in ((False, "pianogenie.md", model_card), (True, "pianogenie_vq.md", vq_card)):
        path = out / metrics_file(vq)
        if not path.is_file():
            continue
        result = json.loads(path.read_text())
        for key in shipped.keys() & result.keys():  # both files hold the IQAE's row: measured once
            if key not in gold:
                gold[key] = gold_measure(evaluate.load(shipped[key], out)[0])
            result[key]["gold"] = gold[key]
        path.write_text(json.dumps(result, indent=1))
        (out / card).write_text(write(result))
        written += [path, out / card]
    return written


def _vq_trend(val: list[tuple[int, float]], n: int = 6) -> str:
    """Where the validation cross-entropy went over the run's last 2n evaluations (one is noisy)."""
    if len(val) < 2 * n:
        return ""
    before = sum(v for _, v in val[-2 * n:-n]) / n
    last = sum(v for _, v in val[-n:]) / n
    said = (f"Its validation cross-entropy averaged {before:.3f} nats over steps {val[-2 * n][0]:,}-{val[-n - 1][0]:,} "
            f"and {last:.3f} over steps {val[-n][0]:,}-{val[-1][0]:,}")
    if before - last < 0.03:
        return said + ": the curve had flattened, so more of the same training would not close the gap."
    return said + ": still falling."


def _vq_comparison(iq: dict, vq: dict, val: list[tuple[int, float]]) -> str:
    """What a player gets from each, said from the measured rows."""
    better = vq["perplexity"] < iq["perplexity"]
    lines = [
        f"- The **IQAE** (default) is the instrument of the paper: a higher button plays a higher note "
        f"(contour violations {iq['contour_violations']:.1%}; the pitch follows the button "
        f"{iq['player']['contour_agreement']:.0%} of the time), so a player can aim at a tune.",
        f"- The **VQ-VAE**'s buttons are not ordered by pitch: nothing in its loss asks for it, and numbered by "
        f"mean pitch they still break the contour {vq['contour_violations']:.0%} of the time (the pitch follows "
        f"the button {vq['player']['contour_agreement']:.0%} of the time). Each of its codes means whatever "
        f"helped the decoder most, so it suits a player who explores and listens more than one who aims."]
    if better:
        lines.append(f"- It also predicts the performances better per button (perplexity {vq['perplexity']:.2f} "
                     f"against {iq['perplexity']:.2f}), as in the paper: freedom from the contour is worth "
                     "information.")
    else:
        lines.append(f"- Unlike the paper's, ours does not predict the performances better than the IQAE "
                     f"(perplexity {vq['perplexity']:.2f} against {iq['perplexity']:.2f}): it trained "
                     f"{vq['wall_time_s'] / 3600:.1f} h against the IQAE's {iq['wall_time_s'] / 3600:.1f} h. "
                     + _vq_trend(val))
    return "\n".join(lines)


def vq_card(r: dict) -> str:
    """The VQ-VAE option's model card: what it is, its rows beside the IQAE's, what a player gets."""
    from modelkit.onnx_export import card_section

    iq, vq, runs = r["model"], r["vq"], r["runs"]
    cfg, args = runs["config"], runs["model_args"]

    def row(name: str, m: dict, paper: str) -> str:
        return (f"| {name} | {m['perplexity']:.3f} | {m['contour_violations']:.1%} | {m['gold']['gold_l2']:.2f} | "
                f"{m['button_usage_perplexity']:.2f} | {m['player']['contour_agreement']:.1%} | {paper} |")

    return f"""# Model card: Piano Genie, VQ-VAE option (`pianogenie_vq_decoder.pt`, `pianogenie_vq_encoder.pt`)

The paper's other bottleneck (Donahue, Simon, Dieleman, IUI 2019, Table 1, "VQ-VAE (k = 8)"),
trained here beside the shipped IQAE on the same data, split and decoder. The encoder emits a
{args['code_dim']}-d vector per note; the nearest of 8 learned code vectors is the button (van den Oord et al.
2017); the decoder sees that code vector instead of the IQAE's level. Loss: cross-entropy +
codebook term + {args['commitment']} x commitment term (magenta's `StpVq` configs: 8 x 64 codes, 0.25); no
contour or range penalty. A code no note of a batch chose is moved onto one of the batch's encoder
outputs, so all 8 buttons stay in use. The codes are then numbered by the mean pitch of the
training notes the encoder gives them (code order {runs['code_order']} became buttons 0-7): button 0 is the
code that plays lowest.

Play it with `options = {{ decoder = "vq" }}` on a `pianogenie` processor (see the README).

## What a player gets

| model | perplexity | contour violations | Gold | button use (of 8) | pitch follows the button | paper (PPL / CVR / Gold, with time input) |
|---|---:|---:|---:|---:|---:|---|
{row("IQAE + contour (default)", iq, "3.16 / 0.4 % / 1.61")}
{row("VQ-VAE (k = 8)", vq, "2.82 / 46.5 % / 9.15")}

Test split: {iq['windows']:,} windows of 128 notes. Gold and the player's measure as in
`pianogenie.md`.

{_vq_comparison(iq, vq, runs.get('vq_val', []))}

## Training

- VQ-VAE run: best checkpoint at step **{vq['step']:,}** ({vq['wall_time_s'] / 3600:.2f} h of wall time);
  the run had reached step {runs['vq_latest_step']:,} ({runs['vq_latest_wall_time_s'] / 3600:.2f} h).
  Adam {cfg['lr']:g}, batch {cfg['batch_size']}, seed {cfg['seed']}, torch {runs['torch']}, one CPU thread, niced,
  with other training beside it. The IQAE it is compared with trained for {iq['wall_time_s'] / 3600:.2f} h
  (step {iq['step']:,}): the VQ-VAE's numbers are of a shorter run.
- Made by `genie train pianogenie --vq` (run folder `runs/pianogenie/vq`, resumable, its last
  checkpoint kept in `checkpoints/pianogenie/vq`) and `genie export pianogenie --vq --card`.
- Data, split and augmentation: as `pianogenie.md`.

{card_section(r.get('onnx') or {}, ONNX_SEQUENCE)}## Licence

{LICENCE_LINE}

- The data is CC BY-NC-SA 4.0 (ASAP; MAESTRO, Google LLC): non-commercial use only, with
  attribution, and ShareAlike.
"""
