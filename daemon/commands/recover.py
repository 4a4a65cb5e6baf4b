"""``genie recover``: turn the journal of a recording cut short by a crash into a MIDI file."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("journal", metavar="JOURNAL", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", metavar="OUT.mid", default=None,
              type=click.Path(dir_okay=False, writable=True),
              help="MIDI file to write (default: the journal's path without .journal).")
def recover(journal: str, out_path: str | None) -> None:
    """Rebuild the MIDI file of a recording from its journal (left by a crash)."""
    from daemon.io.recorder import default_output_for, recover as recover_journal

    out = Path(out_path) if out_path else default_output_for(journal)
    if not Path(journal).is_file():
        raise click.ClickException(f"{journal}: no such file")
    try:
        stats = recover_journal(journal, out)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        name = journal if exc.filename and Path(exc.filename) == Path(journal) else out
        raise click.ClickException(f"{name}: {exc.strerror or exc}") from None
    click.echo(f"recovered {stats.events} events in {stats.tracks} tracks -> {out} "
               f"({stats.skipped_lines} damaged lines skipped)")
