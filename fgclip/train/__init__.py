"""Two-stage FG-CLIP pretraining: configuration, engines (DeepSpeed ZeRO-2 or plain), loop, checkpoints,
logging, a small held-out evaluation and the embedded default experiment.

Nothing here is imported by `fgclip` itself: the model and losses never depend on the trainer.
"""
