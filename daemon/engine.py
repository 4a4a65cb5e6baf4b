"""The live engine: one thread drains the inputs, runs the processors and sends what is due.

Threads (all named):
- ``genie-engine`` drains rtmidi's input queues, takes events posted by the other sources, calls
  the processors through ``EngineCore`` and sends on the output ports. It sleeps on an Event until
  the next poll, the next due output or new posted input, whichever comes first.
- ``genie-housekeeping`` notices input ports that disappear and logs what was dropped.
- ``genie-worker-<label>``: one per processor that runs background jobs, at low priority
  (``daemon.workers``); their pieces wake the engine thread, which applies them.
  ``genie-keyboard`` and ``genie-recorder`` belong to their modules.

Polling. Under JACK, MIDI reaches rtmidi's queue only during a cycle, mostly early in it, and
what Genie sends goes out at the start of the next cycle. When the server runs real-time
(jackd -R, as it should for live use), the engine thread asks for SCHED_FIFO just under JACK's own
threads and polls at two fixed points of every cycle (``POLL_PHASES``, placed with the server's
cycle times): the first catches what came early in the cycle, the second what a slow client
chain delivered late, both in time for the next cycle. That is 1,500 wake-ups a second at 64
frames and 375 at 256. Phase-placed polls need punctual wake-ups, which only a real-time thread
gets on a busy machine; so without real-time rights, on a server without real-time threads (where
a FIFO thread would starve the server itself) and on other APIs (ALSA), the engine polls every
``midi.poll_interval_ms`` instead, which samples every phase at 2,000 wake-ups a second.

Nothing runs in rtmidi's callback thread: under JACK that is the audio server's real-time thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from daemon.config import Config
from daemon.core import EngineCore
from daemon.events import Event, MidiEvent, in_words, now_ns
from daemon.inputqueue import InputQueue
from daemon.io.midi import MidiInput, MidiOutput, PortError, burst_times, match_port, open_probe
from daemon.workers import StressWorker, realtime_priority

log = logging.getLogger("genie.engine")

BATCH = 64  # events handled per pass before outputs are sent again
POLL_PHASES = (0.3, 0.75)  # where in each JACK cycle rtmidi is polled (fractions of a cycle)
RT_PRIORITY = 1  # SCHED_FIFO priority of the engine thread: the lowest, below all of JACK's


class Engine:
    """Runs ``EngineCore`` against real ports on its own thread."""

    def __init__(self, cfg: Config, core: EngineCore, inputs: list[MidiInput],
                 outputs: dict[str, MidiOutput]) -> None:
        """``core`` from ``daemon.session.build_core`` with ``ThreadedWorkers``."""
        self.cfg = cfg
        self.core = core
        self.counters = core.counters
        self._wake = threading.Event()
        self.workers = core.workers
        self.workers.wake = self._wake.set
        self.inputs = inputs
        self.outputs = outputs
        self.queue = InputQueue(cfg.midi.queue_limit, self.counters)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._panic = False
        self._lost: list[str] = []
        self.stress = StressWorker() if cfg.engine.stress_worker else None
        self._thread = threading.Thread(target=self._run, name="genie-engine")
        self._house = threading.Thread(target=self._housekeeping, name="genie-housekeeping",
                                       daemon=True)
        self.poll_ns = int(cfg.midi.poll_interval_ms * 1e6)
        self.max_age_ns = int(cfg.midi.max_input_age_ms * 1e6)
        self.clock = None  # a JACK CycleClock: polls at POLL_PHASES of each cycle
        self.stopped = threading.Event()
        self._watch = None  # a JACK ConnectionWatch on Genie's own ports
        self._server_down = threading.Event()  # set by housekeeping when JACK went away
        self._reopen = threading.Event()  # set by housekeeping when it is back: reopen the ports
        self._reopened = threading.Event()
        self._down_handled = False  # the engine thread has forgotten what went with the server
        self.exit_code = 0  # 1: the audio server did not come back in time
        self._to_reopen: list[MidiInput] = []  # inputs that came back (housekeeping -> engine)
        self._to_relink: list[str] = []  # outputs whose connect target came back
        self.drain_s = 0.05
        self._last_stamp_ns = 0
        self.notifier = None  # a systemd Notifier: the engine thread's loop pings the watchdog
        self.monitor = None  # a MonitorFeed for `genie monitor` (records only while one watches)
        self._sends = 0  # counted while a monitor watches: did this pass's input make output?
        self._reload: tuple | None = None  # (config, slots) made by a reload, for the engine thread

    # ---- called from other threads -------------------------------------------------------------

    def post(self, ev: Event) -> None:
        """Queue an event from another thread (keyboard, gamepad) and wake the engine."""
        with self._lock:
            self.queue.push(ev)
        self._wake.set()

    def source_lost(self, source: str) -> None:
        """A source went away (an unplugged gamepad): the engine releases what it held."""
        with self._lock:
            self._lost.append(source)
        self._wake.set()

    def request_panic(self) -> None:
        self._panic = True
        self._wake.set()

    def post_reload(self, cfg, slots) -> None:
        """New processors, built and warmed by a reload on another thread, for the engine thread
        to put in place of the old ones."""
        with self._lock:
            self._reload = (cfg, slots)
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if any(p.api == "jack" for p in self.inputs):
            from daemon.io.jack import CycleClock

            self.clock = CycleClock.open(f"{self.cfg.midi.client_name} clock")
        own = [p for p in self.inputs if p.name == self.cfg.midi.input_port and p.api == "jack"]
        jack_out = [o for o in self.outputs.values() if o.api == "jack"]
        if own or jack_out:  # opened here: libjack's start-up silences stderr for a moment
            from daemon.io.jack import ConnectionWatch

            name = own[0].name if own else jack_out[0].name
            self._watch = ConnectionWatch.open(f"{self.cfg.midi.client_name} watch", f"{name}:{name}")
        if self.stress:
            self.stress.start()
        self._thread.start()
        self._house.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    def join(self) -> None:
        self._thread.join()

    # ---- the engine thread ----------------------------------------------------------------------

    def _run(self) -> None:
        core = self.core
        self._choose_polling()
        self._send(core.clear_outputs())  # notes a crashed Genie left sounding end now
        try:
            while not self._stopping.is_set():
                if self.notifier is not None:  # a stalled engine thread stops these: systemd restarts it
                    self.notifier.watchdog()
                if self._server_down.is_set():
                    self._while_server_down()
                    continue
                now = now_ns()
                for port in self.inputs:
                    burst = port.drain(4 * self.cfg.midi.queue_limit)
                    if burst:
                        times = burst_times(now, [d for _, d in burst], self._last_stamp_ns)
                        self._last_stamp_ns = times[-1]
                        with self._lock:
                            for t, (msg, _) in zip(times, burst):
                                self.queue.push(MidiEvent(t, port.name, msg))
                with self._lock:
                    events = self.queue.pop_batch(BATCH, now_ns(), self.max_age_ns)
                    lost, self._lost = self._lost, []
                    back, self._to_reopen = self._to_reopen, []
                    relink, self._to_relink = self._to_relink, []
                    reload, self._reload = self._reload, None
                for port in back:
                    self._reopen_input(port)
                for name in relink:
                    if name in self.outputs:
                        done = self.outputs[name].relink()
                        log.info("%s connected to %s", name, ", ".join(done) or "nothing")
                now = max(now_ns(), self._last_stamp_ns)
                sends_before = self._sends
                for ev in events:
                    core.feed(ev, now)
                for source in lost:
                    core.source_lost(source, now)
                if reload is not None:
                    core.reload(*reload, now)
                if self._panic:
                    self._panic = False
                    core.panic(now)
                # Send what the events just made before idle work (a model refreshing its next
                # distributions) can delay it; then idle, then what became due meanwhile.
                self._send(core.due(now_ns()))
                mon = self.monitor
                if mon is not None and mon.active:
                    if events and self._sends > sends_before:  # input to what it made, this pass
                        mon.latency(now_ns() - min(ev.time_ns for ev in events))
                    if mon.wants_state(now):
                        mon.state(core.monitor_state())
                self._send(core.tick(now_ns()))
                if len(self.queue):
                    continue
                timeout_ns = min(self._until_poll_ns(), core.next_wake_ns() - now_ns())
                if timeout_ns > 0:
                    self._wake.wait(timeout_ns / 1e9)
                self._wake.clear()
        except Exception:
            log.exception("engine thread failed; stopping with all notes off")
        finally:
            try:
                self._send(core.stop(now_ns()))
            finally:
                self.stopped.set()

    # ---- the audio server going away and coming back --------------------------------------------

    def _while_server_down(self) -> None:
        """On the engine thread: forget what sounded (it went with the server), send nothing,
        and reopen the same ports when housekeeping says the server is back."""
        if not self._down_handled:
            self._down_handled = True
            self.core.server_lost(now_ns())
            self.core.outbox.clear()
            if self.clock is not None:
                self.clock.abandon()
                self.clock = None  # poll on the timer until the ports are back
        if self._reopen.wait(0.05):
            from daemon.io.jack import _quiet_stderr

            self._reopen.clear()
            with _quiet_stderr():  # libjack prints its clean-up of the dead server's clients
                names = self._reopen_ports()
            log.info("the audio server is back: %s reopened; playing again", ", ".join(names))
            self._down_handled = False
            self._server_down.clear()
            self._reopened.set()

    def _reopen_ports(self) -> list[str]:
        """The same ports, with the same names, on the server that came back; connections too."""
        api, cfg = "jack", self.cfg.midi
        inputs, outputs = [], {}
        for port in self.inputs:
            virtual = port.name == cfg.input_port
            pattern = port.name if virtual else port.pattern
            try:
                inputs.append(MidiInput.open(api, pattern, virtual=virtual,
                                             queue_limit=max(8192, 8 * cfg.queue_limit)))
            except PortError as exc:
                log.warning("after the audio server came back: %s; Genie goes on without it", exc)
        for name, out in self.outputs.items():
            try:
                outputs[name] = MidiOutput.open(api, name, cfg.connect)
            except PortError as exc:
                log.warning("after the audio server came back: %s", exc)
                outputs[name] = MidiOutput.open(api, name, [])
        for port in [*self.inputs, *self.outputs.values()]:
            port.abandon()
        self.inputs, self.outputs = inputs, outputs
        self._send(self.core.clear_outputs())
        return [p.name for p in inputs] + list(outputs)

    def _open_nudge(self, port: str):
        """A client of Genie's that plays a lone F7 into its own input twice a second: RtMidi's
        JACK input glues every message after a sysex cut short (an F0 without its F7: a cable
        pulled mid-dump) onto that sysex until an F7 comes; the nudge ends it, and the engine takes
        the glued messages back out. A lone F7 is ignored otherwise."""
        try:
            import rtmidi

            from daemon.io.midi import _api_id, match_port

            nudge = rtmidi.MidiOut(_api_id("jack"), name=f"{self.cfg.midi.client_name} nudge")
            found = match_port(f"{port}:{port}", nudge.get_ports())
            if not found:
                nudge.delete()
                return None
            nudge.open_port(found[0], name="nudge")
            return nudge
        except Exception as exc:  # noqa: BLE001 - without it a cut sysex needs the sender's F7
            log.debug("no sysex nudge: %s", exc)
            return None

    def _reopen_input(self, old: MidiInput) -> None:
        """An input port that went away is back: read it again (on the engine thread)."""
        try:
            new = MidiInput.open(old.api, old.pattern, virtual=False, queue_limit=old.queue_limit)
        except PortError as exc:
            log.warning("input port %r came back but could not be opened: %s", old.pattern, exc)
            return
        for p in [p for p in self.inputs if p.name == old.name or p is old]:
            p.close()
        self.inputs = [p for p in self.inputs if p.name != old.name and p is not old] + [new]
        log.info("input port %r is there: reading it", new.name)

    def _choose_polling(self) -> None:
        """On the engine thread: polls placed in JACK's cycle when it may run real-time."""
        clock, self.clock = self.clock, None
        if clock is not None and not clock.realtime:
            from daemon.io.jack import NON_REALTIME

            log.warning("%s; run jackd with -R", NON_REALTIME)
        if clock is not None and clock.realtime and self.cfg.engine.realtime:
            if realtime_priority(RT_PRIORITY):
                self.clock = clock
            else:
                log.warning("JACK runs real-time but Genie's engine thread may not (no rtprio "
                            "rights: add the user to the audio group); polling on a timer")
        if self.clock is not None:
            log.info("engine thread: SCHED_FIFO %d; polls at %s of each JACK cycle (%.2f ms)",
                     RT_PRIORITY, " and ".join(f"{p:.0%}" for p in POLL_PHASES),
                     clock.nominal_ns / 1e6)
        else:
            log.info("engine thread: polls every %.2f ms", self.poll_ns / 1e6)
            if clock is not None:
                clock.close()

    def _until_poll_ns(self) -> int:
        if self.clock is not None:
            ns = self.clock.ns_until(POLL_PHASES)
            if ns is not None:
                return ns
        return self.poll_ns

    def _send(self, sent: Iterable[tuple[str, tuple[int, ...]]]) -> None:
        if self._server_down.is_set():
            return
        mon = self.monitor if self.monitor is not None and self.monitor.active else None
        for port, msg in sent:
            out = self.outputs.get(port)
            if out is None:
                self.counters.add("dropped_unknown_port")
                continue
            out.send(msg)
            if mon is not None:
                self._sends += 1
                mon.sent(now_ns(), port, msg)

    def _housekeeping(self) -> None:
        """Notice connections into Genie's own input that go away and the audio server going
        (every 20 ms: a client may connect, play and quit within a tenth of a second), input
        ports and connect targets that come and go, and log new drops (every second)."""
        last: dict[str, int] = {}
        external = [p for p in self.inputs if p.name != self.cfg.midi.input_port and p.is_open]
        own = [p for p in self.inputs if p.name == self.cfg.midi.input_port and p.api == "jack"]
        # inputs not there yet or that went away: opened when they appear
        missing = [p for p in self.inputs if p.name != self.cfg.midi.input_port and not p.is_open]
        probe = open_probe((external or missing)[0].api) if external or missing else None
        linked_outs = [o for o in self.outputs.values() if o.targets]
        dest_probe = open_probe(linked_outs[0].api, outputs=True) if linked_outs else None
        present: dict[tuple[str, str], bool] = {}  # (output, target) -> seen last time
        if dest_probe is not None:
            now_there = list(dest_probe.get_ports())
            for out in linked_outs:
                for target in out.targets:
                    present[(out.name, target)] = bool(match_port(target, now_there))
        watch = self._watch
        linked = (watch.connections() or set()) if watch and own else set()
        probe_port = watch.port_name if watch else None
        ticks, lost_at = 0, None
        nudge = self._open_nudge(own[0].name) if own else None
        while not self._stopping.wait(0.02):
            ticks += 1
            if nudge is not None and ticks % 25 == 0 and lost_at is None:
                try:  # rtmidi's JACK input holds everything after a cut sysex until an F7
                    nudge.send_message([0xF7])
                except Exception:  # noqa: BLE001 - a nudge that fails changes nothing
                    pass
            if watch is not None and lost_at is None and not watch.server_alive:
                lost_at = time.monotonic()
                watch.abandon()
                log.warning("the audio server (JACK) went away: Genie's ports are gone; waiting "
                            "up to %g s for it to come back", self.cfg.midi.server_wait_s)
                from daemon.io.midi import _keep_forever

                _keep_forever(nudge, probe, dest_probe)  # their clients died with the server
                nudge = probe = dest_probe = None
                self._server_down.set()
                self._wake.set()
            if lost_at is not None:
                from daemon.io.jack import server_info

                if ticks % 10:  # ask for the server five times a second
                    continue
                if server_info() is not None and (back := self._come_back(probe_port)) is not None:
                    watch, lost_at = back, None
                    nudge = self._open_nudge(own[0].name) if own else None
                    probe = open_probe((external or missing)[0].api) if external or missing else None
                    dest_probe = open_probe(linked_outs[0].api, outputs=True) if linked_outs else None
                    linked = (watch.connections() or set()) if own else set()
                elif self._stopping.is_set():
                    break
                elif time.monotonic() - lost_at > self.cfg.midi.server_wait_s:
                    log.error("the audio server did not come back in %g s: Genie stops (exit code "
                              "1, so a service manager starts it again)", self.cfg.midi.server_wait_s)
                    self.exit_code = 1
                    self.request_stop()
                    break
                continue
            if watch is not None and own:
                now_linked = watch.connections()
                if now_linked is not None:
                    gone = linked - now_linked
                    if gone:
                        log.warning("%s stopped playing into %r; releasing the notes held there",
                                    ", ".join(sorted(gone)), own[0].name)
                        self.source_lost(own[0].name)
                    linked = now_linked
            if ticks % 50:
                continue
            if probe is not None:
                names = set(probe.get_ports())
                for port in [p for p in external if p.name not in names]:
                    log.warning("input port %r went away; releasing its notes (Genie reconnects it "
                                "when it comes back)", port.name)
                    external.remove(port)
                    missing.append(port)
                    self.source_lost(port.name)
                for port in [p for p in missing if match_port(p.pattern, list(names))]:
                    missing.remove(port)
                    with self._lock:
                        self._to_reopen.append(port)
                    self._wake.set()
                    found = list(names)[match_port(port.pattern, list(names))[0]]
                    external.append(MidiInput.waiting(port.api, port.pattern, port.queue_limit))
                    external[-1].name = found  # watched under its real name once opened
            if dest_probe is not None:
                dests = list(dest_probe.get_ports())
                for out in linked_outs:
                    for target in out.targets:
                        here = bool(match_port(target, dests))
                        was = present.get((out.name, target), True)
                        if here != was:
                            log.warning("%s %s", target, "is there: connecting Genie to it"
                                        if here else "went away (Genie connects again when it is back)")
                            if here:
                                with self._lock:
                                    self._to_relink.append(out.name)
                                self._wake.set()
                        present[(out.name, target)] = here
            now = dict(self.counters.values)
            changed = {k: v - last.get(k, 0) for k, v in now.items() if v != last.get(k, 0)}
            if changed:
                log.info("since the last report: %s  [engine counters: %s]", in_words(changed, "+"),
                         ", ".join(f"{k} +{v}" for k, v in sorted(changed.items())))
            last = now
        for p in (probe, dest_probe, nudge):
            if p is not None:
                p.delete()
        if watch is not None:
            watch.close()

    def _come_back(self, port: str):
        """The server answers again: watch it first (so that it going away during the reopening
        is heard), have the engine thread reopen the ports, then check they are on this server.
        Returns the new watch, or None while the server is still (or again) away."""
        from daemon.io.jack import ConnectionWatch

        watch = ConnectionWatch.open(f"{self.cfg.midi.client_name} watch", port)
        if watch is None:
            return None
        self._reopened.clear()
        self._reopen.set()
        while not self._reopened.wait(0.1) and not self._stopping.is_set():
            pass
        if watch.has_port():
            self._watch = watch
            return watch
        log.warning("the audio server went away again while Genie reopened its ports; waiting for it")
        if watch.server_alive:
            watch.close()
        else:
            watch.abandon()
        self._server_down.set()  # the ports just opened are on a server that is gone: forget them
        self._wake.set()
        return None

    def stop(self) -> None:
        """Stop: the engine thread sends the panic sequence, then ports and workers close."""
        self.request_stop()
        self._thread.join(timeout=10)
        # JACK writes queued output at the start of its next cycle: closing the ports sooner
        # would drop the final note-offs. One wait at exit, never on the playing path.
        time.sleep(self.drain_s)
        if self.stress:
            self.stress.stop()
        self.workers.stop()
        gone = self._watch is not None and self._watch.server_gone
        if self._server_down.is_set() or gone:  # their server is gone: closing them crashes libjack
            for port in [*self.inputs, *self.outputs.values()]:
                port.abandon()
        for port in self.inputs:
            port.close()
        for out in self.outputs.values():
            out.close()
        if self.clock is not None:
            self.clock.close()
