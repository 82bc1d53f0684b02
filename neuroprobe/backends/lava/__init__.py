"""Lava backend: deploy neuroprobe spiking networks as Loihi-style Lava processes.

Lava runs in its own Python 3.10 environment; nothing here imports lava. ``driver`` runs the
runner over files with a timeout, ``job`` turns networks into runner jobs.
"""
from .driver import LavaError, lava_python, lava_status, run_job
from .job import fixed_job, float_job

__all__ = ["LavaError", "lava_python", "lava_status", "run_job", "fixed_job", "float_job"]
