"""``genie monitor``: a live view of a running daemon in the terminal (also one under systemd).

It reads the daemon's monitor feed (``daemon.monitor``) and draws, with rich: the processor
playing, the 8 buttons as they are held, the notes going out as a scrolling roll, the time from an
input to what it made, and what went wrong since start, in words. ``--json`` prints the feed's
lines instead (for scripts), ``--count N`` stops after N of them.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path

import click

from daemon.cli import UserError

SYSTEM_RUNTIME = Path("/run/genie")  # the system unit's XDG_RUNTIME_DIR
ROLL_SECONDS = 8.0
ROLL_COLUMNS = 64
NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    return f"{NAMES[pitch % 12]}{pitch // 12 - 1}"


class View:
    """The monitor's state, folded from the feed's lines; ``render`` draws it."""

    def __init__(self) -> None:
        self.state: dict = {}
        self.notes: deque[tuple[float, str, int, int, int]] = deque(maxlen=4000)  # t_s, port, ch, pitch, vel
        self.latency_ms: deque[float] = deque(maxlen=512)
        self.now_s = 0.0

    def add(self, line: dict) -> None:
        self.now_s = line["time_ns"] / 1e9
        self.state = line
        for t, port, msg in line.get("sent", []):
            if len(msg) == 3 and msg[0] & 0xF0 == 0x90 and msg[2] > 0:
                self.notes.append((t / 1e9, port, (msg[0] & 0x0F) + 1, msg[1], msg[2]))
        self.latency_ms.extend(ns / 1e6 for ns in line.get("latency_ns", []))

    def roll(self) -> list[str]:
        """Notes of the last ROLL_SECONDS: one row per pitch played, newest at the right."""
        recent = [n for n in self.notes if self.now_s - n[0] <= ROLL_SECONDS]
        if not recent:
            return ["(no notes yet)"]
        pitches = sorted({n[3] for n in recent}, reverse=True)[:16]
        rows = []
        for p in pitches:
            cells = [" "] * ROLL_COLUMNS
            for t, _, _, pitch, vel in recent:
                if pitch == p:
                    col = min(ROLL_COLUMNS - 1, int((1 - (self.now_s - t) / ROLL_SECONDS) * ROLL_COLUMNS))
                    cells[col] = "█" if vel >= 96 else "▓" if vel >= 64 else "▒"
            rows.append(f"{note_name(p):>4} │{''.join(cells)}│")
        return rows

    def problems(self) -> str:
        from daemon.events import in_words

        counts = {k: v for k, v in self.state.get("counters", {}).items() if v}
        return in_words(counts) or "none since Genie started"

    def render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        st = self.state
        head = Table.grid(padding=(0, 2))
        head.add_row("playing", Text(", ".join(st.get("playing", [])) or "-", style="bold green"),
                     "processors", ", ".join(st.get("processors", [])))
        for label, tr in (st.get("transport") or {}).items():
            clock = ("lost" if tr["lost"] else "running" if tr["running"] else "stopped")
            head.add_row("clock", f"{label}: {clock}", "tempo",
                         f"{tr['bpm'] or '-'} BPM, bar {tr['bar']} beat {tr['beat']}")
        held = set(st.get("held", []))
        buttons = Text()
        for b in range(8):
            buttons.append(f" {b} ", style="black on bright_yellow" if b in held else "dim")
            buttons.append(" ")
        lat = sorted(self.latency_ms)
        if lat:
            p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
            latency = f"input to output: median {p50:.2f} ms, p99 {p99:.2f} ms (last {len(lat)})"
        else:
            latency = "input to output: nothing played yet"
        last = list(self.notes)[-6:]
        recent = "  ".join(f"{note_name(p)} v{v} ch{c}" for _, _, c, p, v in reversed(last)) or "-"
        body = Group(head, Text(""), Text("buttons  ") + buttons, Text(""),
                     Text("\n".join(self.roll())), Text(""), Text(f"last notes: {recent}"),
                     Text(latency), Text(f"sounding now: {st.get('sounding', 0)}"),
                     Text(f"problems: {self.problems()}", style="yellow"))
        return Panel(body, title="Genie", subtitle="Ctrl+C leaves (Genie plays on)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the feed's JSON lines instead of drawing.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after this many updates (ten a second).")
@click.pass_obj
def monitor(state, as_json: bool, count: int | None) -> None:
    """Watch a running Genie: what plays, the buttons, the notes going out, latency, problems."""
    from daemon.control import ControlError
    from daemon.monitor import connect, lines, socket_path

    name = state.config.midi.client_name
    try:
        mine = socket_path(name)
    except ControlError:
        mine = None
    # the system service's runtime folder (RuntimeDirectory=genie): sudo -u genie genie monitor
    system = SYSTEM_RUNTIME / "genie" / (mine.name if mine is not None else f"{name}.monitor")
    candidates = [p for p in (mine, system) if p is not None]
    path = next((p for p in candidates if p.exists()), candidates[0])
    try:
        sock = connect(path)
    except ControlError as exc:
        raise UserError(str(exc)) from None
    n = 0
    try:
        if as_json:
            for line in lines(sock):
                click.echo(json.dumps(line))
                n += 1
                if count is not None and n >= count:
                    return
            return
        from rich.live import Live

        view = View()
        with Live(view.render(), refresh_per_second=10, screen=False) as live:
            for line in lines(sock):
                view.add(line)
                live.update(view.render())
                n += 1
                if count is not None and n >= count:
                    return
        click.echo("Genie stopped.")
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
