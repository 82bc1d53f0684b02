"""The engine-conformance suite's parametrisation: every test taking an ``engine`` argument runs
once per installed engine of :data:`neuroprobe.engines.ENGINES` ("torch", "event" when numba
imports, "torch-fixed", "brian2"
when it imports, and "lava", marked ``lava``: NEUROPROBE_SKIP_LAVA=1 skips it when Lava is not
working, tests/conftest.py). A new engine added to ``neuroprobe.engines`` inherits the suite."""
import pytest

from neuroprobe.backends.brian2 import brian2_available
from neuroprobe.backends.event import available as event_available
from neuroprobe.engines import ENGINES

FLOAT_ENGINES = ("torch", "event", "brian2")  # float64 arithmetic: equal to the closed forms to 1e-9
FIXED_ENGINES = ("torch-fixed", "lava")  # Loihi integers: within the stated quantisation bounds


def engine_params() -> list:
    out = []
    for name in ENGINES:
        if name == "brian2" and not brian2_available():
            continue
        if name == "event" and not event_available():
            continue
        out.append(pytest.param(name, marks=pytest.mark.lava) if name == "lava" else name)
    return out


def pytest_generate_tests(metafunc):
    """An ``engine`` argument runs over :func:`engine_params`, unless the test parametrises
    ``engine`` itself (test_spikes.py chooses its engines from its own tables)."""
    if "engine" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if "engine" in names:
            return
    metafunc.parametrize("engine", engine_params())


@pytest.fixture(autouse=True)
def _quiet_brian2():
    """Brian2 logs every generated code object at DEBUG level, which pytest's log capture formats
    (slow): keep its logger at WARNING here."""
    import logging

    logger = logging.getLogger("brian2")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
