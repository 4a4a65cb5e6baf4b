"""The live ``musiclm`` processor on the processor contract: it listens (every note, or a chain),
answers after a silence, streams the answer ahead of the playhead, stops the moment the
musician plays again, and never leaves a note sounding. A tiny untrained Music Transformer is
exported for the tests; what is checked is the behaviour, not the music."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from offline_helpers import MS, left_sounding, offline_core

from daemon.events import NOTE_OFF, NOTE_ON, MidiEvent, is_note_off, is_note_on
from daemon.offline import _drive
from daemon.processor import Context, ProcessorError
from musiclm import tokenizer as tk
from musiclm.export import export_model
from musiclm.model import MusicTransformer, MusicTransformerConfig
from musiclm.processor import TOK_NOTE_ON, MusicLMProcessor, sample


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = MusicTransformer(MusicTransformerConfig(max_len=64, n_layer=1, n_head=2, d_model=32, d_ff=64,
                                                    dropout=0.0))
    with torch.no_grad():  # make notes and short time shifts likely, so answers are busy
        model.head.bias[TOK_NOTE_ON + 55:TOK_NOTE_ON + 80] += 3.0 if hasattr(model, "head") else 0
    path = tmp_path_factory.mktemp("musiclm") / "musiclm_maestro.pt"
    export_model(model, path, tk.PERFORMANCE_VOCAB)
    return path


def listener(weights, **options):
    raw = {"processor": [{"name": "musiclm", "buttons": "none",
                          "options": {"weights": str(weights), "silence_ms": 400.0, **options}}]}
    return offline_core(raw, {"musiclm": MusicLMProcessor})


def phrase(start_ms, pitches, source="kbd"):
    out = []
    for i, p in enumerate(pitches):
        out += [MidiEvent((start_ms + 150 * i) * MS, source, (NOTE_ON, p, 80)),
                MidiEvent((start_ms + 150 * i + 120) * MS, source, (NOTE_OFF, p, 0))]
    return out


def answer_notes(sent, channel=1):
    return [(t, m[1]) for t, m in sent if is_note_on(m) and m[0] & 0x0F == channel]


def test_it_answers_after_the_silence_and_leaves_nothing_sounding(weights):
    core, clock, sent = listener(weights)
    heard = phrase(0, [60, 62, 64, 65, 67])
    _drive(core, heard, clock)
    proc = core.slots[0].proc
    last_release = heard[-1].time_ns
    answer = answer_notes(sent)
    assert proc.answers == 1 and answer
    assert answer[0][0] >= last_release + 400 * MS  # after the silence ...
    assert answer[0][0] <= last_release + (400 + 20 + 20 + 5) * MS  # ... and promptly (first gap cap)
    assert proc.position > 20  # everything heard was fed to the model
    assert left_sounding(sent) == set()


def test_playing_again_stops_the_answer_on_the_same_pass(weights):
    core, clock, sent = listener(weights, length_s=20.0, length_notes=500)
    heard = phrase(0, [60, 64, 67])
    again_ms = 300 + 400 + 1_500  # 1.5 s into the answer
    _drive(core, heard + phrase(again_ms, [72]), clock)
    proc = core.slots[0].proc
    cut = again_ms * MS
    assert proc.cut == 1
    answer = answer_notes(sent)
    assert [t for t, _ in answer if t < cut]
    # nothing of the answer after the cut (the next answer comes after the new phrase's silence)
    assert not [t for t, _ in answer if cut <= t < cut + 500 * MS]
    # every answer note sounding at the cut ended on that same pass
    sounding = left_sounding([(t, m) for t, m in sent if t < cut and m[0] & 0x0F == 1])
    ended = {m[1] for t, m in sent if t == cut and is_note_off(m) and m[0] & 0x0F == 1}
    assert sounding <= ended
    assert proc.answers == 2  # it listened again, and answered the new phrase
    assert left_sounding(sent) == set()


def test_polyphony_note_length_and_answer_length_are_kept(weights):
    core, clock, sent = listener(weights, polyphony=2, max_note_s=0.3, length_s=3.0, top_p=1.0,
                                 temperature=1.5)
    _drive(core, phrase(0, [60, 62]), clock)
    ch1 = [(t, m) for t, m in sent if m[0] & 0x0F == 1 and (is_note_on(m) or is_note_off(m))]
    sounding, onset, most = set(), {}, 0
    for t, m in ch1:
        if is_note_on(m):
            sounding.add(m[1])
            onset[m[1]] = t
            most = max(most, len(sounding))
        else:
            if m[1] in sounding:
                assert t - onset[m[1]] <= 300 * MS + 1
            sounding.discard(m[1])
    assert most <= 2
    start = min(t for t, _ in ch1)
    assert max(t for t, _ in ch1) - start <= 3.2e9
    assert left_sounding(sent) == set()


def test_a_chain_lets_it_answer_another_processor(weights):
    from daemon.processors.thru import ThruProcessor

    raw = {"processor": [{"name": "thru", "label": "player"},
                         {"name": "musiclm", "label": "answer", "inputs": ["player"],
                          "options": {"weights": str(weights), "silence_ms": 300.0}}]}
    core, clock, sent = offline_core(raw, {"player": ThruProcessor(), "musiclm": MusicLMProcessor})
    _drive(core, phrase(0, [60, 62, 64, 65]), clock)  # white keys: the player's buttons
    proc = core.slots[1].proc
    assert proc.answers == 1 and proc.position > 10
    assert answer_notes(sent)
    assert left_sounding(sent) == set()


def test_same_input_and_seed_give_the_same_answer(weights):
    runs = []
    for _ in range(2):
        core, clock, sent = listener(weights)
        _drive(core, phrase(0, [60, 62, 64]), clock)
        runs.append(sent)
    assert runs[0] == runs[1]


def test_nucleus_sampling_keeps_the_likeliest_tokens():
    rng = np.random.default_rng(0)
    logits = np.array([5.0, 4.0, 0.0, -3.0])
    draws = {sample(logits, rng, 1.0, 0.7) for _ in range(200)}
    assert draws == {0}  # p(0) = 0.72 covers top_p = 0.7 alone
    assert sample(logits, rng, 0.0, 1.0) == 0
    assert {sample(logits, rng, 1.0, 1.0) for _ in range(400)} >= {0, 1, 2}


def test_a_model_of_another_vocabulary_is_refused(tmp_path):
    model = MusicTransformer(MusicTransformerConfig(vocab_size=131, max_len=16, n_layer=1, n_head=1,
                                                    d_model=8, d_ff=16))
    path = export_model(model, tmp_path / "jsb.pt", tk.JSB_VOCAB)
    with pytest.raises(ProcessorError, match="not a performance model"):
        MusicLMProcessor().start(Context("musiclm", {"weights": str(path)}))


def test_an_answer_leaves_what_was_heard_as_it_was(weights):
    # the step writes its cache in place: the answer samples from a copy, so the model goes on
    # from exactly what the musician played, as one that never answered
    caches = []
    for silence_ms in (400.0, 60_000.0):
        core, clock, sent = listener(weights, silence_ms=silence_ms)
        _drive(core, phrase(0, [60, 62, 64, 65, 67]), clock)
        proc = core.slots[0].proc
        caches.append((proc.answers, proc.position, proc.cache.copy()))
    (answered, pos_a, heard_a), (silent, pos_s, heard_s) = caches
    assert answered == 1 and silent == 0 and pos_a == pos_s
    np.testing.assert_array_equal(heard_a, heard_s)


def test_a_model_file_from_before_the_ring_cache_is_refused(tmp_path):
    from daemon import runtime
    from musiclm.export import MusicTransformerStep

    class GrowingCache(MusicTransformerStep):  # as exported before the ring: no `cache` constant
        def __init__(self, model, vocab):
            super().__init__(model, vocab)
            del self.cache

    model = MusicTransformer(MusicTransformerConfig(max_len=16, n_layer=1, n_head=1, d_model=8, d_ff=16))
    path = tmp_path / "old.pt"
    runtime.save_model(GrowingCache(model.eval(), tk.PERFORMANCE_VOCAB), path)
    with pytest.raises(ProcessorError, match="export it again"):
        MusicLMProcessor().start(Context("musiclm", {"weights": str(path)}))
