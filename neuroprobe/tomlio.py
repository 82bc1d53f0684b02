"""Reading TOML files with neuroprobe's one-line errors."""
from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import ConfigError


def read_toml(path: str | Path, what: str = "file") -> dict:
    """Parse a TOML file; a missing file or bad TOML is a ConfigError naming ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {e}") from None
