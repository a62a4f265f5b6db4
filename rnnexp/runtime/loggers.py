"""A wandb logger that never prompts and never hangs, and the end-of-job cleanup it needs.

wandb's own defaults ask for an API key on a terminal, raise without one, and with a key but
no network block for ~30 s before failing. Here the mode is a config value
(``logger.wandb.mode: auto|online|offline|disabled``) resolved before ``wandb.init``:
``auto`` is ``online`` when an API key is available and ``offline`` otherwise, and
``online`` falls back to ``offline`` (with one warning) when the server is not reachable.
Offline runs are synced later with ``wandb sync <run dir>/wandb/offline-run-*``.
"""

from __future__ import annotations

import logging
import netrc
import os
import socket
import urllib.request
from pathlib import Path
from typing import Any, Optional, Sequence
from urllib.parse import urlparse

from rnnexp.compat.wandb import drop_anonymous_argument
from rnnexp.errors import check_choice

log = logging.getLogger(__name__)

MODES = ("auto", "online", "offline", "disabled")
DEFAULT_HOST = "https://api.wandb.ai"


def _base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", DEFAULT_HOST)


def has_api_key(base_url: Optional[str] = None) -> bool:
    """An API key in ``WANDB_API_KEY`` or in the netrc file for the wandb host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(base_url or _base_url()).hostname or ""
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return bool(path.is_file() and netrc.netrc(str(path)).authenticators(host))
    except (netrc.NetrcParseError, OSError):
        return False


def reachable(base_url: Optional[str] = None, timeout: float = 1.5) -> bool:
    """Whether a TCP connection to the wandb server, or to the proxy that reaches it
    (``HTTPS_PROXY``/``HTTP_PROXY``, unless ``NO_PROXY`` covers the host), opens within ``timeout`` seconds."""
    url = urlparse(base_url or _base_url())
    # Behind a proxy the server itself is often not reachable directly, though wandb (which
    # honours the proxy variables) would reach it: check the proxy instead.
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_mode(mode: str = "auto", timeout: float = 1.5) -> str:
    """``auto``/``online``/``offline``/``disabled`` -> the mode to give ``wandb.init``."""
    check_choice("logger.wandb.mode", mode, MODES)
    if mode == "auto":
        # An explicit WANDB_MODE in the environment (CI, tests) wins over the guess.
        env = os.environ.get("WANDB_MODE")
        if env in ("online", "offline", "disabled"):
            return env
        if env == "dryrun":
            return "offline"
        mode = "online" if has_api_key() else "offline"
        if mode == "offline":
            return mode
    if mode == "online":
        if not has_api_key():
            log.warning("wandb: no API key (WANDB_API_KEY or `wandb login`); logging offline instead")
            return "offline"
        if not reachable(timeout=timeout):
            log.warning(
                "wandb: %s is not reachable; logging offline instead (upload later with `wandb sync`)", _base_url()
            )
            return "offline"
    return mode


def wandb_logger(
    mode: str = "auto",
    save_dir: str = ".",
    project: str = "rnnexp",
    group: Optional[str] = None,
    tags: Optional[Sequence[str]] = None,
    name: Optional[str] = None,
    log_model: bool = False,
    init_timeout: float = 60.0,
    connect_timeout: float = 1.5,
    **kwargs: Any,
):
    """A Lightning ``WandbLogger`` writing under ``save_dir`` (the run directory) in a resolved mode."""
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    resolved = resolve_mode(mode, timeout=connect_timeout)
    if resolved != "online" and log_model:
        log.warning("wandb: log_model needs online mode; checkpoints stay in the run directory only")
        log_model = False
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    logger = WandbLogger(
        save_dir=str(save_dir),
        project=project,
        group=group or None,
        tags=list(tags) if tags else None,
        name=name,
        log_model=log_model,
        mode=resolved,
        settings=wandb.Settings(init_timeout=init_timeout, silent=True, console="off"),
        **kwargs,
    )
    drop_anonymous_argument(logger)  # else a deprecation warning on every run
    return logger


def finish_wandb(failed: bool = False) -> None:
    """Close the current wandb run, if any, so the next job of a multirun starts its own.

    Called from a ``finally``: a job stopped by an Optuna pruner (``optuna.TrialPruned``, the
    exception being handled) is not a crash, so its run ends as finished with a ``pruned`` tag.
    """
    import sys

    wandb = sys.modules.get("wandb")  # never import wandb just to find there is no run
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    optuna = sys.modules.get("optuna")
    if failed and optuna is not None and isinstance(sys.exc_info()[1], optuna.TrialPruned):
        wandb.run.tags = (*(wandb.run.tags or ()), "pruned")
        failed = False
    wandb.finish(exit_code=1 if failed else 0)
