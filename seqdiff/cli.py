"""Shared entry-point behaviour: user errors become one clear line on stderr and exit code 2."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

# Errors a user can cause with a bad file, path or key; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, ConfigKeyError,
                                                 ValidationError, TypeError, MissingMandatoryValue)


def run_cli(fn: Callable[[Any], Any], cfg: Any) -> Any:
    from hydra.errors import InstantiationException

    from seqdiff.checkpoint import trusted_checkpoints

    try:
        # `trust_checkpoint=true` on any CLI reaches every checkpoint loader through this context.
        with trusted_checkpoints(bool(cfg.get("trust_checkpoint", False))):
            return fn(cfg)
    except (*USER_ERRORS, InstantiationException) as e:
        cause = e
        # hydra.utils.instantiate wraps constructor errors; report the root cause, which names the key/file.
        while cause.__cause__ is not None and isinstance(cause.__cause__, (*USER_ERRORS, InstantiationException)):
            cause = cause.__cause__
        if not isinstance(cause, USER_ERRORS):  # a constructor failed for another reason: a bug, keep the trace
            raise
        logging.getLogger("seqdiff").debug("user error", exc_info=True)
        msg = config_error_line(cause) if isinstance(cause, OmegaConfBaseException) else str(cause)
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


# ---- config errors: one line, like a user error ----------------------------------------------------------------------
def run_hydra(main: Callable[[], Any], positional: str | None = None) -> Any:
    """Call a `@hydra.main` function; a config error (unknown key, bad override, missing `???` value, unknown
    group option) becomes one line `error: ...` and exit code 2, like run_cli's user errors, instead of Hydra's
    multi-line report and exit code 1. Used as `run_hydra(main)` in scripts/*.py.

    positional: the config key that a first command-line word which is not an override sets, so that
    `tables.py sample ...` means `tables.py command=sample ...` (positional="command")."""
    from hydra.errors import HydraException

    if positional and len(sys.argv) > 1 and "=" not in sys.argv[1] and not sys.argv[1].startswith("-"):
        sys.argv.append(f"{positional}={sys.argv.pop(1)}")

    before = os.environ.get("HYDRA_FULL_ERROR")  # "1": the user asked for Hydra's full traces
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exiting with code 1
    try:
        return main()
    except (HydraException, OmegaConfBaseException) as e:
        if before == "1":
            raise
        logging.getLogger("seqdiff").debug("config error", exc_info=True)
        print(f"error: {config_error_line(e)}", file=sys.stderr)
        sys.exit(2)
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def config_error_line(e: BaseException) -> str:
    """Hydra/OmegaConf messages span lines (and add full_key/object_type details): keep the meaning, one line."""
    def lines(x: BaseException) -> list[str]:
        return [ln.strip() for ln in str(x).splitlines()
                if ln.strip() and not ln.strip().startswith(("full_key:", "object_type=", "reference_type="))]

    head, cause = lines(e), lines(e.__cause__) if e.__cause__ is not None else []
    if "Config search path:" in head:  # appended to "could not find group option" errors; not useful here
        head = head[: head.index("Config search path:")]
    if cause and head:
        head = [f"{head[0].rstrip('.')}: {cause[0]}.", *head[1:]]
    if getattr(e, "override", None):
        head = [f"bad override {e.override!r}:", *head]
    return " ".join(head or cause or [type(e).__name__])
