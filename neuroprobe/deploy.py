"""``neuroprobe deploy``: run a spiking experiment's network under Lava, next to the torch engine.

    neuroprobe deploy CONFIG.toml | RUN_DIR --backend lava [--precision fixed|float] [--steps N]

What runs:

* a distal-reward config (``task.name = "distal_reward"``, rule ``rstdp``) in fixed point: the
  network, its cascade R-STDP on the rewarded projection (``CascadeRSTDPConn``) and the reward
  protocol (``DistalRewardSource``) all on Lava — on-chip learning; the torch engine's fixed-point
  mode runs the same integers, and the two must agree bit for bit (spikes and weights);
* any other spiking config (or float precision): the network with frozen weights, open loop,
  Poisson populations replaced by their pre-drawn spikes (identical for both engines).

The torch side runs through :class:`~neuroprobe.loop.Loop` with the adapters of
:mod:`neuroprobe.learners.given_inputs` in a run directory ``OUT/torch-fixed`` (or
``OUT/torch-float``): it checkpoints as it goes, and a deploy interrupted there resumes it (the Lava
result is kept in ``OUT/lava_result.npz`` and reused for the same job).

A RUN_DIR (a finished torch run) deploys its config with the weights of its checkpoint (trial 0):
that is how a trained float network is quantised and deployed.

Writes OUT (default ``runs/<name>-lava-<precision>``): ``recordings.npz`` (Lava's spikes of the
last ``--record-steps`` steps as ``spikes/<pop>`` T × N uint8, voltages ``v/<pop>`` in the
model's voltage units for runs of at most 5000 steps, ``weight/<proj>`` snapshots for learning
runs), ``deploy.json`` (quantisation report, agreement with the torch engine, wall-clock times of
both engines), ``metrics.csv`` (Lava) and ``metrics_torch_fixed.csv`` for learning runs, and figures.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import tomli_w
import torch

from .backends.lava import fixed_job, float_job, run_job
from .config import load_experiment
from .errors import ConfigError, NeuroprobeError
from .neurons.inputs import poisson_spikes
from .backends.fixed.rstdp import FixedCascadeRSTDP, fixed_rstdp_params
from .rundir import CHECKPOINT_NAME, CONFIG_NAME, load_checkpoint_file
from .spiking import SpikingNetwork
from .backends.fixed.network import FixedPointNetwork, quantization_error, quantization_report
from .spiking.spec import PopulationSpec, SpikingSpec
from .backends.fixed.distal_reward import FixedDistalReward

__all__ = ["deploy", "quantisation_check", "deployed_network", "inputs_spec", "trained_network_state", "distal_setup", "distal_params",
           "distal_protocol"]

V_RECORD_MAX = 5000  # voltages are recorded every step by Lava Monitors: only for short runs
QUANT_STEPS = 2000  # float vs fixed point (same inputs and noise) over the first steps: the quantisation error
AMP_INT = 2 ** 14  # integer dopamine per reward on chip (see _distal_fixed)


def inputs_spec(spec: SpikingSpec) -> SpikingSpec:
    """The spec with Poisson populations turned into input populations (spikes pre-drawn)."""
    pops = tuple(PopulationSpec(p.name, p.size, "input", sign=p.sign) if p.kind == "poisson" else p
                 for p in spec.populations)
    return SpikingSpec(pops, spec.projections, spec.dt, spec.engine, spec.extra)


def deployed_network(exp, steps: int) -> tuple[SpikingNetwork, dict, torch.Generator]:
    """The deployed float network (float64, Poisson populations as inputs), its pre-drawn (T, N)
    uint8 input spikes and the generator after drawing them: the same draws for every caller (the
    deploy, its float twin)."""
    spec = exp.spiking_spec
    gen = torch.Generator().manual_seed(int(exp.seed))
    net = SpikingNetwork(inputs_spec(spec), gen, dtype=torch.float64)
    inputs = {p.name: poisson_spikes(torch.full((steps, p.size), p.rate, dtype=torch.float64), spec.dt,
                                     gen).to(torch.uint8)
              for p in spec.populations if p.kind == "poisson"}
    return net, inputs, gen


def trained_network_state(state: dict, where: str = "checkpoint", exp=None) -> dict:
    """The spiking network's state_dict inside a run's checkpoint state (under its agent).

    A checkpoint of the event engine holds its simulator's arrays instead (``agent.sim``, with the
    plastic projection's (B, S) signed weights ``W`` in the torch projection's synapse order); with
    ``exp`` (the run's experiment) they become ``projections.<j>.weight`` (magnitudes, like the
    torch network's) of the rule's projection j."""
    agent = state.get("agent") if isinstance(state, dict) else None
    if isinstance(agent, dict):
        for cand in (agent.get("net"), agent, *[v for v in agent.values() if isinstance(v, dict)]):
            if isinstance(cand, dict) and any(isinstance(k, str) and k.startswith("projections.") and
                                              k.endswith(".weight") for k in cand):
                return cand
        sim = agent.get("sim")
        if exp is not None and isinstance(sim, dict) and "W" in sim:
            if not isinstance(exp.rule.projection, str):
                raise ConfigError(f"{where}: an event-engine checkpoint with several plastic projections "
                                  f"({list(exp.rule.projection)}) cannot be deployed yet; allowed: one plastic projection")
            names = [f"{p.pre}->{p.post}" for p in exp.spiking_spec.projections]
            j = names.index(exp.rule.projection)
            return {f"projections.{j}.weight": torch.as_tensor(np.abs(np.asarray(sim["W"], dtype=np.float64)))}
    raise NeuroprobeError(f"{where}: no spiking network weights under its agent state (not a spiking run's "
                          f"checkpoint?)")


def _load(source: Path, overrides: list[str]):
    if source.suffix == ".pt" and source.is_file():  # a checkpoint: its run directory
        source = source.parent
    if source.is_dir():
        cfg_path = source / CONFIG_NAME
        if not cfg_path.exists():
            raise ConfigError(f"deploy: {source} is a directory without config.toml (give a run directory or a config)")
        exp = load_experiment(cfg_path, overrides)
        ckpt = source / CHECKPOINT_NAME
        if not ckpt.exists():
            raise ConfigError(f"deploy: run directory {str(source)!r} has no {CHECKPOINT_NAME} (nothing trained to "
                              f"deploy yet); deploy its config instead, or finish the run with --resume")
        return exp, trained_network_state(load_checkpoint_file(ckpt), f"checkpoint {str(ckpt)!r}", exp), source.name
    if not source.exists():
        raise ConfigError(f"deploy: {source} does not exist (give an experiment TOML or a run directory)")
    exp = load_experiment(source, overrides)
    return exp, None, exp.name


def deploy(source: str | Path, backend: str = "lava", precision: str = "fixed", steps: int | None = None,
           out: str | Path | None = None, overrides: list[str] | None = None, timeout: float = 3600.0,
           record_steps: int = 2000, report_every: float | None = None, progress: bool = True) -> Path:
    """Deploy and compare (see the module docstring). Returns the output directory."""
    if backend != "lava":
        raise ConfigError(f"deploy --backend {backend!r}: allowed ['lava']")
    if precision not in ("fixed", "float"):
        raise ConfigError(f"deploy --precision {precision!r}: allowed ['fixed', 'float']")
    exp, net_state, name = _load(Path(source), list(overrides or []))
    if exp.spiking_spec is None:
        raise ConfigError("deploy: the config has no [network] (only spiking experiments deploy)")
    dt = exp.spiking_spec.dt
    task = exp.task
    duration = float(getattr(task, "duration", 1.0))
    T = int(steps) if steps is not None else int(round(duration / dt))
    if T < 1:
        raise ConfigError(f"deploy --steps {T}: must be >= 1")
    out = Path(out) if out else Path("runs") / f"{name}-lava-{precision}"
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(tomli_w.dumps(exp.to_toml_dict()))  # as a run directory's
    net, inputs, gen = deployed_network(exp, T)
    if net_state is not None:
        _load_trial0_weights(net, net_state)
    report_every = float(report_every or getattr(task, "report_every", 1.0))
    every = max(1, int(round(report_every / dt)))
    ck = _checkpoint_every(exp, T)
    learn = precision == "fixed" and task.name == "distal_reward" and exp.rule.name == "rstdp"
    report = {"source": str(source), "precision": precision, "steps": T, "dt": dt, "learning_on_chip": learn}
    side = {"exp": exp, "every": every, "checkpoint_every": ck, "progress": progress}
    if precision == "fixed":
        fx = FixedPointNetwork.from_float(net, noise_seed=int(exp.seed))
        report.update(_quantisation(net, fx, inputs, min(T, QUANT_STEPS)))
        if learn:
            res = _distal_fixed(exp, fx, net, T, gen, inputs, timeout, record_steps, every, out, progress, side)
        else:
            res = _open_loop(fx, None, T, inputs, timeout, record_steps, progress, out, side)
    else:
        res = _open_loop(None, net, T, inputs, timeout, record_steps, progress, out, side)
    report.update(res.pop("report"))
    np.savez_compressed(out / "recordings.npz", **res.pop("recordings"))
    (out / "deploy.json").write_text(json.dumps(report, indent=1))
    _print_summary(report, out)
    return out


def _quantisation(net: SpikingNetwork, fx: FixedPointNetwork, inputs: dict, steps: int) -> dict:
    return {"quantization": quantization_report(net, fx), "quantization_error": {
        "steps": steps, "populations": quantization_error(net, fx, steps, {k: v[:steps] for k, v in inputs.items()})}}


def quantisation_check(source: str | Path, steps: int = QUANT_STEPS) -> dict:
    """What deploying to fixed point does to a network, without Lava: the float network of a config
    or of a finished run (its trial-0 weights, from a torch or event-engine checkpoint) and its
    fixed-point twin run ``steps`` steps on the same inputs and noise.

    Returns ``{"quantization": per-parameter quantisation report, "quantization_error": {"steps",
    "populations": {pop: spike counts, fraction of float spikes matched within ±1 step, RMS |Δv| /
    v_th, first differing step}}}`` (see :func:`~neuroprobe.backends.fixed.network.quantization_error`)."""
    exp, net_state, _ = _load(Path(source), [])
    if exp.spiking_spec is None:
        raise ConfigError(f"{source}: not a spiking experiment (no [network])")
    net, inputs, _ = deployed_network(exp, steps)
    if net_state is not None:
        _load_trial0_weights(net, net_state)
    return _quantisation(net, FixedPointNetwork.from_float(net, noise_seed=int(exp.seed)), inputs, steps)


def _checkpoint_every(exp, T: int) -> int:
    """Checkpoint interval (steps) of the torch side: run.checkpoint_every (s) of a timed task, else T/10."""
    ck = exp.run.checkpoint_every
    if ck is not None and exp.task.unit == "seconds":
        return max(1, int(round(ck / exp.spiking_spec.dt)))
    return max(1, T // 10)


def _load_trial0_weights(net: SpikingNetwork, state: dict) -> None:
    for j, pr in enumerate(net.projections):
        key = f"projections.{j}.weight"
        if key in state:
            w = state[key]
            pr.weight.data.copy_((w[0] if w.dim() == 2 else w).to(pr.weight.dtype))


def _job_digest(job: dict, arrays: dict) -> str:
    h = hashlib.sha256(json.dumps(job, sort_keys=True).encode())
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def _side_config(side: dict, kind: str, T: int) -> dict:
    return {**side["exp"].to_toml_dict(), "deploy": {"side": kind, "steps": T}}


def _open_loop(fx: FixedPointNetwork | None, net: SpikingNetwork | None, T: int, inputs: dict, timeout: float,
               K: int, progress: bool, out: Path, side: dict) -> dict:
    """Frozen network, open loop, on both engines; spikes compared step by step."""
    from .learners.given_inputs import open_loop_parts, run_side

    model = fx if fx is not None else net
    lif = [p.name for p in model.spec.populations if p.kind == "lif"]
    K = min(K, T)
    record_v = T <= V_RECORD_MAX
    rec = {"spikes": lif, "v": lif} if record_v else {}
    np_inputs = {k: v.numpy() for k, v in inputs.items()}
    if fx is not None:
        job, arrays = fixed_job(fx, T, np_inputs, record=rec)
    else:
        job, arrays = float_job(net, T, np_inputs, record=rec)
    if not record_v:
        job["record_window"] = {"steps": K, "spikes": lif}
    digest = _job_digest(job, arrays)
    t0 = time.perf_counter()
    lava = _run_lava(job, arrays, digest, out, timeout, progress, "Lava")
    lava_wall = float(lava.get("wall_s", time.perf_counter() - t0))
    # the torch engine, same precision, through the run loop (resumable in OUT/torch-<precision>)
    scale = fx.scale if fx is not None else 1.0
    ref_spikes = {n: lava[f"spikes/{n}"] if record_v else lava[f"window/{n}"] for n in lif}
    ref_v = {n: lava[f"v/{n}"].astype(np.float64) / scale for n in lif} if record_v else {}
    kind = "torch-fixed" if fx is not None else "torch-float"
    parts = open_loop_parts(model, inputs, T, side["every"], int(side["exp"].seed),
                            reference={"spikes": ref_spikes, "voltages": ref_v}, description=f"torch ({kind[6:]})")
    t0 = time.perf_counter()
    run_side(parts, out / kind, _side_config(side, kind, T), digest, int(side["exp"].seed), side["checkpoint_every"],
             progress)
    torch_wall = time.perf_counter() - t0
    ag = parts.callbacks[0].report()
    recs, cmp = {}, {}
    for n in lif:
        theirs, s = ref_spikes[n], ag["spikes"][n]
        cmp[n] = {"spike_mismatches": s["mismatches"], "spikes_compared": s["compared"],
                  "rate_hz_lava": float(theirs.mean() / model.spec.dt),
                  "rate_hz_torch": float(np.float64(s["torch_spikes"]) / s["compared"] / model.spec.dt)}
        recs[f"spikes/{n}"] = theirs[-K:].astype(np.uint8)
        recs[f"time/spikes/{n}"] = np.arange(T - min(K, T) + 1, T + 1) * model.spec.dt
        if record_v:
            cmp[n]["max_abs_dv"] = ag["max_abs_dv"][n]
            recs[f"v/{n}"] = ref_v[n][-K:].astype(np.float32)
            recs[f"time/v/{n}"] = recs[f"time/spikes/{n}"]
    recs["meta/dt"] = np.array(model.spec.dt)
    return {"recordings": recs, "report": {"agreement": cmp, "wall_s": {"lava": lava_wall, "torch": torch_wall,
                                                                       "lava_build": float(lava["timing"][0]),
                                                                       "lava_run": float(lava["timing"][1]),
                                                                       **_lava_overheads(lava)}}}


def _run_lava(job: dict, arrays: dict, digest: str, out: Path, timeout: float, progress: bool, desc: str) -> dict:
    """Run the job under Lava, or reuse ``out/lava_result.npz`` when it holds the result of the very
    same job (a deploy interrupted during the torch comparison loses nothing of the Lava run)."""
    cached = out / "lava_result.npz"
    if cached.exists():
        with np.load(cached) as f:
            if str(f["job_hash"]) == digest:
                print(f"reusing the Lava result of the same job in {cached}")
                return {k: f[k] for k in f.files}
    res = run_job(job, arrays, timeout=timeout, progress=progress, desc=desc)
    tmp = out / "lava_result.part.npz"
    np.savez(tmp, job_hash=np.array(digest), **res)
    tmp.replace(cached)
    return res


def _lava_overheads(lava: dict) -> dict:
    t = lava["timing"]
    return {"lava_stop": float(t[2]), "lava_import": float(t[3])} if len(t) >= 4 else {}


def distal_params(exp, dt: float, pre: int, post: int) -> dict:
    """The on-chip reward protocol's integer parameters (``FixedDistalReward``/``DistalRewardSource``).

    The float task's dopamine d (amp per reward, decaying with tau_d) ↔ integer AMP_INT per reward.
    A large amp keeps the truncating decay exponential: with amp = 64 and r_d = 20 (tau_d = 0.2 s),
    trunc(d·4076/4096) = d − 1 for every d ≤ 204, a linear fall to 0 in 64 ms that delivered ~6×
    less dopamine than the float task (measured: the 100 s Lava run learned 10× less, docs/results.md)."""
    t = exp.task
    return {"pre": int(pre), "post": int(post), "seed": int(exp.seed),
            "window": max(1, round(float(t.window) / dt)), "delay_min": max(1, round(float(t.delay_min) / dt)),
            "delay_max": max(1, round(float(t.delay_max) / dt)),
            "r_d": max(1, round(4096 * (1 - np.exp(-dt / float(t.dopamine_tau))))), "amp": AMP_INT}


def distal_protocol(dp: dict) -> FixedDistalReward:
    return FixedDistalReward(torch.tensor([dp["pre"]]), torch.tensor([dp["post"]]), torch.tensor([dp["seed"]]),
                             dp["window"], dp["delay_min"], dp["delay_max"], dp["r_d"], dp["amp"])


def distal_setup(exp, fx: FixedPointNetwork, net: SpikingNetwork, gen: torch.Generator) -> dict:
    """What both engines of a fixed-point distal deploy share: the plastic projection ``proj``, the
    integer rule parameters ``prm``, the ``rewarded`` synapse (drawn from ``gen``, after the inputs)
    and the reward protocol's integer parameters ``dparams``."""
    r, t = exp.rule, exp.task
    dt = fx.spec.dt
    proj = fx.projection(r.projection)
    fproj = net.projection(r.projection)
    prm = fixed_rstdp_params(proj, dt, int(r.order), float(r.delay), float(r.tau_plus), float(r.tau_minus),
                             float(r.a_plus), float(r.a_minus), float(r.lr), fproj.spec.w_min,
                             fproj.spec.w_max, fproj.sign, float(t.dopamine_amp) / AMP_INT)
    rewarded = int(torch.randint(0, proj.pre.numel(), (1,), generator=gen))
    return {"proj": proj, "prm": prm, "rewarded": rewarded,
            "dparams": distal_params(exp, dt, proj.pre[rewarded], proj.post[rewarded])}


def _distal_fixed(exp, fx: FixedPointNetwork, net: SpikingNetwork, T: int, gen: torch.Generator, inputs: dict,
                  timeout: float, K: int, every: int, out: Path, progress: bool, side: dict) -> dict:
    """Distal reward with on-chip learning: Lava and the torch fixed-point engine, same integers."""
    from .learners.given_inputs import fixed_distal_parts, run_side

    dt = fx.spec.dt
    su = distal_setup(exp, fx, net, gen)
    proj, prm, rewarded, dparams = su["proj"], su["prm"], su["rewarded"], su["dparams"]
    seed = int(exp.seed)
    rule = FixedCascadeRSTDP(proj, 1, prm)
    w0 = rule.w_acc[0].numpy().copy()
    lif = [p.name for p in fx.spec.populations if p.kind == "lif"]
    job, arrays = fixed_job(fx, T, {k: v.numpy() for k, v in inputs.items()},
                            plastic={proj.name: {"params": prm.as_dict(), "w_acc": w0}},
                            distal={"pre_pop": proj.pre_pop, "post_pop": proj.post_pop, "params": dparams},
                            report_every=every)
    job["record_window"] = {"steps": min(K, T), "spikes": lif}
    digest = _job_digest(job, arrays)
    t0 = time.perf_counter()
    lava = _run_lava(job, arrays, digest, out, timeout, progress, "Lava fixed_pt")
    lava_wall = float(lava.get("wall_s", time.perf_counter() - t0))
    # the torch fixed-point engine, same integers, through the run loop (resumable in OUT/torch-fixed)
    w_lava = lava[f"w_hist/{proj.name}"]
    protocol = distal_protocol(dparams)
    parts = fixed_distal_parts(fx, rule, protocol, inputs, T, every, seed, rewarded,
                               reference={"spikes": {n: lava[f"window/{n}"] for n in lif}, "w_hist": w_lava})
    t0 = time.perf_counter()
    run_side(parts, out / "torch-fixed", _side_config(side, "torch-fixed", T), f"{digest}:{rewarded}", seed,
             side["checkpoint_every"], progress)
    torch_wall = time.perf_counter() - t0
    ag = parts.callbacks[0].report()
    cmp = {"weights_identical_all_reports": ag["weights_identical_all_reports"],
           "final_weight_mismatches": int((lava[f"w_acc/{proj.name}"] != rule.w_acc[0].numpy()).sum()),
           "rewards_lava": int(lava["rewards_hist"][-1][0]), "rewards_torch": int(protocol.rewards[0]),
           "spike_mismatches_last_window": {n: ag["spikes"][n]["mismatches"] for n in lif}}
    times = np.arange(1, len(w_lava) + 1) * every * dt
    times[-1] = T * dt
    _write_distal_metrics(out / "metrics.csv", times, w_lava, np.array(lava["rewards_hist"]), rewarded,
                          prm.frac_bits, proj.scale_w, seed)
    (out / "metrics_torch_fixed.csv").write_bytes((out / "torch-fixed" / "metrics.csv").read_bytes())
    recs = {}
    Kw = min(K, T)
    for n in lif:
        recs[f"spikes/{n}"] = lava[f"window/{n}"]
        recs[f"time/spikes/{n}"] = np.arange(T - Kw + 1, T + 1) * dt
    others = np.delete(np.arange(w_lava.shape[1]), rewarded)
    cols = np.concatenate([[rewarded], np.random.default_rng(0).choice(others, min(200, len(others)), replace=False)])
    key = f"weight/{proj.name}"
    recs[key] = np.abs(w_lava[:, cols].astype(np.float32)) / 2 ** prm.frac_bits * proj.scale_w
    recs[f"time/{key}"], recs[f"indices/{key}"] = times[: len(w_lava)], cols
    recs[f"meta/highlight/{proj.name}"] = np.array([0])
    recs["meta/dt"] = np.array(dt)
    return {"recordings": recs, "report": {
        "agreement": cmp, "rule_params": prm.as_dict(), "distal_params": dparams, "rewarded_synapse": rewarded,
        "wall_s": {"lava": lava_wall, "torch_fixed": torch_wall, "lava_build": float(lava["timing"][0]),
                   "lava_run": float(lava["timing"][1]), **_lava_overheads(lava)}}}


def _write_distal_metrics(path: Path, times, W, R, k: int, frac: int, scale_w: float, seed: int) -> None:
    """Lava's ``metrics.csv`` in the distal-reward run's format (the torch side's reporter writes the
    same rows): one row per report, the rewarded synapse's |weight| against the others (float units),
    each row :func:`~neuroprobe.reporters_spiking.distal_row`'s."""
    from .reporters_spiking import DISTAL_COLUMNS, distal_row

    rows = [",".join(DISTAL_COLUMNS)]
    for i in range(min(len(W), len(times))):
        w = np.abs(W[i].astype(np.float64)) / 2 ** frac * scale_w
        row = distal_row(float(times[i]), seed, w, k, R[i][0], R[i][1])
        rows.append(",".join(row[c] for c in DISTAL_COLUMNS))
    path.write_text("\n".join(rows) + "\n")


def _print_summary(report: dict, out: Path) -> None:
    a, w = report.get("agreement", {}), report.get("wall_s", {})
    print(f"deployed to Lava ({report['precision']} point, {report['steps']} steps)  →  {out}")
    print(f"  wall clock: Lava {w.get('lava', float('nan')):.1f} s (import {w.get('lava_import', 0):.1f}, build "
          f"{w.get('lava_build', 0):.1f}, run {w.get('lava_run', 0):.1f}, stop {w.get('lava_stop', 0):.1f}), torch {w.get('torch', w.get('torch_fixed', float('nan'))):.1f} s")
    for k, v in a.items():
        print(f"  {k}: {v}")
    for pop, q in report.get("quantization_error", {}).get("populations", {}).items():
        print(f"  quantisation ({pop}): {q['spikes_fixed']} vs {q['spikes_float']} float spikes, "
              f"{100 * q['matched_within_1_step']:.1f} % matched within 1 step, rms Δv {q['rms_dv_over_vth']:.3f} v_th")
