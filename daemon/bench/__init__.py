"""Benchmarks behind ``genie bench``: measurement code, kept apart from the command line.

``latency`` measures MIDI round trips through real JACK ports; ``thru_client`` is the minimal
rtmidi program it compares Genie against.
"""
