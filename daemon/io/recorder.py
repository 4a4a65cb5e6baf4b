"""Record a session: a crash-safe journal while playing, a standard MIDI file at the end.

The engine thread calls :meth:`Recorder.record` for every message in and out. That call only
appends a tuple to a ``collections.deque`` (atomic under the GIL): no lock, no I/O, no encoding.
A low-priority thread, ``genie-recorder``, wakes once per flush interval and appends what is
pending to the journal ``<path>.journal``, then flushes and fsyncs it. :meth:`Recorder.close`
writes the MIDI file at ``path`` from the journal and deletes the journal. After a crash the
journal is still there, and :func:`recover` (``genie recover``) turns it into the same MIDI file.

Journal format (ASCII, one JSON value per line, append-only)::

    {"genie_journal":1,"start_ns":123456789,"created":"2025-01-31T20:15:00+00:00"}
    ["in",123460000,"Genie in","903c64"]
    ["out",123460100,"Genie out","903c64"]

The header names the format and version and holds the recorder's start time on the daemon's
clock (``time.perf_counter_ns``). Each event line is [direction, time_ns, port or source, the
message's bytes in hex]. Every event line ends in ``]``, so a line cut short by a crash never
parses and is skipped (and counted), as is any other damaged line.

MIDI file layout (type 1, 500 ticks per beat at 120 bpm, so one tick is one millisecond):
track 0 holds the track name and the tempo; track 1, "Genie input", every input message; then one
track per output port, "<port> (output)", sorted by port name. Times count from the recorder's
start. Channel messages and sysex are kept (the ledger's note-offs and the panic's CC 64 and 123
included); clock, transport and other system common and real-time messages are left out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import mido

from daemon.events import now_ns, valid_message
from daemon.workers import lower_priority

log = logging.getLogger("genie.recorder")

JOURNAL_SUFFIX = ".journal"
JOURNAL_VERSION = 1
TICKS_PER_BEAT = 500
TEMPO_US = 500_000  # 120 bpm: 500 ticks per 0.5 s beat, so 1 tick = 1 ms
NS_PER_TICK = 1_000_000
INPUT_TRACK = "Genie input"
DIRECTIONS = ("in", "out")

RecordedEvent = tuple[str, int, str, tuple[int, ...]]
"""(direction "in"/"out", time_ns, port or source, message bytes)."""


@dataclass(frozen=True)
class WriteStats:
    """What a MIDI file written by :func:`write_midi` holds."""

    events: int  # MIDI messages written (meta messages not counted)
    tracks: int  # tracks in the file, the tempo track included
    omitted: int  # clock, transport and other system messages left out
    skipped_lines: int = 0  # damaged journal lines (journals only)


def take_path(path: str | os.PathLike, force: bool = False, keep: tuple[Path, ...] = (),
              journal_free: bool = True) -> Path:
    """Where a take (or any file Genie writes) goes without destroying anything.

    A path that exists and is not a regular file (a symlink, a device, a folder) is refused, as
    is one of ``keep`` (e.g. the input being played). An existing take is never overwritten
    unless ``force``: the next free numbered name is used instead (``take.mid`` -> ``take-2.mid``),
    its journal free too. Raises ValueError with a one-line reason."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ValueError(f"{path}: not a regular file; Genie writes only regular files")
    for other in keep:
        with contextlib.suppress(OSError):
            if path.exists() and other.exists() and path.samefile(other):
                raise ValueError(f"{path}: is the input file; give another output")
        if path.resolve() == Path(other).resolve():
            raise ValueError(f"{path}: is the input file; give another output")
    if force:
        return path
    candidate, n = path, 1
    while candidate.exists() or candidate.is_symlink() or (journal_free and journal_path_for(candidate).exists()):
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    if candidate != path:
        log.info("%s exists: writing %s instead (--force overwrites)", path, candidate.name)
    return candidate


def journal_path_for(path: str | os.PathLike) -> Path:
    """The journal that belongs to the MIDI file ``path``."""
    path = Path(path)
    return path.with_name(path.name + JOURNAL_SUFFIX)


def default_output_for(journal: str | os.PathLike) -> Path:
    """The MIDI file a journal becomes: its own path without ``.journal``."""
    journal = Path(journal)
    if journal.name.endswith(JOURNAL_SUFFIX) and len(journal.name) > len(JOURNAL_SUFFIX):
        return journal.with_name(journal.name[: -len(JOURNAL_SUFFIX)])
    return journal.with_name(journal.name + ".mid")


# ---- journal -----------------------------------------------------------------------------------


def _header_line(start_ns: int) -> bytes:
    header = {"genie_journal": JOURNAL_VERSION, "start_ns": start_ns,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return (json.dumps(header, separators=(",", ":")) + "\n").encode("ascii")


def _event_line(event: RecordedEvent) -> str:
    direction, time_ns, port, message = event
    return json.dumps([direction, int(time_ns), str(port), bytes(message).hex()],
                      separators=(",", ":"))


def _parse_event(line: bytes) -> RecordedEvent | None:
    """One journal line as an event, or None when it is damaged."""
    try:
        value = json.loads(line.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(value, list) and len(value) == 4):
        return None
    direction, time_ns, port, hexbytes = value
    if (direction not in DIRECTIONS or not isinstance(time_ns, int) or isinstance(time_ns, bool)
            or not isinstance(port, str) or not isinstance(hexbytes, str)):
        return None
    try:
        message = tuple(bytes.fromhex(hexbytes))
    except ValueError:
        return None
    if not valid_message(message):
        return None
    return direction, time_ns, port, message


def read_journal(journal_path: str | os.PathLike) -> tuple[int, list[RecordedEvent], int]:
    """Read a journal: (start_ns, events, damaged lines skipped).

    Raises ValueError (one line, naming the file) when the file is not a Genie journal, and
    OSError when it cannot be read.
    """
    return parse_journal(Path(journal_path).read_bytes(), str(journal_path))


def parse_journal(data: bytes, name: str = "<journal>") -> tuple[int, list[RecordedEvent], int]:
    """Parse a journal's bytes; see :func:`read_journal`."""
    lines = data.split(b"\n")
    header = None
    try:
        header = json.loads(lines[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        pass
    if not isinstance(header, dict) or "genie_journal" not in header:
        raise ValueError(f"{name}: not a Genie journal (no journal header on line 1)")
    version = header.get("genie_journal")
    if version != JOURNAL_VERSION:
        raise ValueError(f"{name}: unsupported Genie journal version {version!r} "
                         f"(this Genie reads version {JOURNAL_VERSION})")
    start_ns = header.get("start_ns")
    if not isinstance(start_ns, int) or isinstance(start_ns, bool):
        raise ValueError(f"{name}: damaged Genie journal header (no start_ns)")
    events: list[RecordedEvent] = []
    skipped = 0
    for line in lines[1:]:
        if not line.strip():
            continue  # the end of the last complete line, or blank space
        event = _parse_event(line)
        if event is None:
            skipped += 1
        else:
            events.append(event)
    return start_ns, events, skipped


# ---- MIDI file ---------------------------------------------------------------------------------


def _track_name(name: str) -> str:
    # mido encodes meta text as latin-1; port names may hold anything
    return name.encode("latin-1", "replace").decode("latin-1")


def _track(name: str, events: list[tuple[int, tuple[int, ...]]]) -> mido.MidiTrack:
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=_track_name(name), time=0))
    last = 0
    for tick, message in events:
        track.append(mido.Message.from_bytes(list(message), time=tick - last))
        last = tick
    return track


def _keep(message: tuple[int, ...]) -> bool:
    """Channel messages and sysex belong in a MIDI file; clock, transport and the rest do not."""
    return valid_message(message) and (message[0] < 0xF0 or message[0] == 0xF0)


def write_midi(path: str | os.PathLike, events: Iterable[RecordedEvent], start_ns: int = 0,
               input_track: bool = True, name: str = "Genie") -> WriteStats:
    """Write recorded events as a type-1 MIDI file at ``path``, atomically.

    Times count from ``start_ns`` (earlier events are placed at 0), rounded to the millisecond
    tick; events keep their recorded order where times are equal.
    """
    path = Path(path)
    inputs: list[tuple[int, tuple[int, ...]]] = []
    outputs: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
    omitted = 0
    for direction, time_ns, port, message in events:
        message = tuple(message)
        if not _keep(message):
            omitted += 1
            continue
        tick = max(0, (time_ns - start_ns + NS_PER_TICK // 2) // NS_PER_TICK)
        if direction == "in":
            if input_track:
                inputs.append((tick, message))
        else:
            outputs.setdefault(port, []).append((tick, message))

    mid = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT)
    head = mido.MidiTrack()
    head.append(mido.MetaMessage("track_name", name=_track_name(name), time=0))
    head.append(mido.MetaMessage("set_tempo", tempo=TEMPO_US, time=0))
    head.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    mid.tracks.append(head)
    written = 0
    if input_track:
        inputs.sort(key=lambda e: e[0])  # stable: equal times keep their recorded order
        mid.tracks.append(_track(INPUT_TRACK, inputs))
        written += len(inputs)
    for port in sorted(outputs):
        outs = sorted(outputs[port], key=lambda e: e[0])
        mid.tracks.append(_track(f"{port} (output)", outs))
        written += len(outs)

    _save_atomically(mid, path)
    return WriteStats(events=written, tracks=len(mid.tracks), omitted=omitted)


def _save_atomically(mid: mido.MidiFile, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            mid.save(file=f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def recover(journal_path: str | os.PathLike, out_path: str | os.PathLike | None = None) -> WriteStats:
    """Turn a journal left by a crash into the MIDI file the recorder would have written.

    Damaged lines (a last line cut short, zeros after a power cut) are skipped and counted in
    ``skipped_lines``. A file that is not a Genie journal raises ValueError naming the file. The
    journal itself is left in place.
    """
    start_ns, events, skipped = read_journal(journal_path)
    out = Path(out_path) if out_path is not None else take_path(default_output_for(journal_path), journal_free=False)
    stats = write_midi(out, close_open_notes(events), start_ns)
    return WriteStats(stats.events, stats.tracks, stats.omitted, skipped)


def close_open_notes(events: list[RecordedEvent]) -> list[RecordedEvent]:
    """The events, and a note-off at the last event's time for every note a crash left open
    (per direction, port and channel), so the recovered take has no endless note."""
    sounding: dict[tuple[str, str, int, int], int] = {}
    for direction, _, port, msg in events:
        if len(msg) == 3 and msg[0] & 0xF0 in (0x80, 0x90):
            key = (direction, port, msg[0] & 0x0F, msg[1])
            if msg[0] & 0xF0 == 0x90 and msg[2] > 0:
                sounding[key] = sounding.get(key, 0) + 1
            elif sounding.get(key):
                sounding[key] -= 1
    end = max((t for _, t, _, _ in events), default=0)
    closing = [(d, end, port, (0x80 | ch, pitch, 0))
               for (d, port, ch, pitch), n in sorted(sounding.items()) for _ in range(n)]
    return list(events) + closing


# ---- the recorder ------------------------------------------------------------------------------


class Recorder:
    """Journals every message in and out while playing; writes a MIDI file on :meth:`close`.

    ``record`` is the engine's ``record`` callback (see ``daemon.core.Recorder``). Creating a
    Recorder creates the journal (``FileExistsError`` when one is already there: an unfinished
    recording to recover first); :meth:`start` (or ``with``) starts the ``genie-recorder``
    thread; :meth:`close`, after the engine has stopped, writes the MIDI file.
    """

    def __init__(self, path: str | os.PathLike, flush_interval_s: float = 1.0,
                 start_ns: int | None = None) -> None:
        self.path = Path(path)
        self.journal_path = journal_path_for(self.path)
        self.flush_interval_s = max(0.001, float(flush_interval_s))
        self.start_ns = now_ns() if start_ns is None else start_ns
        self.stats: WriteStats | None = None
        self.dropped = 0  # events that were not MIDI bytes
        self._pending: deque[RecordedEvent] = deque()
        self._backlog = b""  # encoded lines the journal did not take yet (disk full, I/O error)
        self._io_lock = threading.Lock()  # the thread's flush against close()'s last flush
        self._close_lock = threading.Lock()
        self._closed = False
        self._started = False
        self._write_failed = False
        self._stopping = threading.Event()
        try:
            self._fd: int | None = os.open(
                self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except FileExistsError:
            raise FileExistsError(
                f"{self.journal_path}: a journal from an unfinished recording is in the way; "
                f"run `genie recover {self.journal_path}` or remove it") from None
        try:
            self._backlog = _header_line(self.start_ns)
            self._write_backlog()
        except OSError:
            os.close(self._fd)
            os.unlink(self.journal_path)
            raise
        self._thread = threading.Thread(target=self._run, name="genie-recorder", daemon=True)

    def start(self) -> None:
        """Start the ``genie-recorder`` thread (idempotent). Until then events only queue up."""
        with self._close_lock:
            if not self._started and not self._closed:
                self._started = True
                self._thread.start()

    def __enter__(self) -> Recorder:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the engine thread -----------------------------------------------------------------------

    def record(self, direction: str, time_ns: int, port: str, message: tuple[int, ...]) -> None:
        """Note one message; O(1), no lock, no I/O (called on the engine thread)."""
        self._pending.append((direction, time_ns, port, message))

    # ---- the recorder thread ---------------------------------------------------------------------

    def _run(self) -> None:
        lower_priority()
        try:
            while True:
                stopping = self._stopping.wait(self.flush_interval_s)
                self.flush()
                if stopping:
                    return
        except Exception:  # close() still flushes and writes the file
            log.exception("recorder thread failed; the rest is written on close")

    def flush(self) -> int:
        """Append the pending events to the journal and fsync it; returns how many were taken.

        When the journal cannot be written (disk full), the encoded lines wait in memory and
        the next flush tries again from the byte where the last one stopped.
        """
        with self._io_lock:
            if self._fd is None:
                return 0
            batch = []
            pending = self._pending
            while pending:
                batch.append(pending.popleft())
            if batch:
                lines = []
                for event in batch:
                    try:
                        lines.append(_event_line(event))
                    except (TypeError, ValueError):  # not bytes: the caller's bug, not the disk's
                        self.dropped += 1
                if lines:
                    self._backlog += ("\n".join(lines) + "\n").encode("ascii")
            try:
                self._write_backlog()
            except OSError as exc:
                if not self._write_failed:
                    log.error("recorder: cannot write %s: %s; keeping events in memory",
                              self.journal_path, exc)
                self._write_failed = True
            else:
                if self._write_failed:
                    log.info("recorder: writing %s again", self.journal_path)
                self._write_failed = False
            return len(batch)

    def _write_backlog(self) -> None:
        view = memoryview(self._backlog)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        finally:
            self._backlog = bytes(view)
        os.fsync(self._fd)

    # ---- the end -------------------------------------------------------------------------------

    def close(self) -> WriteStats | None:
        """Stop the thread, write the MIDI file, delete the journal. Idempotent.

        Call it after the engine has stopped, so the final note-offs are in the file. When the
        MIDI file cannot be written the journal stays, for ``genie recover``.
        """
        with self._close_lock:
            if self._closed:
                return self.stats
            self._closed = True
            self._stopping.set()
            if self._started:
                self._thread.join()
            self.flush()
            with self._io_lock:
                os.close(self._fd)
                self._fd = None
                backlog, self._backlog = self._backlog, b""
            data = self.journal_path.read_bytes() + backlog
            start_ns, events, skipped = parse_journal(data, str(self.journal_path))
            events.extend(self._pending)  # anything recorded while closing
            self._pending.clear()
            try:
                stats = write_midi(self.path, events, start_ns)
            except OSError as exc:  # a full disk: the whole take is in memory; save it elsewhere
                self.rescued = self._rescue(events, start_ns, exc)
                raise OSError(f"could not write {self.path} ({exc.strerror or exc}); "
                              + (f"the whole take is in {self.rescued}" if self.rescued else
                                 f"its journal {self.journal_path} holds what reached the disk")) from None
            self.stats = WriteStats(stats.events, stats.tracks, stats.omitted, skipped)
            os.unlink(self.journal_path)
            log.info("recorded %d messages in %d tracks to %s", stats.events, stats.tracks,
                     self.path)
            return self.stats

    rescued: Path | None = None

    def _rescue(self, events: list[RecordedEvent], start_ns: int, why: OSError) -> Path | None:
        """Write the take where there is room (Genie's state folder, then the temp folder)."""
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        for folder in (Path(state) / "genie" / "rescued", Path(tempfile.gettempdir())):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                path = take_path(folder / self.path.name)
                write_midi(path, events, start_ns)
                return path
            except (OSError, ValueError):
                continue
        return None
