"""An SDL virtual game controller for the SDL tests (headless; it exists only in this process)."""

from __future__ import annotations

import sdl2


class VirtualPad:
    """A virtual game controller attached while ``src`` (an ``SdlGamepadSource``) is polled from
    the test's thread; each change is followed by a poll, as the source's own thread would."""

    def __init__(self, src) -> None:
        self.src = src
        self.index = sdl2.SDL_JoystickAttachVirtual(sdl2.SDL_JOYSTICK_TYPE_GAMECONTROLLER,
                                                    sdl2.SDL_CONTROLLER_AXIS_MAX,
                                                    sdl2.SDL_CONTROLLER_BUTTON_MAX, 0)
        assert self.index >= 0, sdl2.SDL_GetError()
        src.poll(0.05)
        assert src.sources() == ["sdl:Virtual Controller"]
        self._joy = sdl2.SDL_JoystickFromInstanceID(
            sdl2.SDL_JoystickGetDeviceInstanceID(self.index))

    def press(self, button: int | None = None, axis: int | None = None, value: int = 1) -> None:
        """Set a button (1 down, 0 up) or an axis to ``value``, then let the source see it."""
        if axis is None:
            sdl2.SDL_JoystickSetVirtualButton(self._joy, button, value)
        else:
            sdl2.SDL_JoystickSetVirtualAxis(self._joy, axis, value)
        self.src.poll(0.02)

    def detach(self) -> None:
        """Unplug it (once), then let the source see that."""
        if self.index >= 0:
            assert sdl2.SDL_JoystickDetachVirtual(self.index) == 0
            self.index = -1
            self.src.poll(0.05)
