"""How tfmpq's zoo checkpoints were made: ``python -m models.train_demo`` (see README.md here).

The model builders and the trained checkpoints ship inside the package, in ``tfmpq.zoo`` and
``tfmpq/zoo/checkpoints/``; this folder is not installed.
"""
