"""Monitors of rate runs: the ``[monitor]`` table records a rate network's weights and biases.

A rate network's "populations" are its layers (``fc1``, ``fc2``, …, ``net.layer_names``); the
variables are ``weight`` (the layer's weight matrix flattened row-major, n_out · n_in entries per
model) and ``bias``. One row per ``every`` loop steps (a loop step is an environment step, a stream
step or a probe window's step), batch entry ``batch_index`` (the seed), saved to
``recordings.npz`` like a spiking run's::

    [monitor]
    state = [{variable = "weight", population = "fc1", indices = [0, 1, 2, 3], every = 100}]
"""
from __future__ import annotations

from .callbacks import MonitorsCallback

__all__ = ["RATE_VARIABLES", "check_rate_monitors", "rate_monitors"]

RATE_VARIABLES = ("weight", "bias")


def check_rate_monitors(monitor, layer_names: list[str], bias: bool) -> None:
    """ValueError (one line) for a ``[monitor]`` table a rate network cannot answer."""
    if monitor.spikes or monitor.rate:
        key = "spikes" if monitor.spikes else "rate"
        raise ValueError(f"'monitor.{key}': a rate network has no spikes; record its layers with state = "
                         f"[{{variable = \"weight\", population = \"{layer_names[0]}\"}}]")
    for i, st in enumerate(monitor.state):
        if st.variable not in RATE_VARIABLES or (st.variable == "bias" and not bias):
            allowed = list(RATE_VARIABLES) if bias else ["weight"]
            raise ValueError(f"'monitor.state[{i}].variable' = {st.variable!r}: a rate network records {allowed}")
        if st.population not in layer_names:
            raise ValueError(f"'monitor.state[{i}].population' = {st.population!r}: the layers are {layer_names}")


def rate_monitors(exp, net) -> list[MonitorsCallback]:
    """The monitors callback of a rate run (empty list when ``[monitor]`` asks for nothing)."""
    from .monitors import MonitorSet, monitors_from_config

    table = exp.monitor.as_table()
    if not table:
        return []
    layers = dict(zip(net.layer_names, net.layers))
    batched = net.batch is not None

    def lookup(variable: str, population: str):
        x = getattr(layers[population], variable)
        return x.flatten(start_dim=1) if batched else x.flatten()

    counter = {"step": -1}

    def clock() -> int:
        counter["step"] += 1
        return counter["step"]

    class _RateMonitors(MonitorsCallback):
        def state_dict(self):
            return {**super().state_dict(), "step": counter["step"]}

        def load_state_dict(self, state):
            super().load_state_dict(state)
            if state and "step" in state:
                counter["step"] = int(state["step"])

    return [_RateMonitors([(MonitorSet(monitors_from_config(table), dt=1.0), 0)], lookup, clock,
                          meta={"unit": "loop step"})]
