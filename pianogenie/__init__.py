"""Piano Genie (Donahue, Simon, Dieleman, IUI 2019): 8 buttons play 88 keys.

data.py prepares MAESTRO (via ASAP); model.py is the autoencoder; train.py, evaluate.py and
export.py make and measure the shipped weights; processor.py plays them live in the daemon.
"""
