"""Custom Lava Processes and fixed_pt ProcessModels used by neuroprobe's Lava runner.

Runs inside the Lava environment (Python 3.10, NumPy, lava-nc 0.10.0); imports nothing from
neuroprobe (whose torch side has the same arithmetic in ``neuroprobe/backends/fixed/lif.py`` and
``neuroprobe/backends/fixed/rstdp.py``; the equivalence tests compare the two bit for bit).

* ``HashNoise``: membrane-noise input ((Σ 4 bytes of lowbias32(seed, step, neuron)) − 510)·mant >> shift,
  sent each step to a LIF's ``a_in``.
* ``CascadeRSTDPConn``: a sparse plastic connection with cascade-trace reward-modulated STDP in
  integer arithmetic (7-bit pre/post traces, an n-state ``e_bits``-bit (32) cascade eligibility per
  synapse with the rate ``r / 2**r_shift``,
  8-bit weight mantissas kept as 16-bit accumulators, a graded dopamine third factor).
* ``DistalRewardSource``: the distal-reward task on chip: watches one synapse's pre and post
  spikes, schedules a reward 1–3 s after each pre→post coincidence (delays from the same hash),
  and sends the decaying dopamine trace.
"""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from intmath import decay_trunc, hash_noise, hash_uniform32, round_shift


# ------------------------------------------------------------------ membrane noise
class HashNoise(AbstractProcess):
    def __init__(self, *, shape: tuple, seed: int, offset: int, mant: int, shift: int):
        super().__init__(shape=shape, seed=seed, offset=offset, mant=mant, shift=shift)
        self.a_out = OutPort(shape=shape)


@implements(proc=HashNoise, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyHashNoiseFixed(PyLoihiProcessModel):
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.idx = np.arange(proc_params["shape"][0], dtype=np.int64) + proc_params["offset"]

    def run_spk(self) -> None:
        p = self.proc_params
        self.a_out.send(hash_noise(p["seed"], self.time_step, self.idx, p["mant"], p["shift"]).astype(np.int32))


# ------------------------------------------------------------------ plastic connection
class CascadeRSTDPConn(AbstractProcess):
    """Sparse connection pre → post with cascade-trace R-STDP. ``pre_idx``, ``post_idx``: (S,)
    synapses; ``w_acc``: (S,) weight accumulators (mantissa << frac_bits); ``params``: dict of
    integers (see PyCascadeRSTDPFixed)."""

    def __init__(self, *, n_pre: int, n_post: int, pre_idx: np.ndarray, post_idx: np.ndarray, w_acc: np.ndarray,
                 params: dict):
        S = len(pre_idx)
        super().__init__(n_pre=n_pre, n_post=n_post, params=params)
        self.s_in = InPort(shape=(n_pre,))
        self.s_post = InPort(shape=(n_post,))
        self.dopamine = InPort(shape=(1,))
        self.a_out = OutPort(shape=(n_post,))
        self.pre_idx = Var(shape=(S,), init=pre_idx)
        self.post_idx = Var(shape=(S,), init=post_idx)
        self.w_acc = Var(shape=(S,), init=w_acc)
        self.elig = Var(shape=(params["order"], S), init=np.zeros((params["order"], S), dtype=np.int64))
        self.x_pre = Var(shape=(n_pre,), init=np.zeros(n_pre, dtype=np.int64))
        self.y_post = Var(shape=(n_post,), init=np.zeros(n_post, dtype=np.int64))


@implements(proc=CascadeRSTDPConn, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyCascadeRSTDPFixed(PyLoihiProcessModel):
    """Per step t (pre spikes s(t), post spikes q(t), dopamine d(t)):

        x ← trunc(x·(4096 − dx)/4096);  y ← trunc(y·(4096 − dy)/4096)       7-bit traces, before impulses
        c = a_plus·x[pre]·q[post] − a_minus·y[post]·s[pre]                   STDP coincidence
        x ← min(x + imp·s, 127);  y ← min(y + imp·q, 127)
        e_k ← e_k + round((e_{k−1} − e_k)·r/2**r_shift) for every stage (old values, e_0 ≡ 0),
        saturating to e_bits bits; then e_1 ← sat(e_1 + (c << c_shift))
        w_acc ← clip(w_acc + ((d·lr_mant·e_n) >> lr_shift), lo, hi)           (lo, hi: |w| bounds, Dale sign)
        a(t) = Σ_{s[pre]} (w_acc >> frac_bits) then << / >> weight_exp      sent at t + 1
    """

    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    s_post: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    dopamine: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    a_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    pre_idx: np.ndarray = LavaPyType(np.ndarray, np.int64)
    post_idx: np.ndarray = LavaPyType(np.ndarray, np.int64)
    w_acc: np.ndarray = LavaPyType(np.ndarray, np.int64)
    elig: np.ndarray = LavaPyType(np.ndarray, np.int64)
    x_pre: np.ndarray = LavaPyType(np.ndarray, np.int64)
    y_post: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        self.p = proc_params["params"]
        self.n_post = proc_params["n_post"]
        self.a_buff = np.zeros(self.n_post, dtype=np.int64)

    def run_spk(self) -> None:
        p = self.p
        self.a_out.send(self.a_buff.astype(np.int32))
        s = self.s_in.recv().astype(bool)
        q = self.s_post.recv().astype(bool)
        d = int(self.dopamine.recv()[0])
        pre, post = self.pre_idx, self.post_idx
        x = decay_trunc(self.x_pre, 4096 - p["dx"])
        y = decay_trunc(self.y_post, 4096 - p["dy"])
        c = p["a_plus"] * x[pre] * q[post] - p["a_minus"] * y[post] * s[pre]
        self.x_pre[:] = np.minimum(x + p["impulse"] * s, 127)
        self.y_post[:] = np.minimum(y + p["impulse"] * q, 127)
        e = self.elig
        old = e.copy()
        r, r_shift = p["r"], p["r_shift"]
        e_max = (1 << (p["e_bits"] - 1)) - 1
        e[0] = old[0] + round_shift(-old[0] * r, r_shift)
        for k in range(1, e.shape[0]):
            e[k] = old[k] + round_shift((old[k - 1] - old[k]) * r, r_shift)
        np.clip(e, -e_max, e_max, out=e)
        e[0] = np.clip(e[0] + (c << p["c_shift"]), -e_max, e_max)
        if d != 0:
            self.w_acc[:] = np.clip(self.w_acc + ((d * p["lr_mant"] * e[-1]) >> p["lr_shift"]), p["lo"], p["hi"])
        w = self.w_acc >> p["frac_bits"]
        on = s[pre]
        a = np.bincount(post[on], weights=w[on], minlength=self.n_post)
        a = np.rint(a).astype(np.int64)  # bincount sums in float64: exact for these magnitudes (< 2**53)
        ex = p["weight_exp"]
        self.a_buff = a << ex if ex > 0 else a >> -ex


# ------------------------------------------------------------------ given dopamine
class DopamineSource(AbstractProcess):
    """Sends a given integer dopamine value each step (data: (T,) int)."""

    def __init__(self, *, data: np.ndarray):
        super().__init__()
        self.data = Var(shape=data.shape, init=data)
        self.d_out = OutPort(shape=(1,))


@implements(proc=DopamineSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDopamineSourceFixed(PyLoihiProcessModel):
    d_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    data: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        self.d_out.send(np.array([self.data[(self.time_step - 1) % len(self.data)]], dtype=np.int32))


# ------------------------------------------------------------------ distal reward on chip
class DistalRewardSource(AbstractProcess):
    """The distal-reward protocol (neuroprobe.backends.fixed.distal_reward.FixedDistalReward) on chip:
    watches neuron ``pre`` of the pre population and ``post`` of the post population and sends
    the integer dopamine each step. params: pre, post, seed, window, delay_min, delay_max (steps),
    r_d (12-bit decay), amp."""

    def __init__(self, *, n_pre: int, n_post: int, params: dict):
        super().__init__(n_pre=n_pre, n_post=n_post, params=params)
        self.s_pre = InPort(shape=(n_pre,))
        self.s_post = InPort(shape=(n_post,))
        self.d_out = OutPort(shape=(1,))
        self.rewards = Var(shape=(1,), init=0)
        self.coincidences = Var(shape=(1,), init=0)


@implements(proc=DistalRewardSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyDistalRewardFixed(PyLoihiProcessModel):
    s_pre: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    s_post: PyInPort = LavaPyType(PyInPort.VEC_DENSE, bool, precision=1)
    d_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    rewards: np.ndarray = LavaPyType(np.ndarray, np.int64)
    coincidences: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def __init__(self, proc_params):
        super().__init__(proc_params)
        p = self.p = proc_params["params"]
        self.horizon = p["delay_max"] + 2
        self.schedule = np.zeros(self.horizon, dtype=np.int64)
        self.last_pre = -10**9
        self.d = 0

    def run_spk(self) -> None:
        p, t = self.p, self.time_step
        pre_fired = bool(self.s_pre.recv()[p["pre"]])
        post_fired = bool(self.s_post.recv()[p["post"]])
        lag = t - self.last_pre
        hit = post_fired and 1 <= lag <= p["window"]
        if pre_fired:
            self.last_pre = t
        elif hit:
            self.last_pre = -10**9  # one reward per pairing
        if hit:
            h = int(hash_uniform32(p["seed"], t, np.zeros(1, dtype=np.int64))[0])
            delay = p["delay_min"] + h % (p["delay_max"] - p["delay_min"] + 1)
            self.schedule[(t + delay) % self.horizon] += 1
            self.coincidences[0] += 1
        delivered = int(self.schedule[t % self.horizon])
        self.schedule[t % self.horizon] = 0
        self.rewards[0] += delivered
        y = self.d * (4096 - p["r_d"])
        self.d = int(np.sign(y)) * (abs(y) >> 12) + p["amp"] * delivered
        self.d_out.send(np.array([self.d], dtype=np.int32))


# ------------------------------------------------------------------ spike recorder (last K steps)
class SpikeWindow(AbstractProcess):
    """Keeps the spikes of the last ``window`` steps (a ring buffer; row (t − 1) % window)."""

    def __init__(self, *, shape: tuple, window: int):
        super().__init__(shape=shape, window=window)
        self.s_in = InPort(shape=shape)
        self.data = Var(shape=(window, shape[0]), init=np.zeros((window, shape[0]), dtype=np.int64))


@implements(proc=SpikeWindow, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "floating_pt")
class PySpikeWindow(PyLoihiProcessModel):
    s_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    data: np.ndarray = LavaPyType(np.ndarray, np.int64)

    def run_spk(self) -> None:
        self.data[(self.time_step - 1) % self.data.shape[0]] = self.s_in.recv() != 0
