"""The scheduler's ordering and the note ledger's one-note-off-per-note-on guarantee."""

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.events import is_note_off, is_note_on
from daemon.scheduler import Scheduler

ON, OFF = 0x90, 0x80


def test_orders_by_due_time_then_note_off_first_then_sequence():
    s = Scheduler()
    s.push(20, "p", (ON, 60, 100), ("a", ""))
    s.push(10, "p", (ON, 62, 100), ("a", ""))
    s.push(10, "p", (OFF, 64, 0), ("a", ""))
    s.push(10, "p", (0xB0, 1, 5), ("a", ""))
    s.push(10, "p", (0xB0, 1, 6), ("a", ""))
    s.ledger.held[("p", 0, 64)] = [("a", "")]
    sent = s.pop_due(15)
    assert sent == [("p", (OFF, 64, 0)), ("p", (ON, 62, 100)), ("p", (0xB0, 1, 5)),
                    ("p", (0xB0, 1, 6))]
    assert s.pop_due(19) == []
    assert s.pop_due(20) == [("p", (ON, 60, 100))]


def test_same_pitch_from_two_owners_retriggers_and_ends_with_the_last_holder():
    s = Scheduler()
    assert s.send_now("p", (ON, 60, 100), ("thru", "a")) == [("p", (ON, 60, 100))]
    assert s.send_now("p", (ON, 60, 90), ("thru", "b")) == [("p", (OFF, 60, 0)), ("p", (ON, 60, 90))]
    assert s.send_now("p", (OFF, 60, 0), ("thru", "a")) == []  # b still holds it
    assert s.send_now("p", (OFF, 60, 0), ("thru", "b")) == [("p", (OFF, 60, 0))]
    assert s.ledger.sounding() == []


def test_note_off_from_a_non_holder_is_dropped_and_counted():
    s = Scheduler()
    s.send_now("p", (ON, 60, 100), ("a", ""))
    assert s.send_now("p", (OFF, 60, 0), ("b", "")) == []
    assert s.counters.get("unmatched_note_offs") == 1
    assert s.ledger.sounding() == [("p", 0, 60)]


def test_release_cancels_queued_note_ons_and_ends_held_notes():
    s = Scheduler()
    s.send_now("p", (ON, 60, 100), ("a", "x"))
    s.send_now("p", (ON, 61, 100), ("b", "x"))
    s.push(100, "p", (ON, 62, 100), ("a", "x"))
    assert s.release("a") == [("p", (OFF, 60, 0))]
    assert s.pop_due(1000) == []
    assert s.ledger.sounding() == [("p", 0, 61)]


def test_panic_sends_note_offs_then_sustain_off_then_all_notes_off():
    s = Scheduler()
    s.send_now("p", (ON | 2, 60, 100), ("a", ""))
    s.send_now("q", (ON, 70, 100), ("b", ""))
    s.push(50, "p", (ON | 2, 61, 100), ("a", ""))
    out = s.panic()
    assert out[:2] == [("p", (OFF | 2, 60, 0)), ("q", (OFF, 70, 0))]
    assert out[2:4] == [("p", (0xB2, 64, 0)), ("q", (0xB0, 64, 0))]
    assert out[4:] == [("p", (0xB2, 123, 0)), ("q", (0xB0, 123, 0))]
    assert len(s) == 0 and s.ledger.sounding() == []


ops = st.lists(st.tuples(st.sampled_from(["on", "off", "release"]), st.sampled_from("abc"),
                         st.integers(60, 63)), max_size=60)


@settings(max_examples=300)
@given(ops)
def test_output_stream_is_always_balanced_and_panic_leaves_nothing(seq):
    """Whatever owners do, each key's stream alternates on/off, and the end leaves none sounding."""
    s = Scheduler()
    stream = []
    for op, owner, pitch in seq:
        if op == "on":
            stream += s.send_now("p", (ON, pitch, 100), (owner, ""))
        elif op == "off":
            stream += s.send_now("p", (OFF, pitch, 0), (owner, ""))
        else:
            stream += s.release(owner)
    stream += s.panic()
    sounding = set()
    for _, msg in stream:
        if is_note_on(msg):
            assert msg[1] not in sounding
            sounding.add(msg[1])
        elif is_note_off(msg):
            assert msg[1] in sounding
            sounding.discard(msg[1])
    assert not sounding


def test_a_note_on_and_its_own_note_off_due_together_leave_nothing_sounding():
    s = Scheduler()
    s.push(10, "p", (ON, 60, 100), ("a", ""))
    s.push(10, "p", (OFF, 60, 0), ("a", ""))  # ranked first: finds no note
    assert s.pop_due(10) == [("p", (ON, 60, 100)), ("p", (OFF, 60, 0))]
    assert s.ledger.sounding() == []
    assert s.counters.get("zero_length_notes") == 1


def test_burst_times_keep_order_and_never_collide():
    from daemon.io.midi import burst_times

    assert burst_times(1000, [0.0, 0.0, 0.0], 0) == [1000, 1001, 1002]
    assert burst_times(10_000, [0.5e-6, 1e-6, 2e-6], 0) == [7000, 8000, 10_000]
    assert burst_times(10_000, [0.0, 1e-6], 9500) == [9501, 10_000]
