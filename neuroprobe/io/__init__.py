"""Exchange formats: NIR (Neuromorphic Intermediate Representation) export and import of spiking
networks (:mod:`neuroprobe.io.nir`, see docs/nir.md).

The NIR functions are imported on first use, so that ``import neuroprobe.io`` does not load nir
and h5py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["export_nir", "import_nir", "NIRImport"]

if TYPE_CHECKING:
    from .nir import NIRImport, export_nir, import_nir


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import nir

        return getattr(nir, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
