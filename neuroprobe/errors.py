"""Exception types shared by all of neuroprobe.

Every error raised on purpose by the package derives from :class:`NeuroprobeError`, so callers can
catch the package's own errors in one place.  The two concrete kinds also derive from
:class:`ValueError`, so code that already catches ``ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["NeuroprobeError", "ConfigError", "ShapeError"]


class NeuroprobeError(Exception):
    """Base class of every error raised on purpose by neuroprobe."""


class ConfigError(NeuroprobeError, ValueError):
    """A parameter or configuration value is outside what is allowed (message names it)."""


class ShapeError(NeuroprobeError, ValueError):
    """A tensor argument has the wrong shape or number of dimensions (message names it)."""


class NonFiniteError(NeuroprobeError):
    """Weights or activity became NaN/Inf during a run (the run stops; earlier files are kept)."""
