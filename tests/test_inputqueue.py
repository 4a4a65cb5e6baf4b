"""The bounded input queue: bounded, and never drops note-offs or transport."""

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.events import ButtonEvent, Counters, MidiEvent
from daemon.inputqueue import InputQueue, protected

messages = st.one_of(
    st.tuples(st.sampled_from([0x90, 0x80]), st.integers(0, 127), st.integers(0, 127)),
    st.tuples(st.just(0xB0), st.integers(0, 3), st.integers(0, 127)),
    st.sampled_from([(0xFA,), (0xFC,), (0xFB,), (0xF2, 1, 2), (0xF8,)]),
)


@settings(max_examples=200)
@given(st.lists(messages, max_size=400), st.integers(16, 64))
def test_bounded_and_protected_events_survive(msgs, limit):
    q = InputQueue(limit, Counters())
    events = [MidiEvent(i, "in", m) for i, m in enumerate(msgs)]
    for ev in events:
        q.push(ev)
    kept = q.pop_batch(10_000)
    n_protected = sum(protected(e) for e in events)
    assert len(kept) <= max(limit, n_protected)
    kept_ids = {id(e) for e in kept}
    assert all(id(e) in kept_ids for e in events if protected(e))
    assert [e.time_ns for e in kept] == sorted(e.time_ns for e in kept)  # order kept
    dropped = sum(q.counters.values.values())
    assert dropped == len(events) - len(kept)


def test_note_ons_dropped_first_and_counted():
    c = Counters()
    q = InputQueue(16, c)
    for i in range(16):
        q.push(MidiEvent(i, "in", (0x90, 60, 100)))
    assert not q.push(MidiEvent(99, "in", (0x90, 61, 100)))
    assert q.push(MidiEvent(100, "in", (0x80, 60, 0)))
    assert q.push(ButtonEvent(101, "kb", 1, False))
    assert c.get("dropped_note_on") == 3
    assert len(q) == 16


def test_repeated_cc_keeps_only_the_newest_value():
    c = Counters()
    q = InputQueue(16, c)
    for i in range(15):
        q.push(MidiEvent(i, "in", (0x90, 60, 100)))
    q.push(MidiEvent(20, "in", (0xB0, 1, 10)))
    q.push(MidiEvent(21, "in", (0xB0, 1, 11)))
    items = q.pop_batch(100)
    assert items[-1].message == (0xB0, 1, 11)
    assert c.get("dropped_repeated_cc") == 1
