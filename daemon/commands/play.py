"""``genie play``: run a MIDI file through the processors offline, deterministically."""

from __future__ import annotations

import click


@click.command()
@click.argument("in_path", metavar="IN.mid", type=click.Path(dir_okay=False))
@click.option("--out", "out_path", required=True, metavar="OUT.mid",
              type=click.Path(dir_okay=False, writable=True),
              help="MIDI file to write: the input track, then one track per output port.")
@click.option("--processor", metavar="NAME", default=None,
              help="Play through this processor alone instead of the configured ones.")
@click.option("--buttons", "as_buttons", is_flag=True,
              help="Play the file's notes as presses of the 8 buttons (by pitch band).")
@click.option("--seed", type=int, default=None, help="Random seed (default: engine.seed).")
@click.option("--force", is_flag=True, help="Overwrite OUT.mid when it exists (else a numbered new name).")
@click.option("--bpm", type=click.FloatRange(20, 400), default=None,
              help="Clocked processors: a DAW clock at this tempo (default: the file's tempo map).")
@click.pass_obj
def play(state, in_path: str, out_path: str, processor: str | None, as_buttons: bool,
         seed: int | None, force: bool, bpm: float | None) -> None:
    """Play a MIDI file through the processors on a simulated clock and write what they send."""
    from pathlib import Path

    from daemon.io.recorder import take_path
    from daemon.offline import play_file

    try:
        out_path = str(take_path(out_path, force=force, keep=(Path(in_path),)))
        stats = play_file(state.config, in_path, out_path, processor=processor,
                          as_buttons=as_buttons, seed=seed, bpm=bpm)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # writing the output
        raise click.ClickException(f"{out_path}: cannot write: {exc.strerror or exc}") from None
    click.echo(f"played {in_path} through {', '.join(stats['processors'])}: "
               f"{stats['events_in']} events in, {stats['messages_out']} messages out "
               f"({stats['notes_out']} notes) over {stats['seconds']:.1f} s -> {out_path}")
