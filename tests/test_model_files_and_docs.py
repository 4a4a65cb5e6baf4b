"""``genie doctor`` lists a processor's model files (not its plots, cards or metrics) and the
licence each shipped model card states."""

from daemon.commands.doctor import check_processors
from daemon.processor import is_model_file


def test_doctor_lists_only_model_files_and_every_shipped_card_states_a_licence(tmp_path):
    found = {f.what.split(":")[0]: f for f in check_processors()}
    for name in ("drumvae", "musiclm", "pianogenie", "markov"):
        f = found[f"processor {name}"]
        assert f.level == "ok", f.what  # a licence line was found in the card
        listed = f.what.split(": ", 1)[1].split(" (model card")[0]
        assert ".png" not in listed and "_metrics" not in listed, listed
    for fname, model in (("x.pt", True), ("x.json", True), ("x_metrics.json", False),
                         ("x_loss.png", False), ("x.md", False)):
        (tmp_path / fname).write_text("{}")
        assert is_model_file(tmp_path / fname) is model, fname


def test_the_readme_documents_every_option_of_every_shipped_processor():
    import re
    from pathlib import Path

    from daemon.processor import load

    readme = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    section = readme.split("## Processor options", 1)[1].split("\n## ", 1)[0]
    for name in ("pianogenie", "markov", "drumvae", "musiclm"):
        table = section.split(f"`{name}`:", 1)[1].split("\n\n`", 1)[0]
        documented = set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))
        assert documented == set(load(name).defaults), name
