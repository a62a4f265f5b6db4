"""OmegaConf resolvers the configs use; registered when ``rnnexp`` is imported."""

from omegaconf import OmegaConf


def register() -> None:
    # ${rnnexp.first:a,b}: the first value that is set. hydra.run.dir uses it so that
    # resume=<run dir> continues in that directory instead of a new one.
    if not OmegaConf.has_resolver("rnnexp.first"):
        OmegaConf.register_new_resolver("rnnexp.first", lambda *values: next((v for v in values if v), None))
