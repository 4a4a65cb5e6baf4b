"""What the model packages share: the training loop (DDP, exact resume, time limit, progress bar),
checkpoints, loss plots, strict configs and timing statistics.

A model package (``pianogenie``, ``drumvae``, ``musiclm``) gives the loop a :class:`~modelkit.loop.Task`
(its model, its batches, its loss, its validation) and gets checkpoints it can resume from exactly and
write a model card from. Nothing here imports the daemon.
"""
