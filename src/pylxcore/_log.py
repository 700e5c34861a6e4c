"""The ``pylxcore`` logger, made on first use: importing ``logging`` costs
about a tenth of ``import pylxcore``, and most calls log nothing."""

from __future__ import annotations

from typing import Any

_logger: Any = None


def log(level: str, msg: str, *args: object) -> None:
    """``logging.getLogger("pylxcore").<level>(msg, *args)``, importing logging lazily."""
    global _logger
    if _logger is None:
        import logging

        _logger = logging.getLogger("pylxcore")
    getattr(_logger, level)(msg, *args)
