"""Processors that think ahead, through real JACK ports: the test processors ``bars`` (clocked)
and ``answerer`` (streaming) from tests/plugins run in ``genie run``; a JACK client is the DAW
(MIDI clock, Start, Stop, Song Position Pointer) and the musician."""

from __future__ import annotations

import time

import pytest
from jack_helpers import NOTE_OFF, NOTE_ON, Daw, config_text, drain, is_on, sounding_after

from daemon.events import CONTINUE, SONG_POSITION, STOP, now_ns

jack = pytest.mark.jack
MS = 1_000_000



@jack
@pytest.mark.parametrize("bpm", [120, 93])
def test_clocked_processor_plays_on_the_daws_beat_and_stops_with_it(rig, bpm):
    rig.genie(config_text('name = "bars"\nclock = true\nclock_lost_ms = 300', midi="echo_window_ms = 0"))
    c = rig.client()
    daw = Daw(c, bpm, 24 * 8 + 2)  # two bars and two clocks: then the clock stops (lost)
    daw.start()
    daw.join(30)
    got = drain(c)
    ons = [(t, m) for t, m in got if is_on(m)]
    # against the beat grid: a clock the test's sender was late with (a preempted Python thread)
    # would put a note Genie placed on the tempo line before it
    beats = daw.due[::24]
    assert [m[1] for _, m in ons] == [36, 42, 42, 42, 36, 42, 42, 42, 36], got
    lag = [t - beats[k] for k, (t, _) in enumerate(ons)]
    # on the beat: every note the same JACK hop (a period or two) after its beat's clock
    period = 256 / 48000 * 1e9
    assert max(lag) - min(lag) < 2 * period + 3 * MS, [round(x / MS, 2) for x in lag]
    # not before the beat, but for the tempo line's own error: fitted to clocks that arrive with
    # the jitter of a JACK server without real-time scheduling, it put one beat 0.39 ms early once
    assert -1 * MS <= min(lag) and max(lag) < 4 * period + 5 * MS, [round(x / MS, 2) for x in lag]
    assert sounding_after([m for _, m in got]) == set()  # the lost clock ended the groove


@jack
def test_clocked_processor_follows_stop_and_song_position(rig):
    rig.genie(config_text('name = "bars"\nclock = true', midi="echo_window_ms = 0"))
    c = rig.client()
    daw = Daw(c, 120, 24 * 5 + 6)  # into beat 2 of bar 1
    daw.start()
    daw.join(30)
    c.send((STOP,))
    first = drain(c)
    assert [m[1] for m in (m for _, m in first) if is_on(m)] == [36, 42, 42, 42, 36, 42]
    assert sounding_after([m for _, m in first]) == set()  # Stop ended the sounding beat
    c.send((SONG_POSITION, 48, 0))  # 48 sixteenths: bar 3
    daw = Daw(c, 120, 24 * 2, start_msg=CONTINUE)
    daw.start()
    daw.join(30)
    c.send((STOP,))
    second = drain(c)
    assert [m[1] for m in (m for _, m in second) if is_on(m)] == [36, 42]  # bar 3 from its downbeat
    assert sounding_after([m for _, m in first + second]) == set()


@jack
def test_an_answer_arrives_after_a_phrase_and_stops_when_the_musician_plays_again(rig):
    options = "options = { silence_ms = 300.0, compute_ms = 30.0, spacing_ms = 120.0 }"
    rig.genie(config_text(f'name = "answerer"\nbuttons = "none"\n{options}', midi="echo_window_ms = 0"))
    c = rig.client()
    phrase = [60, 62, 64, 65, 67, 69, 71, 72]
    for p in phrase:
        c.send((NOTE_ON, p, 90))
        time.sleep(0.05)
        c.send((NOTE_OFF, p, 0))
        time.sleep(0.03)
    sent_at = now_ns()
    answer = c.expect(4, 5.0)  # the first two notes of the answer, on and off
    assert [m[1] for _, m in answer if is_on(m)][:1] == [72]
    assert answer[0][0] - sent_at < 1_000 * MS  # it answered after the silence
    cut_at = c.send((NOTE_ON, 48, 90))  # play again, mid-answer
    rest = drain(c)
    after = [(t, m) for t, m in rest if t > cut_at + 20 * MS]
    assert not any(is_on(m) for _, m in after), rest  # the answer stopped at once
    played = [m for _, m in answer + rest]
    assert 2 <= sum(is_on(m) for m in played) < len(phrase)
    c.send((NOTE_OFF, 48, 0))
    assert sounding_after(played) == set()
