"""The event engine in Loihi's integers (neuroprobe/backends/event/fixed_sim.py) against the torch
fixed-point engine (FixedPointNetwork + FixedCascadeRSTDP + FixedDistalReward, which
tests/test_lava_backend.py ties to Lava fixed_pt): every state variable of B = 2 trials equal
every step, one compiled chunk equal to the step-by-step run on every thread count, exact resume.

Cases: the distal network (experiments/distal_reward_loihi.toml: membrane noise, no input
population, order 6) and the network with a Poisson → input population and no noise
(experiments/distal_reward_lava_float.toml, order 1). Short reward delays and a wide coincidence
window so that rewards, dopamine and weight changes happen within the run (checked: the
comparison must not pass on a run where the weights never change)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neuroprobe.backends.event import fixed_kernels as fk
from neuroprobe.backends.event.fixed_sim import FixedEventSimulator
from neuroprobe.backends.fixed.distal_run import fixed_distal_setup
from neuroprobe.backends.fixed.lif import hash_noise, hash_uniform32
from neuroprobe.backends.fixed.rstdp import FixedCascadeRSTDP
from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
B = 2
# name: (experiment, rule order, seed, steps); the seeds give both trials a reward early in the run
CASES = {"noise-order6": ("distal_reward_loihi.toml", 6, 0, 600),
         "input-order1": ("distal_reward_lava_float.toml", 1, 3, 800)}


def _setup(case: str):
    cfg, order, seed, steps = CASES[case]
    exp = load_experiment(ROOT / "experiments" / cfg, seed=seed, overrides=[
        f"seeds={B}", f"rule.order={order}", "rule.delay=0.2", "task.window=0.5", "task.delay_min=0.005",
        "task.delay_max=0.02", f"task.duration={steps * 1e-3}"])
    return fixed_distal_setup(exp, torch.Generator().manual_seed(int(exp.seed))), steps


def _torch_state(fx, state, rule, prot) -> dict:
    """The torch engines' state in the event simulator's names and layouts (int64)."""
    out = {}
    for p in fx.spec.populations:
        out[f"z/{p.name}"] = state["z"][p.name].numpy().astype(np.int64)
        if p.name in fx.lif:
            out[f"u/{p.name}"], out[f"v/{p.name}"] = state["u"][p.name].numpy(), state["v"][p.name].numpy()
    out.update(x=rule.x.numpy(), y=rule.y.numpy(), e=rule.e.numpy().transpose(1, 0, 2), w=rule.w_acc.numpy(),
               dop=prot.dopamine.numpy(), rew=prot.rewards.numpy(), coin=prot.coincidences.numpy(),
               last_pre=prot.last_pre.numpy(), pending=prot.schedule.numpy())
    return out


def _event_state(sim: FixedEventSimulator) -> dict:
    out = {}
    for p in sim.pop_names:
        out[f"z/{p}"] = sim.pop_state("z", p)
        if p in sim.lif_pops:
            out[f"u/{p}"], out[f"v/{p}"] = sim.pop_state("u", p), sim.pop_state("v", p)
    out.update({k: getattr(sim, k) for k in ("x", "y", "e", "w", "dop", "rew", "coin", "last_pre", "pending")})
    return out


def _first_difference(a: dict, b: dict) -> str | None:
    """The first variable whose values differ (array_equal compares values across dtypes)."""
    for k in a:
        if a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]):
            return k
    return None


@pytest.fixture(scope="module", params=sorted(CASES))
def lockstep(request) -> dict:
    """The torch fixed-point run and the event simulator stepped together, one step per call,
    compared every step; the torch run's trial-0 spikes and voltages, counts and final state."""
    su, steps = _setup(request.param)
    sim = FixedEventSimulator(su, parallel=False)  # before the torch rule, which rewrites proj.w_mant
    w0 = sim.w.copy()
    fx, proj = su.fx, su.proj
    rule, prot, state = FixedCascadeRSTDP(proj, B, su.prm), su.protocol(), fx.init_state(B)
    pops, lif = [p.name for p in fx.spec.populations], list(fx.lif)
    spikes, volts = {p: [] for p in pops}, {p: [] for p in lif}
    ev_spikes, ev_volts = {p: [] for p in pops}, {p: [] for p in lif}
    counts = {p: np.zeros(B, dtype=np.int64) for p in lif}
    mismatch, d_steps = None, 0
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: threads only contend
    try:
        for t in range(steps):
            inp = {k: v[t].bool() for k, v in su.inputs.items()}
            z, state = fx.step(state, inp)
            d = prot.step(z[proj.pre_pop], z[proj.post_pop])
            rule.step(z[proj.pre_pop], z[proj.post_pop], d)
            d_steps += int((d != 0).sum())
            out = sim.run(1, record_from=0, rec_spikes=pops, rec_v=lif)
            for p in pops:
                spikes[p].append(z[p][0].numpy().astype(np.uint8))
                ev_spikes[p].append(out["spikes"][p][0])
            for p in lif:
                volts[p].append(fx.voltage(state, p)[0].numpy())
                ev_volts[p].append(out["v"][p][0])
                counts[p] += z[p].sum(1).numpy().astype(np.int64)
            assert out["t0"] == t and all(out["spikes"][p].shape[0] == 1 for p in pops)
            diff = _first_difference(_torch_state(fx, state, rule, prot), _event_state(sim))
            if diff is not None:
                mismatch = (t + 1, diff)
                break
    finally:
        torch.set_num_threads(torch_threads)
    return {"case": request.param, "steps": steps, "mismatch": mismatch, "w0": w0, "d_steps": d_steps,
            "final": _torch_state(fx, state, rule, prot), "weights": su.float_weights(rule.w_acc).numpy(),
            "spikes": {p: np.stack(v) for p, v in spikes.items()}, "v": {p: np.stack(v) for p, v in volts.items()},
            "ev_spikes": {p: np.stack(v) for p, v in ev_spikes.items()},
            "ev_v": {p: np.stack(v) for p, v in ev_volts.items()}, "counts": counts}


def test_every_state_variable_equals_torch_every_step(lockstep):
    assert lockstep["mismatch"] is None, f"first difference (step, variable): {lockstep['mismatch']}"
    f = lockstep["final"]
    # the run exercised what it claims to test: rewards and dopamine in both trials, weights moved
    assert (f["rew"] > 0).all() and lockstep["d_steps"] > 0
    assert all((f["w"][b] != lockstep["w0"][b]).any() for b in range(B))
    assert (f["e"] != 0).any() and (f["e"] < 0).any() and (f["e"] > 0).any()
    for p in lockstep["spikes"]:  # the per-step recordings of trial 0
        np.testing.assert_array_equal(lockstep["ev_spikes"][p], lockstep["spikes"][p])
    for p in lockstep["v"]:
        np.testing.assert_array_equal(lockstep["ev_v"][p], lockstep["v"][p])


def test_one_chunk_on_all_threads_equals_the_step_by_step_run(lockstep):
    """The trials in parallel threads (where numba has more than one), the whole run one chunk."""
    su, steps = _setup(lockstep["case"])
    sim = FixedEventSimulator(su, parallel=True)
    assert sim.compile() >= 0.0 and sim.compile_seconds is not None
    start = steps // 2
    out = sim.run(steps, record_from=start, rec_spikes=list(lockstep["spikes"]), rec_v=list(lockstep["v"]))
    assert sim.t == steps and out["t0"] == start
    assert _first_difference(lockstep["final"], _event_state(sim)) is None
    for p, s in lockstep["spikes"].items():
        np.testing.assert_array_equal(out["spikes"][p], s[start:])
    for p, v in lockstep["v"].items():
        np.testing.assert_array_equal(out["v"][p], v[start:])
    for p, c in lockstep["counts"].items():
        np.testing.assert_array_equal(out["counts"][p], c)
    np.testing.assert_array_equal(sim.weights(), lockstep["weights"])
    np.testing.assert_array_equal(sim.dopamine, lockstep["final"]["dop"])
    np.testing.assert_array_equal(sim.rewards, lockstep["final"]["rew"])
    np.testing.assert_array_equal(sim.coincidences, lockstep["final"]["coin"])


def test_resume_from_a_state_dict_is_exact(lockstep):
    su, steps = _setup(lockstep["case"])
    first = FixedEventSimulator(su)
    first.run(steps // 3)
    saved = first.state_dict()
    first.run(5)  # the saved state is a copy
    su2, _ = _setup(lockstep["case"])
    second = FixedEventSimulator(su2)
    second.load_state_dict(saved)
    assert second.t == steps // 3
    second.run(steps - steps // 3)
    assert _first_difference(lockstep["final"], _event_state(second)) is None


def test_hash_equals_the_torch_hash():
    idx = torch.tensor([0, 1, 799, 1000, 2 ** 31 - 1, 2 ** 32 - 1], dtype=torch.int64)
    for seed in (0, 1, 12345, -1, -(2 ** 40), 2 ** 40 + 7):
        for step in (1, 2, 1000, 2 ** 33 + 5):
            h = hash_uniform32(torch.tensor(seed), step, idx).tolist()
            assert [fk.hash_uniform32(seed, step, int(i)) for i in idx] == h
            n = hash_noise(torch.tensor(seed), step, idx, 568, 8).tolist()
            assert [fk.hash_noise(seed, step, int(i), 568, 8) for i in idx] == n


def test_bad_requests_are_one_line_errors():
    su, _ = _setup("input-order1")
    sim = FixedEventSimulator(su)
    with pytest.raises(ConfigError, match="only LIF populations"):
        sim.run(1, rec_v=["in"])
    with pytest.raises(ConfigError, match="not in the network"):
        sim.run(1, rec_spikes=["nope"])
    with pytest.raises(ConfigError, match="shape"):
        sim.load_state_dict({**sim.state_dict(), "w": np.zeros((B + 1, 3))})
