"""Shared entry-point behaviour: user errors become one clear line on stderr and exit code 2."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from omegaconf.errors import ConfigKeyError, ValidationError

# Errors a user can cause with a bad file, path or key; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, KeyError, ConfigKeyError,
                                                 ValidationError, TypeError)


def run_cli(fn: Callable[[Any], Any], cfg: Any) -> Any:
    try:
        return fn(cfg)
    except USER_ERRORS as e:
        cause = e
        # hydra.utils.instantiate wraps constructor errors; report the root cause, which names the key/file.
        while cause.__cause__ is not None and isinstance(cause.__cause__, USER_ERRORS):
            cause = cause.__cause__
        logging.getLogger("seqdiff").debug("user error", exc_info=True)
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
