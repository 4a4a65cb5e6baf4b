"""Drum VAE (GrooVAE-style; Roberts et al. 2018, Gillick et al. 2019): 2-bar drum grooves with human
velocity and micro-timing, from a groove, a tapped rhythm or quantized hits.

data.py (GMD 2-bar windows), model.py, train.py (modelkit), evaluate.py, export.py (TorchScript
step functions), render.py (drum grids as PNG), cli.py (genie train/eval/export/bench drumvae) and
weights/ with the model card. processor.py (the live drummer) is still to come.
"""
