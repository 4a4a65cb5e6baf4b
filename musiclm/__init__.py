"""Music Transformer continuation (Huang et al. 2018, arXiv 1809.04281).

Layout, as in every model package: tokenizer.py (performance and JSB encodings), model.py
(relative attention with skewing, KV-cached sliding-window step), data.py, train.py (a modelkit
task), evaluate.py, export.py (TorchScript step + model card), bench.py, cli.py, and weights/
with the card ``musiclm.md``. The live processor (processor.py) is still to come.
"""
