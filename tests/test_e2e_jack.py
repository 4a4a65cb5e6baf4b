"""End to end through real ports: ``genie run`` as a subprocess on a private JACK dummy server.

A second JACK client plays into "Genie in:Genie in" and listens to "Genie out:Genie out"; every
check waits on the client's queue with a deadline. Run these one at a time (no xdist).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import mido
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from jack_helpers import (
    CC,
    NOTE_OFF,
    NOTE_ON,
    config_text,
    counters_of,
    genie_cmd,
    is_off,
    is_on,
    notes,
    sounding_after,
)

from daemon.events import now_ns
from daemon.io.jack import wait_connected

jack = pytest.mark.jack

PANIC_TAIL = [(CC, 64, 0), (CC, 123, 0)]
LATENCY_NS = 50_000_000  # generous: one JACK period here is 5.3 ms


def wait_log(proc, text: str, timeout_s: float = 5.0) -> str:
    """The first log line holding ``text`` (the log is read on a thread, so wait for it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for line in list(proc.log_lines):
            if text in line:
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line with {text!r} in:\n{proc.log}")
        time.sleep(0.01)


def xrun_counts(server) -> tuple[int, int]:
    """(xruns the JACK server blames on one of Genie's clients, cycles the driver ran late)."""
    lines = server.xruns()
    return (sum("client = Genie" in line for line in lines),
            sum("JackTimedDriver::Process XRun" in line for line in lines))


# ---- 1. thru ---------------------------------------------------------------------------------


@jack
def test_thru_keeps_pitches_order_and_output_channel(rig):
    rig.genie(config_text('name = "thru"\nout_channel = 3', midi="echo_window_ms = 0"))
    c = rig.client()
    pitches = [61, 48, 66, 60, 75, 70]  # 60 is a button: thru's default button notes are the same
    sent_at = [c.send((NOTE_ON, p, 100 - i)) for i, p in enumerate(pitches)]
    got = c.expect(len(pitches))
    assert [m for _, m in got] == [(0x92, p, 100 - i) for i, p in enumerate(pitches)]
    assert all(t - s < LATENCY_NS for (t, _), s in zip(got, sent_at))

    sent_at = [c.send((NOTE_OFF, p, 0)) for p in pitches]
    got = c.expect(len(pitches))
    assert [m for _, m in got] == [(0x82, p, 0) for p in pitches]
    assert all(t - s < LATENCY_NS for (t, _), s in zip(got, sent_at))


@jack
def test_thru_note_on_and_off_in_one_jack_cycle_leave_nothing_sounding(rig):
    rig.genie(config_text(midi="echo_window_ms = 0"))
    c = rig.client()
    for p in range(80, 88):  # quick grace notes: on and off within microseconds
        c.send((NOTE_ON, p, 90))
        c.send((NOTE_OFF, p, 0))
    c.send((NOTE_ON, 100, 1))
    c.send((NOTE_OFF, 100, 0))  # the marker's off may stick too: wait for its on only
    out = c.until((NOTE_ON, 100, 1))
    assert (NOTE_ON, 100, 1) in out
    assert sounding_after(out) - {(0, 100)} == set(), f"stuck notes: {out}"


# ---- 2. buttons ------------------------------------------------------------------------------


@jack
@pytest.mark.parametrize("processor, plays", [
    pytest.param('name = "thru"\noptions = { notes = [40, 41, 42, 43, 44, 45, 46, 47] }',
                 {60: 40, 62: 41, 64: 42, 72: 47, 61: 61, 59: 59}, id="default-map"),
    pytest.param('name = "thru"\nbuttons = [48, 50, 52, 53, 55, 57, 59, 60]\n'
                 'options = { notes = [72, 74, 76, 77, 79, 81, 83, 84] }',
                 {48: 72, 53: 77, 60: 84, 62: 62, 49: 49}, id="remapped"),
])
def test_buttons_play_the_configured_notes(rig, processor, plays):
    rig.genie(config_text(processor, midi="echo_window_ms = 0"))
    c = rig.client()
    for key, note in plays.items():
        c.send((NOTE_ON, key, 99))
        assert c.take(1) == [(NOTE_ON, note, 99)], f"key {key}"
        c.send((NOTE_OFF, key, 0))
        assert c.take(1) == [(NOTE_OFF, note, 0)], f"key {key}"


# ---- 3. SIGTERM ------------------------------------------------------------------------------


@jack
def test_sigterm_ends_sounding_notes_before_exit(rig):
    g = rig.genie(config_text())
    c = rig.client()
    c.send((NOTE_ON, 61, 100))
    assert c.take(1) == [(NOTE_ON, 61, 100)]
    code = g.stop(signal.SIGTERM)
    exited_ns = now_ns()
    got = c.expect(3, timeout_s=2)
    assert [m for _, m in got] == [(NOTE_OFF, 61, 0), *PANIC_TAIL]
    assert all(t < exited_ns for t, _ in got), "final messages arrived after the daemon exited"
    assert code == 0
    wait_log(g, "genie: stopped")


# ---- 4. a processor that raises (third-party plug-in) ----------------------------------------


@jack
def test_processor_that_raises_costs_its_notes_not_the_gig(rig):
    g = rig.genie(config_text('name = "raiser"', midi="echo_window_ms = 0"))  # tests/plugins
    c = rig.client()
    for p in (50, 53):
        c.send((NOTE_ON, p, 100))
        assert c.take(1) == [(NOTE_ON, p, 100)]
    c.send((NOTE_ON, 99, 100))  # the plug-in raises on this pitch
    released = c.take(2)
    assert sorted(released) == [(NOTE_OFF, 50, 0), (NOTE_OFF, 53, 0)]
    c.send((NOTE_ON, 55, 100))  # and keeps playing
    assert c.take(1) == [(NOTE_ON, 55, 100)]
    line = wait_log(g, "processor raiser raised RuntimeError")
    assert "test plug-in raises on pitch 99" in line and "released" in line

    assert g.stop() == 0
    stopped = wait_log(g, "genie: stopped")
    assert counters_of(stopped).get("processor_errors.raiser") == 1
    assert sum("raised" in line for line in g.log_lines) == 1
    assert "Traceback" not in g.log
    assert c.take(3, timeout_s=2) == [(NOTE_OFF, 55, 0), *PANIC_TAIL]


# ---- 5. one pitch from two sources -----------------------------------------------------------


@jack
def test_same_pitch_from_two_sources_ends_with_its_last_holder(rig):
    # The second client's own virtual output is a separate source that Genie reads via midi.inputs;
    # it must exist before the daemon starts.
    c2 = rig.client(target_in=None, target_out=None)
    rig.genie(config_text(midi=f'echo_window_ms = 0\ninputs = ["{c2.name} play:*"]'))
    assert wait_connected(c2.play_port)  # Genie's connection runs before c2 plays
    c1 = rig.client()
    transcript = []

    c1.send((NOTE_ON, 60, 90))
    transcript += c1.take(1)
    assert transcript == [(NOTE_ON, 60, 90)]
    c2.send((NOTE_ON, 60, 70))
    retrigger = c1.take(2)
    transcript += retrigger
    assert retrigger == [(NOTE_OFF, 60, 0), (NOTE_ON, 60, 70)]

    c1.send((NOTE_OFF, 60, 0))  # the first holder lets go: 60 keeps sounding
    c1.send((NOTE_ON, 66, 5))  # a marker behind it on the same source
    got = c1.until((NOTE_ON, 66, 5))
    transcript += got
    assert got == [(NOTE_ON, 66, 5)], "the key was released while the other source held it"
    c1.send((NOTE_OFF, 66, 0))
    transcript += c1.take(1)

    c2.send((NOTE_OFF, 60, 0))  # the last holder lets go: exactly one note-off
    got = c1.take(1)
    transcript += got
    assert got == [(NOTE_OFF, 60, 0)]
    c1.send((NOTE_ON, 67, 5))  # a marker: nothing more for 60 came before it
    got = c1.until((NOTE_ON, 67, 5))
    c1.send((NOTE_OFF, 67, 0))
    got += c1.take(1)
    transcript += got
    assert got == [(NOTE_ON, 67, 5), (NOTE_OFF, 67, 0)]

    ons = [m for m in transcript if is_on(m) and m[1] == 60]
    offs = [m for m in transcript if is_off(m) and m[1] == 60]
    assert len(ons) == len(offs) == 2
    assert sounding_after(transcript) == set()


# ---- 6. panic --------------------------------------------------------------------------------


@jack
def test_panic_from_command_signal_cc_and_all_notes_off(rig):
    g = rig.genie(config_text(midi="echo_window_ms = 0", engine="panic_cc = 20"))
    c = rig.client()

    def hold(*pitches):
        for p in pitches:
            c.send((NOTE_ON, p, 100))
        assert sorted(c.take(len(pitches))) == [(NOTE_ON, p, 100) for p in sorted(pitches)]

    def expect_panic(*pitches):
        got = c.take(len(pitches) + 2)
        assert sorted(got[:len(pitches)]) == [(NOTE_OFF, p, 0) for p in sorted(pitches)]
        assert got[len(pitches):] == PANIC_TAIL

    hold(61, 63)
    done = subprocess.run(genie_cmd("panic", config=g.config), env={**os.environ, **rig.env},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert f"pid {g.proc.pid}" in done.stdout
    expect_panic(61, 63)

    hold(65, 66)
    g.send_signal(signal.SIGUSR1)
    expect_panic(65, 66)

    hold(68)
    c.send((CC, 20, 127))  # engine.panic_cc
    expect_panic(68)

    hold(70, 73)
    c.send((CC, 123, 0))  # all notes off from the DAW: Genie ends what it sounds
    assert sorted(c.take(2)) == [(NOTE_OFF, 70, 0), (NOTE_OFF, 73, 0)]

    assert g.stop() == 0
    assert counters_of(wait_log(g, "genie: stopped")).get("panics") == 3
    assert c.take(2, timeout_s=2) == PANIC_TAIL  # nothing left sounding to end at exit


# ---- 7. recording ----------------------------------------------------------------------------


@jack
def test_record_holds_input_and_output_with_final_note_offs(rig, tmp_path):
    out = tmp_path / "out.mid"
    g = rig.genie(config_text(midi="echo_window_ms = 0"), "--record", str(out))
    c = rig.client()
    played = [(NOTE_ON, 61, 100), (NOTE_OFF, 61, 0), (NOTE_ON, 66, 80)]
    for msg in played:
        c.send(msg)
        assert c.take(1) == [msg]
    assert g.stop() == 0
    assert c.take(3, timeout_s=2) == [(NOTE_OFF, 66, 0), *PANIC_TAIL]

    mid = mido.MidiFile(out)
    tracks = {t.name: [tuple(m.bytes()) for m in t if not m.is_meta] for t in mid.tracks}
    assert tracks["Genie input"] == played
    assert tracks["Genie out (output)"] == [*played, (NOTE_OFF, 66, 0), *PANIC_TAIL]
    assert not (tmp_path / "out.mid.journal").exists()


# ---- 8. bad input and a flood ----------------------------------------------------------------

data = st.integers(0, 127)
junk_messages = st.one_of(
    st.lists(st.integers(0, 255), min_size=1, max_size=6),  # random bytes
    st.builds(lambda s, d: [s, *d], st.integers(0x80, 0xEF), st.lists(data, max_size=1)),  # cut
    st.builds(lambda d, end: [0xF0, *d, *end], st.lists(data, max_size=40),
              st.sampled_from([[0xF7], []])),  # sysex, whole or cut
    st.builds(lambda s, p, v: [s, p, v], st.sampled_from([0x80, 0x90, 0xB0, 0xE0]), data, data),
)


@jack
def test_bad_input_and_flood_leave_the_daemon_playing_and_nothing_sounding(rig, live_jack):
    g = rig.genie(config_text(midi="echo_window_ms = 0"))
    c = rig.client()
    transcript = []

    def alive(velocity: int) -> None:
        """A new note still comes out (after everything sent before it was handled). Right after
        a flood the input queue may still be full, and a full queue drops note-ons first: try
        again then."""
        for _ in range(3):
            c.send((NOTE_ON, 100, velocity))
            got = c.until((NOTE_ON, 100, velocity), timeout_s=3)
            transcript.extend(got)
            if got and got[-1] == (NOTE_ON, 100, velocity):
                break
        else:
            raise AssertionError("the daemon stopped playing")
        c.send((NOTE_OFF, 100, 0))

    # Bad input: random bytes, truncated messages, sysex (rtmidi refuses some: skip those).
    for msg in ([0x90, 60], [0x12, 0x34], [0xF0, 1, 2], [0xF7]):  # surely malformed (the F7
        # ends the cut sysex: rtmidi glues the two together)
        c.send(msg)

    # No shrinking: the daemon carries state from one example to the next, and each failing
    # example costs a timeout.
    @settings(max_examples=5, deadline=None, database=None,
              suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(st.lists(junk_messages, min_size=1, max_size=40))
    def junk(messages):
        for msg in messages:
            try:
                c.send(msg)
            except ValueError:  # rtmidi: empty, or longer than 3 bytes and not sysex
                continue
        # Close a sysex left open: rtmidi's JACK input swallows everything until an F7 (see
        # test_unterminated_sysex_does_not_swallow_the_notes_after_it).
        c.send([0xF7])
        alive(velocity=1)

    junk()

    # xruns blamed on Genie while idle, then during a flood of the same length.
    t0 = time.monotonic()
    idle_before = xrun_counts(live_jack)
    while time.monotonic() - t0 < 1.0:  # a measurement window, not a wait for a result
        time.sleep(0.05)
    idle_after = xrun_counts(live_jack)
    idle_xruns, idle_late = (a - b for a, b in zip(idle_after, idle_before))

    flood_before = xrun_counts(live_jack)
    sent = 0
    start = time.monotonic()
    for chunk in range(100):  # 100 chunks of 100 messages, one chunk every 10 ms
        for i in range(25):
            p = 36 + (chunk * 25 + i) % 60
            c.send((NOTE_ON, p, 64))
            c.send((NOTE_OFF, p, 0))
            c.send((CC, 1, (chunk + i) % 128))  # mod wheel: passed through
            c.send((CC, 7, i))  # volume: thru ignores it
            sent += 4
        pause = start + (chunk + 1) * 0.01 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    flood_s = time.monotonic() - start
    flood_after = xrun_counts(live_jack)  # over the same 1 s as the idle window
    flood_xruns, flood_late = (a - b for a, b in zip(flood_after, flood_before))
    alive(velocity=2)  # the whole flood has been handled

    # Release everything: then every note-on that came out has a later note-off.
    for p in range(128):
        c.send((NOTE_OFF, p, 0))
    c.send((NOTE_ON, 101, 3))
    transcript += c.until((NOTE_ON, 101, 3), timeout_s=10)
    c.send((NOTE_OFF, 101, 0))
    transcript += c.until((NOTE_OFF, 101, 0), timeout_s=10)
    assert transcript[-1] == (NOTE_OFF, 101, 0)
    assert sounding_after(transcript) == set()
    assert len(notes(transcript)) > 1000  # the flood came out

    assert g.stop() == 0
    stopped = counters_of(wait_log(g, "genie: stopped"))
    assert stopped.get("dropped_malformed", 0) >= 1
    totals: dict[str, int] = {}
    for line in g.log_lines:  # "engine counters: k +n, ..." once a second while playing
        if "engine counters:" in line:
            for item in line.split("engine counters:", 1)[1].rstrip("]").split(","):
                key, n = item.split()
                totals[key] = totals.get(key, 0) + int(n)
    dropped = {k: v for k, v in totals.items() if k.startswith("dropped_")}
    assert all(stopped.get(k, 0) >= v for k, v in dropped.items()), (stopped, dropped)

    print(f"flood: {sent} messages in {flood_s:.2f} s; xruns blamed on Genie: idle {idle_xruns} "
          f"in 1 s, flood {flood_xruns}; late driver cycles: idle {idle_late}, flood "
          f"{flood_late}; stopped with {stopped}")
    assert flood_s < 3.0
    assert flood_xruns <= idle_xruns + 10
    assert flood_late <= idle_late + 25  # of ~190 cycles: Genie must not hold JACK's thread


@jack
def test_unterminated_sysex_does_not_swallow_the_notes_after_it(rig):
    """python-rtmidi/RtMidi JACK input (MidiInJack jackProcessIn, since thestk/rtmidi#189): after
    an event that starts with F0 and does not end with F7, every later event is appended to that
    sysex until one ends with F7. Genie's own client nudges its input with a lone F7 twice a
    second, and the engine takes the glued messages back out (late, but heard)."""
    g = rig.genie(config_text(midi="echo_window_ms = 0"))
    c = rig.client()
    c.send([0xF0, 0x7D, 1, 2])  # a sysex cut short (a cable pulled mid-dump, a buggy device)
    c.send((NOTE_ON, 62, 100))
    c.send((NOTE_OFF, 62, 0))
    got = c.take(2, timeout_s=3)
    assert got == [(NOTE_ON, 62, 100), (NOTE_OFF, 62, 0)]
    c.send((NOTE_ON, 64, 100))  # and after it, as ever
    assert c.take(1, timeout_s=2) == [(NOTE_ON, 64, 100)]
    c.send((NOTE_OFF, 64, 0))
    assert wait_log(g, "cut short")


# ---- 9. user errors: one line, exit code 2 ---------------------------------------------------


@jack
def test_an_input_port_not_there_yet_is_read_when_it_appears(rig):
    """At a gig the controller may be plugged in after Genie started: a warning, then it plays."""
    from daemon.rigs.loopback import PortClient

    g = rig.genie(config_text(midi="echo_window_ms = 0"), "--input", "gt-late play*")
    assert wait_log(g, "is not there yet")
    listen = rig.client(target_in=None)
    late = PortClient("gt-late", target_in=None, target_out=None)
    try:
        wait_log(g, "is there: reading it", timeout_s=5)
        time.sleep(0.3)
        late.send((NOTE_ON, 61, 90))
        assert listen.take(1, 3.0) == [(NOTE_ON, 61, 90)]
        late.send((NOTE_OFF, 61, 0))
        assert listen.take(1, 3.0) == [(NOTE_OFF, 61, 0)]
    finally:
        late.close()


@jack
def test_a_failed_start_leaves_no_jack_client_behind(rig, live_jack):
    path = rig.write_config(config_text())
    t0 = time.monotonic()
    link = rig.tmp_path / "take.mid"
    link.symlink_to(rig.tmp_path / "elsewhere.mid")
    done = subprocess.run(  # a take through a symlink: refused after the ports were opened
        genie_cmd("run", "--no-keyboard", "--record", str(link), config=path),
        env={**os.environ, **rig.env}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr
    assert live_jack.ping(timeout_s=1.0)
    stalled_s = time.monotonic() - t0  # the server waits for the dead client while genie exits
    assert stalled_s < 3.0, f"genie's exit and the JACK server stalled for {stalled_s:.1f} s"


@pytest.mark.parametrize("text, key", [
    ('[midi]\napi = "jack"\nbogus = 1\n', "'midi.bogus'"),
    ('[bogus]\nx = 1\n', "'bogus'"),
])
def test_unknown_config_key_exits_2_naming_file_and_key(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    done = subprocess.run(genie_cmd("run", "--no-keyboard", config=path),
                          env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and key in lines[0] and "unknown key" in lines[0]


# ---- 10. stable port names -------------------------------------------------------------------


@jack
def test_port_names_are_stable_for_a_third_party_client(rig):
    for _ in range(2):  # and the same again after a restart
        g = rig.genie(config_text())
        listed = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=30,
                                check=True).stdout.splitlines()
        assert "Genie in:Genie in" in listed
        assert "Genie out:Genie out" in listed
        assert not [p for p in listed if p.startswith(("Genie in-", "Genie out-"))], listed
        assert g.stop() == 0


# ---- 11. an input port that goes away ----------------------------------------------------------


@jack
def test_a_lost_input_port_releases_what_it_was_holding(rig):
    keyboard = rig.client(target_in=None, target_out=None)  # a USB keyboard, say
    rig.genie(config_text(midi=f'echo_window_ms = 0\ninputs = ["{keyboard.name} play:*"]'))
    assert wait_connected(keyboard.play_port)
    listener = rig.client()
    keyboard.send((NOTE_ON, 61, 90))
    assert listener.take(1) == [(NOTE_ON, 61, 90)]
    rig.clients.remove(keyboard)
    keyboard.close()  # unplugged while the key is down
    assert listener.take(1, timeout_s=5) == [(NOTE_OFF, 61, 0)]  # noticed within about a second


@jack
def test_a_processor_that_hears_nothing_is_said_so(rig):
    g = rig.genie(config_text('name = "thru"\ninputs = ["Launchkey*"]'))
    assert wait_log(g, "hears nothing")


@jack
def test_a_take_a_crash_left_is_recovered_and_the_new_one_records(rig):
    import json as _json

    take = rig.tmp_path / "gig.mid"
    journal = rig.tmp_path / "gig.mid.journal"
    journal.write_bytes(_json.dumps({"genie_journal": 1, "start_ns": 0}).encode() + b"\n"
                        + b'["in",5000000,"keys","903c64"]\n')
    g = rig.genie(config_text(midi="echo_window_ms = 0"), "--record", str(take))
    assert wait_log(g, "was recovered")
    c = rig.client()
    c.send((NOTE_ON, 60, 90))
    c.take(1)
    c.send((NOTE_OFF, 60, 0))
    c.take(1)
    assert g.stop() == 0
    assert (rig.tmp_path / "gig-recovered.mid").is_file() and take.is_file() and not journal.exists()
