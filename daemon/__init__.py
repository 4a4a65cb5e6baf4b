"""Genie: a real-time MIDI instrument daemon with pluggable neural processors."""

__version__ = "0.1.0"
