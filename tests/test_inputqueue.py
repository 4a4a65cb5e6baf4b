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
    lost_releases = q.counters.get("dropped_release_of_dropped_press")
    assert all(id(e) in kept_ids for e in events if protected(e) and not e.is_note_off)  # transport
    assert sum(id(e) not in kept_ids for e in events if e.is_note_off) == lost_releases
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


def test_the_release_of_a_dropped_press_is_dropped_too_and_bounds_hold_in_constant_time():
    c = Counters()
    q = InputQueue(64, c)
    for i in range(64):
        q.push(MidiEvent(i, "in", (0x90, 30 + i % 10, 100)))
    assert not q.push(MidiEvent(100, "in", (0x90, 99, 100)))  # full: dropped ...
    assert not q.push(MidiEvent(101, "in", (0x80, 99, 0)))  # ... and so is its release
    assert c.get("dropped_release_of_dropped_press") == 1
    assert q.push(MidiEvent(102, "in", (0x80, 30, 0)))  # a release of a note let in: kept
    # a flood: 40,000 note-on/off pairs into a full queue stays bounded (no release of a press
    # that was dropped piles up; each push is O(1): see the module)
    for i in range(20_000):
        q.push(MidiEvent(200 + i, "flood", (0x90, i % 128, 100)))
        q.push(MidiEvent(200 + i, "flood", (0x80, i % 128, 0)))
    assert len(q) <= 64 + 1
    batch = q.pop_batch(1000)
    assert [e for e in batch if e.source == "flood" and e.is_note_off] == []  # their presses were dropped


def test_a_press_that_waited_too_long_is_dropped_with_its_release():
    c = Counters()
    q = InputQueue(64, c)
    q.push(MidiEvent(0, "in", (0x90, 60, 100)))
    q.push(MidiEvent(10, "in", (0x80, 60, 0)))
    q.push(MidiEvent(400_000_000, "in", (0x90, 62, 100)))
    got = q.pop_batch(10, now_ns=500_000_000, max_age_ns=250_000_000)
    assert [e.message for e in got] == [(0x90, 62, 100)]  # the late press and its release: gone
    assert c.get("dropped_stale_press") == 1
