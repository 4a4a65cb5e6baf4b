"""The minimal rtmidi thru client: every message that arrives is sent straight back out.

It is the floor for a Python program on rtmidi, target (b) of ``genie bench latency``: rtmidi's
input callback (which, under JACK, runs in the input client's process thread and takes the GIL)
calls ``send_message`` on a second client, whose process callback writes it out. Nothing else.

    python -m daemon.bench.thru_client [--name "bench thru"] [--api jack]

Ports: ``NAME in:in`` (input) and ``NAME out:out`` (output). Prints ``thru: ready`` on stdout once
both are open; stops on SIGTERM or SIGINT, or when its parent process is gone (a benchmark that
crashed leaves no client behind).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from daemon.io.midi import release

READY_MARK = "thru: ready"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m daemon.bench.thru_client",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="bench thru", help="client name prefix")
    parser.add_argument("--api", default="jack", choices=["jack", "alsa"])
    args = parser.parse_args(argv)

    # Blocked here, so every thread rtmidi and libjack start inherits the mask and the main
    # thread alone receives the signal, in sigwait below.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)

    import rtmidi

    api = rtmidi.API_UNIX_JACK if args.api == "jack" else rtmidi.API_LINUX_ALSA
    out = rtmidi.MidiOut(api, name=f"{args.name} out")
    inp = rtmidi.MidiIn(api, name=f"{args.name} in")
    try:
        inp.ignore_types(sysex=False, timing=False, active_sense=False)
        out.open_virtual_port("out")
        send = out.send_message

        def echo(event, data=None) -> None:
            send(event[0])

        inp.set_callback(echo)
        inp.open_virtual_port("in")
        print(READY_MARK, flush=True)
        parent = os.getppid()
        while signal.sigtimedwait(stop_signals, 1.0) is None and os.getppid() == parent:
            pass
    finally:
        inp.cancel_callback()
        for port in (inp, out):
            release(port, args.api)
    return 0


if __name__ == "__main__":
    sys.exit(main())
