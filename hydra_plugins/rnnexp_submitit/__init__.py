"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher, plus requeue with resume.

See ``launcher.py``; the module imports the optional ``hydra-submitit-launcher`` lazily, so
Hydra's plugin scan works without the ``slurm`` extra.
"""
