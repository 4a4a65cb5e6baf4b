"""``python -m daemon`` is ``genie``."""

from daemon.cli import main

main()
