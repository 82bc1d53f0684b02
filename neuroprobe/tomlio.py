"""Reading TOML files with neuroprobe's one-line errors."""
from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import ConfigError


def read_toml(path: str | Path, what: str = "file") -> dict:
    """Parse a TOML file; a missing, unreadable, non-UTF-8 or invalid file is a ConfigError naming
    ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} " + ("is not a file" if path.exists() else "not found"))
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r}: not UTF-8 text (byte {e.start}); TOML files are UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r} cannot be read ({e.strerror or type(e).__name__})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{what} {str(path)!r}: nested too deeply") from None
