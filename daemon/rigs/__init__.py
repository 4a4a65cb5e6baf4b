"""Test and benchmark rigs: ``genie run`` as a child process and plain port clients (``loopback``),
evdev devices as FIFOs (``fifo_input``). The daemon itself runs none of this (``genie run`` reads
a FIFO device only through its hidden test option ``--evdev-fifo-dir``)."""
