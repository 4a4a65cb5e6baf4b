"""Drum VAE / GrooVAE (Roberts et al. 2018, Gillick et al. 2019): not implemented yet.

Planned layout, as in every model package: data.py, model.py, train.py, evaluate.py, export.py,
processor.py and weights/ with a model card.
"""
