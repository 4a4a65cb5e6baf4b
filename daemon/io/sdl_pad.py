"""Game controllers through SDL's GameController API (macOS, Windows, Linux desktops).

The ``sdl`` extra (``pip install 'genie-midi[sdl]'``: pysdl2 and pysdl2-dll, which bundles the SDL2
library) reads any controller SDL's mapping database knows, with the same 8-button model as the
evdev source (``daemon.io.gamepad``): low to high across the pad, left trigger, left shoulder,
D-pad left, D-pad right, left face button (X), right face button (B), right shoulder, right
trigger. SDL names buttons by position (A is the bottom face button on every pad), so one map
fits Xbox, PlayStation and Switch pads alike. Triggers press past a threshold and release below
threshold - hysteresis; their depth at the crossing sets the velocity.

- ``SdlPadParser``: pure; fed SDL button and axis changes, returns ``PadChange``s.
- ``SdlGamepadSource``: one thread, ``genie-sdl``, initializes SDL's controller subsystem and
  waits for its events. Background events are on (``SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS``),
  so no focused window is needed, and SDL installs no signal handlers (Genie owns SIGINT and
  SIGTERM). A controller that appears is opened; one that goes away releases its held buttons and
  is reported lost. Tests drive ``open``/``poll`` from their own thread instead of ``start``,
  with SDL's virtual joysticks (which exist only inside the process that creates them).

Event times are the daemon's clock when SDL hands the event over (SDL2 stamps in milliseconds).
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

from daemon.events import ButtonEvent, now_ns
from daemon.io.evdev_devices import GamepadUnavailable, PadChange
from daemon.io.gamepad import _velocity

log = logging.getLogger("genie.sdl")

# SDL_GameControllerButton / SDL_GameControllerAxis (SDL_gamecontroller.h; a stable ABI)
BUTTON_B, BUTTON_X = 1, 2
BUTTON_LEFTSHOULDER, BUTTON_RIGHTSHOULDER = 9, 10
BUTTON_DPAD_LEFT, BUTTON_DPAD_RIGHT = 13, 14
AXIS_TRIGGERLEFT, AXIS_TRIGGERRIGHT = 4, 5
AXIS_MAX_VALUE = 32767

BUTTONS = {BUTTON_LEFTSHOULDER: 1, BUTTON_DPAD_LEFT: 2, BUTTON_DPAD_RIGHT: 3, BUTTON_X: 4,
           BUTTON_B: 5, BUTTON_RIGHTSHOULDER: 6}  # SDL button -> Genie button
TRIGGERS = {AXIS_TRIGGERLEFT: 0, AXIS_TRIGGERRIGHT: 7}  # SDL axis -> Genie button
INSTALL_HINT = "pip install 'genie-midi[sdl]' (pysdl2 and its bundled SDL2 library, pysdl2-dll)"


class SdlPadParser:
    """One controller's 8 buttons from SDL button and axis changes."""

    def __init__(self, threshold: float = 0.5, hysteresis: float = 0.15) -> None:
        self.threshold = threshold
        self.release_below = threshold - hysteresis
        self.held: set[int] = set()

    def button(self, sdl_button: int, down: bool, t_ns: int) -> list[PadChange]:
        b = BUTTONS.get(sdl_button)
        if b is None or (b in self.held) == down:
            return []
        (self.held.add if down else self.held.discard)(b)
        return [PadChange(b, down, None, t_ns)]

    def axis(self, sdl_axis: int, value: int, t_ns: int) -> list[PadChange]:
        b = TRIGGERS.get(sdl_axis)
        if b is None:
            return []
        depth = max(0, value) / AXIS_MAX_VALUE
        if b not in self.held and depth >= self.threshold:
            self.held.add(b)
            return [PadChange(b, True, _velocity(depth, self.threshold), t_ns)]
        if b in self.held and depth < self.release_below:
            self.held.discard(b)
            return [PadChange(b, False, None, t_ns)]
        return []

    def release_all(self, t_ns: int) -> list[PadChange]:
        out = [PadChange(b, False, None, t_ns) for b in sorted(self.held)]
        self.held.clear()
        return out


def sdl_available() -> str | None:
    """Why SDL controllers cannot be read here, or None."""
    try:
        with warnings.catch_warnings():
            # pysdl2 announces which SDL library it found with a UserWarning on stderr; the
            # daemon prints nothing but its log. Only that message is silenced.
            warnings.filterwarnings("ignore", message="Using SDL2 binaries from",
                                    category=UserWarning)
            import sdl2  # noqa: F401
    except ImportError as exc:
        return f"SDL is not installed ({exc}): {INSTALL_HINT}"
    return None


class SdlGamepadSource:
    """Posts SDL game controllers' buttons as ``ButtonEvent``s (sources ``sdl:<name>``)."""

    def __init__(self, post: Callable[[ButtonEvent], None],
                 on_lost: Callable[[str], None] | None = None, cfg: Any = None) -> None:
        why = sdl_available()
        if why:
            raise GamepadUnavailable(why)
        self.post = post
        self.on_lost = on_lost
        self.threshold = float(getattr(cfg, "trigger_threshold", 0.5))
        self.hysteresis = float(getattr(cfg, "trigger_hysteresis", 0.15))
        self._pads: dict[int, tuple[Any, str, SdlPadParser]] = {}  # instance id -> pad
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name="genie-sdl", daemon=True)
        self._open = False

    # ---- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Start ``genie-sdl`` (SDL is initialized and polled on that one thread)."""
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise GamepadUnavailable(str(self._error))

    def stop(self) -> None:
        """Release held buttons, close the controllers and SDL; idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        elif self._open:
            self.close()

    def _run(self) -> None:
        try:
            self.open()
        except Exception as exc:  # reported to start(), which raises it in the caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                self.poll(0.05)
        finally:
            self.close()

    # ---- one step (the thread's loop; tests call these from their own thread) ---------------

    def open(self) -> None:
        import sdl2

        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # no window system needed
        sdl2.SDL_SetHint(sdl2.SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS, b"1")
        sdl2.SDL_SetHint(sdl2.SDL_HINT_NO_SIGNAL_HANDLERS, b"1")
        if sdl2.SDL_InitSubSystem(sdl2.SDL_INIT_GAMECONTROLLER) != 0:
            raise GamepadUnavailable(f"SDL: {sdl2.SDL_GetError().decode(errors='replace')}")
        self._sdl = sdl2
        self._event = sdl2.SDL_Event()
        self._open = True

    def poll(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for SDL events; handle all that are there."""
        sdl2, ev = self._sdl, self._event
        sdl2.SDL_JoystickUpdate()
        got = sdl2.SDL_WaitEventTimeout(ctypes.byref(ev), max(0, int(timeout_s * 1000)))
        while got:
            self._handle(ev)
            got = sdl2.SDL_PollEvent(ctypes.byref(ev))

    def _handle(self, ev: Any) -> None:
        sdl2 = self._sdl
        t = now_ns()
        if ev.type == sdl2.SDL_CONTROLLERDEVICEADDED:
            self._add(ev.cdevice.which)
        elif ev.type == sdl2.SDL_CONTROLLERDEVICEREMOVED:
            self._lose(ev.cdevice.which, t)
        elif ev.type in (sdl2.SDL_CONTROLLERBUTTONDOWN, sdl2.SDL_CONTROLLERBUTTONUP):
            pad = self._pads.get(ev.cbutton.which)
            if pad is not None:
                self._emit(pad[1], pad[2].button(ev.cbutton.button,
                                                 ev.type == sdl2.SDL_CONTROLLERBUTTONDOWN, t))
        elif ev.type == sdl2.SDL_CONTROLLERAXISMOTION:
            pad = self._pads.get(ev.caxis.which)
            if pad is not None:
                self._emit(pad[1], pad[2].axis(ev.caxis.axis, ev.caxis.value, t))

    def _add(self, device_index: int) -> None:
        sdl2 = self._sdl
        ctl = sdl2.SDL_GameControllerOpen(device_index)
        if not ctl:
            log.warning("sdl: cannot open controller %d: %s", device_index,
                        sdl2.SDL_GetError().decode(errors="replace"))
            return
        iid = sdl2.SDL_JoystickInstanceID(sdl2.SDL_GameControllerGetJoystick(ctl))
        if iid in self._pads:
            sdl2.SDL_GameControllerClose(ctl)
            return
        name = (sdl2.SDL_GameControllerName(ctl) or b"controller").decode(errors="replace")
        source, n = f"sdl:{name}", 2
        taken = {s for _, s, _ in self._pads.values()}
        while source in taken:
            source, n = f"sdl:{name}#{n}", n + 1
        self._pads[iid] = (ctl, source, SdlPadParser(self.threshold, self.hysteresis))
        log.info("sdl: controller %s is %s", name, source)

    def _lose(self, instance_id: int, t_ns: int) -> None:
        pad = self._pads.pop(instance_id, None)
        if pad is None:
            return
        ctl, source, parser = pad
        self._emit(source, parser.release_all(t_ns))
        self._sdl.SDL_GameControllerClose(ctl)
        log.warning("sdl: %s went away; its buttons are released", source)
        if self.on_lost is not None:
            self.on_lost(source)

    def _emit(self, source: str, changes: list[PadChange]) -> None:
        for c in changes:
            self.post(ButtonEvent(c.time_ns, source, c.button, c.pressed, c.velocity))

    def sources(self) -> list[str]:
        return sorted(s for _, s, _ in self._pads.values())

    def close(self) -> None:
        """Release every held button, close the controllers and SDL's controller subsystem."""
        if not self._open:
            return
        t = now_ns()
        for iid in list(self._pads):
            ctl, source, parser = self._pads.pop(iid)
            self._emit(source, parser.release_all(t))
            self._sdl.SDL_GameControllerClose(ctl)
        self._sdl.SDL_QuitSubSystem(self._sdl.SDL_INIT_GAMECONTROLLER)
        self._open = False
