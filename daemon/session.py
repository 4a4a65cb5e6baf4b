"""The one start-up path of ``genie run`` (live) and ``genie play`` (offline): every configured
processor loaded through its entry point, started and warmed up, and the ``EngineCore`` that
routes to them, with the workers of the mode (a thread per processor live, stepped offline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from daemon.config import Config
from daemon.core import EngineCore, HostRef, Recorder, Slot
from daemon.events import Counters
from daemon.events import now_ns as clock_now
from daemon.processor import Context, ProcessorError, load, model_cards, package_file

log = logging.getLogger("genie.session")


def build_slots(cfg: Config, host: HostRef | None = None,
                now_ns: Callable[[], int] = clock_now) -> list[Slot]:
    """Instantiate and start every ``[[processor]]``; a failure is a one-line ProcessorError.

    ``host`` is what their contexts reach for jobs, retraction and the transport: the
    ``EngineCore`` built from these slots attaches itself to it."""
    slots = []
    for i, pcfg in enumerate(cfg.processors):
        cls = load(pcfg.name)
        proc = cls()
        ctx = Context(name=pcfg.label, options=dict(pcfg.options), seed=cfg.engine.seed + i,
                      now_ns=now_ns, host=host)
        try:
            proc.start(ctx)
        except ProcessorError as exc:
            raise ProcessorError(f"config {cfg.path}: processor[{i}] ({pcfg.label}): {exc}") from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise ProcessorError(f"processor {pcfg.label!r} failed to start: {exc}") from None
        log.info("processor %s (%s) loaded: output %r channel %d", pcfg.label, pcfg.name,
                 pcfg.output, pcfg.out_channel)
        module_dir = package_file(cls, ".")
        for card, licence in model_cards(module_dir, pcfg.name).items():
            log.info("processor %s: model card %s; weights licence: %s", pcfg.label, card.name,
                     licence)
        slots.append(Slot(pcfg, proc))
    return slots


def build_core(cfg: Config, workers, *, now_ns: Callable[[], int] = clock_now,
               counters: Counters | None = None, record: Recorder | None = None,
               send_ahead_ms: float | None = None) -> EngineCore:
    """Processors (``build_slots``) and the core that plays them, with ``workers``
    (``ThreadedWorkers`` live, ``SteppedWorkers`` offline); the processors' contexts reach the
    core for jobs, retraction and the transport."""
    host = HostRef()
    slots = build_slots(cfg, host=host, now_ns=now_ns)
    return EngineCore(cfg, slots, counters, record, workers=workers, host=host, send_ahead_ms=send_ahead_ms)
