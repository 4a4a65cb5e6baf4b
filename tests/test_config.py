"""Configuration: defaults, validation, and one-line errors naming file and key (exit code 2)."""

import pytest
from click.testing import CliRunner

from daemon.cli import cli, main
from daemon.config import ConfigError, load_config, parse_config


def test_every_key_has_a_default(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    cfg = load_config(str(path))
    assert cfg.midi.input_port == "Genie in"
    assert cfg.processors[0].output == "Genie out"


@pytest.mark.parametrize("text, key", [
    ("[midi]\napi = 'oss'\n", "midi.api"),
    ("[midi]\nbogus = 1\n", "midi.bogus"),
    ("[[processor]]\nname = 'thru'\nout_channel = 'x'\n", "processor[0].out_channel"),
    ("[[processor]]\nname = 'thru'\nout_channel = 17\n", "processor[0].out_channel"),
    ("[[processor]]\nname = 'thru'\n[[processor]]\nname = 'thru'\n", "processor[1].label"),
    ("[engine]\npanic_buttons = [9]\n", "engine.panic_buttons"),
    ("[keyboard]\nenabled = true\n", "keyboard.enabled"),
    ("wat = 3\n", "wat"),
    # accepted once, harmful: a busy idle loop, the sustain pedal panicking, tracebacks, silence
    ("[engine]\nidle_interval_ms = 0\n", "engine.idle_interval_ms"),
    ("[engine]\npanic_cc = 64\n", "engine.panic_cc"),
    ("[keyboard]\ngate_ms = -100\n", "keyboard.gate_ms"),
    ("[record]\nflush_interval_s = 0\n", "record.flush_interval_s"),
    ("[midi]\nqueue_limit = 1000000000000\n", "midi.queue_limit"),
    ("[midi]\necho_window_ms = inf\n", "midi.echo_window_ms"),
    ("[[processor]]\nname = 'thru'\ninputs = []\n", "processor[0].inputs"),
    ("[[processor]]\nname = 'thru'\nclock_lost_ms = 0\n", "processor[0].clock_lost_ms"),
])
def test_bad_config_names_file_and_key(tmp_path, text, key):
    path = tmp_path / "genie.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    msg = str(err.value)
    assert str(path) in msg and key in msg and "\n" not in msg


def test_invalid_toml_is_one_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[midi\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(str(path))


def _run_main(monkeypatch, capsys, argv):
    monkeypatch.setattr("sys.argv", ["genie", *argv])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_cli_bad_config_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "genie.toml"
    path.write_text("[midi]\nbogus = 1\n")
    code, err = _run_main(monkeypatch, capsys, ["--config", str(path), "run"])
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "genie: error: config" in err and "midi.bogus" in err


def test_cli_missing_config_file(tmp_path, monkeypatch, capsys):
    code, err = _run_main(monkeypatch, capsys, ["--config", str(tmp_path / "nope.toml"), "run"])
    assert code == 2 and "file not found" in err


def _tune(path):
    import mido

    mid = mido.MidiFile()
    mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=60, velocity=90, time=0),
                                      mido.Message("note_off", note=60, time=240)]))
    mid.save(path)
    return path


def test_unknown_processor_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "genie.toml"
    path.write_text("[[processor]]\nname = 'nosuch'\n[midi]\napi = 'jack'\n")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "genie-none-running")
    code, err = _run_main(monkeypatch, capsys, ["--config", str(path), "play", str(_tune(tmp_path / "x.mid")),
                                                "--out", str(tmp_path / "o.mid")])
    assert code == 2 and err.strip().count("\n") == 0 and "nosuch" in err
    assert not (tmp_path / "o.mid").exists()


def test_a_missing_model_file_is_one_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "genie.toml"
    path.write_text("[[processor]]\nname = 'markov'\noptions = { weights = '/nonexistent/markov.json' }\n")
    code, err = _run_main(monkeypatch, capsys, ["--config", str(path), "play", str(_tune(tmp_path / "x.mid")),
                                                "--out", str(tmp_path / "o.mid")])
    assert code == 2 and err.strip().count("\n") == 0 and "/nonexistent/markov.json" in err


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("run", "ports", "play", "panic", "recover", "doctor", "train", "bench"):
        assert name in result.output


def test_xdg_config_is_found(tmp_path, monkeypatch):
    (tmp_path / "genie").mkdir()
    (tmp_path / "genie" / "config.toml").write_text("[midi]\nclient_name = 'Stage'\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_config(None).midi.client_name == "Stage"


def test_processor_options_pass_through_as_a_table():
    cfg = parse_config({"processor": [{"name": "markov", "options": {"temperature": 0.5}}]})
    assert cfg.processors[0].options == {"temperature": 0.5}


def test_doctor_exits_non_zero_when_it_finds_a_problem(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.toml"
    bad.write_text("[midi]\napi = 3\n")
    r = subprocess.run([sys.executable, "-m", "daemon", "--config", str(bad), "doctor"],
                       capture_output=True, text=True, timeout=120)
    assert "[FAIL]" in r.stdout and "midi.api" in r.stdout
    assert r.returncode == 1


def test_the_readmes_processor_examples_parse():
    """The [[processor]] examples of the Drums and Call and response sections, as written."""
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "drumvae" in b or "musiclm" in b]
    assert len(blocks) == 2
    for block in blocks:
        cfg = parse_config(tomllib.loads(block))
        assert {p.name for p in cfg.processors} & {"drumvae", "musiclm"}


@pytest.mark.parametrize("options, why", [("notes = [999, -1]", "notes"), ("velocity = 1000", "velocity")])
def test_thru_options_out_of_range_are_one_line(tmp_path, monkeypatch, capsys, options, why):
    path = tmp_path / "genie.toml"
    path.write_text(f"[[processor]]\nname = 'thru'\noptions = {{ {options} }}\n")
    code, err = _run_main(monkeypatch, capsys, ["--config", str(path), "play", str(_tune(tmp_path / "x.mid")),
                                                "--out", str(tmp_path / "o.mid")])
    assert code == 2 and err.strip().count("\n") == 0 and why in err


def test_command_line_options_are_checked_with_the_file_and_the_result_is_frozen(tmp_path):
    from daemon.commands.run import raw_overrides
    from daemon.config import load_config

    path = tmp_path / "genie.toml"
    path.write_text("[[processor]]\nname = 'markov'\nchannel = 3\ninputs = ['keyboard']\n"
                    "options = { temperature = 0.5 }\n")
    cfg = load_config(str(path), raw_overrides("thru", ("Launch*",), "Genie drums", None, (), None,
                                                False, False))
    p = cfg.processors[0]
    assert (p.name, p.label, p.channel, p.output, p.options) == ("thru", "thru", 3, "Genie drums", {})
    assert "keyboard:*" in p.inputs and cfg.midi.inputs == ["Launch*"] and cfg.keyboard.enabled == "off"
    with pytest.raises(AttributeError, match="frozen"):
        cfg.midi.api = "alsa"
    with pytest.raises(AttributeError, match="frozen"):
        p.output = "elsewhere"
    # an option from the command line is checked as the file's would be, naming the key
    with pytest.raises(ConfigError, match="processor\\[0\\].out_channel"):
        load_config(str(path), lambda raw: raw["processor"][0].update(out_channel=99))


def test_the_readmes_configuration_example_is_a_valid_config():
    import re
    import tomllib
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "[midi]" in b)
    cfg = parse_config(tomllib.loads(block), "README.md")
    assert cfg.midi.inputs == [] and cfg.processors[0].name == "markov"


@pytest.mark.parametrize("argv, says", [
    (["buttons", "{toml}"], "not a readable MIDI file"),
    (["play", "{missing}", "--out", "{out}"], "no such file"),
    (["recover", "{missing}"], "no such file"),
    (["eval", "pianogenie"], "not found"),
])
def test_user_facing_errors_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, argv, says):
    toml = tmp_path / "notmidi.toml"
    toml.write_text("[midi]\n")
    monkeypatch.setenv("GENIE_DATASETS", str(tmp_path / "no-datasets"))
    argv = [a.format(toml=toml, missing=tmp_path / "nonexist.mid", out=tmp_path / "o.mid") for a in argv]
    code, err = _run_main(monkeypatch, capsys, argv)
    assert code == 2 and says in err and err.strip().count("\n") == 0, err
