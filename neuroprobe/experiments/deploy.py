"""``neuroprobe deploy``: run a spiking experiment's network under Lava, next to the torch engine.

    neuroprobe deploy CONFIG.toml | RUN_DIR --backend lava [--precision fixed|float] [--steps N]

What runs:

* a distal-reward config (``task.name = "distal_reward"``, rule ``rstdp``) in fixed point: the
  network, its cascade R-STDP on the rewarded projection (``CascadeRSTDPConn``) and the reward
  protocol (``DistalRewardSource``) all on Lava — on-chip learning; the torch engine's fixed-point
  mode runs the same integers, and the two must agree bit for bit (spikes and weights);
* any other spiking config (or float precision): the network with frozen weights, open loop,
  Poisson populations replaced by their pre-drawn spikes (identical for both engines).

A RUN_DIR (a finished torch run) deploys its config with the weights of its checkpoint (trial 0):
that is how a trained float network is quantised and deployed.

Writes OUT (default ``runs/<name>-lava-<precision>``): ``recordings.npz`` (Lava's spikes of the
last ``--record-steps`` steps as ``spikes/<pop>`` T × N uint8, voltages ``v/<pop>`` in the
model's voltage units for runs of at most 5000 steps, ``weight/<proj>`` snapshots for learning
runs), ``deploy.json`` (quantisation report, agreement with the torch engine, wall-clock times of
both engines), ``metrics.csv`` for learning runs (both engines), and figures.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import tomli_w
import torch

from ..backends.lava import fixed_job, float_job, run_job
from ..errors import ConfigError
from ..neurons.inputs import poisson_spikes
from ..rules.rstdp_fixed import FixedCascadeRSTDP, fixed_rstdp_params
from ..spiking import SpikingNetwork, load_spiking_spec
from ..spiking.fixed import FixedPointNetwork, quantization_error, quantization_report
from ..spiking.spec import PopulationSpec, SpikingSpec
from ..tasks.distal_reward import FixedDistalReward
from .config import load_config

__all__ = ["deploy"]

V_RECORD_MAX = 5000  # voltages are recorded every step by Lava Monitors: only for short runs
QUANT_STEPS = 2000  # float vs fixed point (same inputs and noise) over the first steps: the quantisation error


def _inputs_spec(spec: SpikingSpec) -> SpikingSpec:
    """The spec with Poisson populations turned into input populations (spikes pre-drawn)."""
    pops = tuple(PopulationSpec(p.name, p.size, "input", sign=p.sign) if p.kind == "poisson" else p
                 for p in spec.populations)
    return SpikingSpec(pops, spec.projections, spec.dt, spec.engine, spec.extra)


def _load(source: Path, overrides: list[str]) -> tuple[dict, dict | None, str]:
    if source.suffix == ".pt" and source.is_file():  # a checkpoint: its run directory
        source = source.parent
    if source.is_dir():
        cfg_path = source / "config.toml"
        if not cfg_path.exists():
            raise ConfigError(f"deploy: {source} is a directory without config.toml (give a run directory or a config)")
        ckpt = source / "checkpoint.pt"
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["net"] if ckpt.exists() else None
        return load_config(cfg_path, overrides), state, source.name
    if not source.exists():
        raise ConfigError(f"deploy: {source} does not exist (give an experiment TOML or a run directory)")
    cfg = load_config(source, overrides)
    return cfg, None, cfg["name"]


def deploy(source: str | Path, backend: str = "lava", precision: str = "fixed", steps: int | None = None,
           out: str | Path | None = None, overrides: list[str] | None = None, timeout: float = 3600.0,
           record_steps: int = 2000, report_every: float | None = None, progress: bool = True) -> Path:
    """Deploy and compare (see the module docstring). Returns the output directory."""
    if backend != "lava":
        raise ConfigError(f"deploy --backend {backend!r}: allowed ['lava']")
    if precision not in ("fixed", "float"):
        raise ConfigError(f"deploy --precision {precision!r}: allowed ['fixed', 'float']")
    cfg, net_state, name = _load(Path(source), list(overrides or []))
    if "network" not in cfg or "file" not in cfg.get("network", {}):
        raise ConfigError("deploy: the config has no [network] (only spiking experiments deploy)")
    spec = load_spiking_spec(cfg["network"]["file"])
    dt = spec.dt
    task = cfg.get("task", {})
    duration = float(task.get("duration", 1.0))
    T = int(steps) if steps is not None else int(round(duration / dt))
    if T < 1:
        raise ConfigError(f"deploy --steps {T}: must be >= 1")
    out = Path(out) if out else Path("runs") / f"{name}-lava-{precision}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(tomli_w.dumps(_plain({k: v for k, v in cfg.items() if k != "kind"})))  # as RunDir
    gen = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
    dspec = _inputs_spec(spec)
    net = SpikingNetwork(dspec, gen, dtype=torch.float64)
    if net_state is not None:
        _load_trial0_weights(net, net_state)
    inputs = {p.name: poisson_spikes(torch.full((T, p.size), p.rate, dtype=torch.float64), dt, gen).to(torch.uint8)
              for p in spec.populations if p.kind == "poisson"}
    report_every = float(report_every or task.get("report_every", 1.0))
    learn = precision == "fixed" and task.get("name") == "distal_reward" and cfg.get("rule", {}).get("name") == "rstdp"
    report = {"source": str(source), "precision": precision, "steps": T, "dt": dt, "learning_on_chip": learn}
    if precision == "fixed":
        fx = FixedPointNetwork.from_float(net, noise_seed=int(cfg.get("seed", 0)))
        report["quantization"] = quantization_report(net, fx)
        n_q = min(T, QUANT_STEPS)
        report["quantization_error"] = {"steps": n_q, "populations": quantization_error(
            net, fx, n_q, {k: v[:n_q] for k, v in inputs.items()})}
        if learn:
            res = _distal_fixed(cfg, fx, net, T, gen, inputs, timeout, record_steps, report_every, out, progress)
        else:
            res = _open_loop(fx, None, T, inputs, timeout, record_steps, progress, out)
    else:
        res = _open_loop(None, net, T, inputs, timeout, record_steps, progress, out)
    report.update(res.pop("report"))
    np.savez_compressed(out / "recordings.npz", **res.pop("recordings"))
    (out / "deploy.json").write_text(json.dumps(report, indent=1))
    _print_summary(report, out)
    return out


def _plain(x):
    """The config as TOML-writable values (paths → str, None dropped)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return str(x) if isinstance(x, Path) else x


def _load_trial0_weights(net: SpikingNetwork, state: dict) -> None:
    for j, pr in enumerate(net.projections):
        key = f"projections.{j}.weight"
        if key in state:
            w = state[key]
            pr.weight.data.copy_((w[0] if w.dim() == 2 else w).to(pr.weight.dtype))


def _open_loop(fx: FixedPointNetwork | None, net: SpikingNetwork | None, T: int, inputs: dict, timeout: float,
               K: int, progress: bool, out: Path) -> dict:
    """Frozen network, open loop, on both engines; spikes compared step by step."""
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
    t0 = time.perf_counter()
    lava = _run_lava(job, arrays, out, timeout, progress, "Lava")
    lava_wall = float(lava.get("wall_s", time.perf_counter() - t0))
    # the torch engine, same precision
    t0 = time.perf_counter()
    zs = {n: [] for n in lif}
    vs = {n: [] for n in lif}
    with torch.no_grad():
        s = model.init_state(1)
        for t in range(T):
            x = {k: v[t:t + 1].to(torch.float64 if fx is None else torch.bool) for k, v in inputs.items()}
            z, s = model.step(s, x)
            for n in lif:
                zs[n].append(z[n][0].to(torch.uint8))
                if record_v:
                    vs[n].append(model.voltage(s, n)[0] if fx is not None else s["lif"][n].v[0])
    torch_wall = time.perf_counter() - t0
    recs, cmp = {}, {}
    for n in lif:
        ours = torch.stack(zs[n]).numpy()
        theirs = lava[f"spikes/{n}"] if record_v else lava[f"window/{n}"]
        ours_cmp = ours if record_v else ours[-K:]
        cmp[n] = {"spike_mismatches": int((ours_cmp != theirs).sum()), "spikes_compared": int(theirs.size),
                  "rate_hz_lava": float(theirs.mean() / model.spec.dt), "rate_hz_torch": float(ours_cmp.mean() / model.spec.dt)}
        recs[f"spikes/{n}"] = theirs[-K:].astype(np.uint8)
        recs[f"time/spikes/{n}"] = np.arange(T - min(K, T) + 1, T + 1) * model.spec.dt
        if record_v:
            v_lava = lava[f"v/{n}"].astype(np.float64) / (fx.scale if fx is not None else 1.0)
            v_torch = torch.stack(vs[n]).numpy()
            cmp[n]["max_abs_dv"] = float(np.abs(v_lava - v_torch).max())
            recs[f"v/{n}"] = v_lava[-K:].astype(np.float32)
            recs[f"time/v/{n}"] = recs[f"time/spikes/{n}"]
    recs["meta/dt"] = np.array(model.spec.dt)
    return {"recordings": recs, "report": {"agreement": cmp, "wall_s": {"lava": lava_wall, "torch": torch_wall,
                                                                       "lava_build": float(lava["timing"][0]),
                                                                       "lava_run": float(lava["timing"][1]),
                                                                       **_lava_overheads(lava)}}}


def _run_lava(job: dict, arrays: dict, out: Path, timeout: float, progress: bool, desc: str) -> dict:
    """Run the job under Lava, or reuse ``out/lava_result.npz`` when it holds the result of the very
    same job (a deploy interrupted during the torch comparison loses nothing of the Lava run)."""
    h = hashlib.sha256(json.dumps(job, sort_keys=True).encode())
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    digest = h.hexdigest()
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


def _distal_fixed(cfg: dict, fx: FixedPointNetwork, net: SpikingNetwork, T: int, gen: torch.Generator, inputs: dict,
                  timeout: float, K: int, report_every: float, out: Path, progress: bool) -> dict:
    """Distal reward with on-chip learning: Lava and the torch fixed-point engine, same integers."""
    r, t = cfg["rule"], cfg["task"]
    dt = fx.spec.dt
    proj = fx.projection(r["projection"])
    fproj = net.projection(r["projection"])
    # the float task's dopamine d (amp per reward, decaying with tau_d) ↔ integer amp_int per reward.
    # A large amp keeps the truncating decay exponential: with amp = 64 and r_d = 20 (tau_d = 0.2 s),
    # trunc(d·4076/4096) = d − 1 for every d ≤ 204, a linear fall to 0 in 64 ms that delivered ~6×
    # less dopamine than the float task (measured: the 100 s Lava run learned 10× less, docs/results.md)
    amp_int = 2 ** 14
    dopamine_unit = float(t["dopamine_amp"]) / amp_int
    prm = fixed_rstdp_params(proj, dt, int(r["order"]), float(r["delay"]), float(r["tau_plus"]), float(r["tau_minus"]),
                             float(r["a_plus"]), float(r["a_minus"]), float(r["lr"]), fproj.spec.w_min,
                             fproj.spec.w_max, fproj.sign, dopamine_unit)
    rewarded = int(torch.randint(0, proj.pre.numel(), (1,), generator=gen))
    dparams = {"pre": int(proj.pre[rewarded]), "post": int(proj.post[rewarded]), "seed": int(cfg.get("seed", 0)),
               "window": max(1, round(float(t["window"]) / dt)), "delay_min": max(1, round(float(t["delay_min"]) / dt)),
               "delay_max": max(1, round(float(t["delay_max"]) / dt)),
               "r_d": max(1, round(4096 * (1 - np.exp(-dt / float(t["dopamine_tau"]))))), "amp": amp_int}
    every = max(1, int(round(report_every / dt)))
    rule = FixedCascadeRSTDP(proj, 1, prm)
    w0 = rule.w_acc[0].numpy().copy()
    lif = [p.name for p in fx.spec.populations if p.kind == "lif"]
    job, arrays = fixed_job(fx, T, {k: v.numpy() for k, v in inputs.items()},
                            plastic={proj.name: {"params": prm.as_dict(), "w_acc": w0}},
                            distal={"pre_pop": proj.pre_pop, "post_pop": proj.post_pop, "params": dparams},
                            report_every=every)
    job["record_window"] = {"steps": min(K, T), "spikes": lif}
    t0 = time.perf_counter()
    lava = _run_lava(job, arrays, out, timeout, progress, "Lava fixed_pt")
    lava_wall = float(lava.get("wall_s", time.perf_counter() - t0))
    # torch fixed-point engine, same integers
    task = FixedDistalReward(torch.tensor([dparams["pre"]]), torch.tensor([dparams["post"]]),
                             torch.tensor([dparams["seed"]]), dparams["window"], dparams["delay_min"],
                             dparams["delay_max"], dparams["r_d"], dparams["amp"])
    t0 = time.perf_counter()
    s = fx.init_state(1)
    hist, rew, last = [], [], {n: [] for n in lif}
    from tqdm.auto import tqdm
    for step in tqdm(range(T), desc="torch fixed-point", unit="step", disable=not progress, mininterval=2.0):
        z, s = fx.step(s, {k: v[step:step + 1].bool() for k, v in inputs.items()})
        d = task.step(z[proj.pre_pop], z[proj.post_pop])
        rule.step(z[proj.pre_pop], z[proj.post_pop], d)
        if (step + 1) % every == 0 or step + 1 == T:
            hist.append(rule.w_acc[0].numpy().astype(np.int32).copy())
            rew.append([int(task.rewards[0]), int(task.coincidences[0])])
        if step >= T - min(K, T):
            for n in lif:
                last[n].append(z[n][0].to(torch.uint8))
    torch_wall = time.perf_counter() - t0
    w_torch = np.stack(hist)
    w_lava = lava[f"w_hist/{proj.name}"]
    cmp = {"weights_identical_all_reports": bool(np.array_equal(w_lava, w_torch[: len(w_lava)]) and len(w_lava) == len(w_torch)),
           "final_weight_mismatches": int((lava[f"w_acc/{proj.name}"] != rule.w_acc[0].numpy()).sum()),
           "rewards_lava": int(lava["rewards_hist"][-1][0]), "rewards_torch": rew[-1][0],
           "spike_mismatches_last_window": {n: int((torch.stack(last[n]).numpy() != lava[f"window/{n}"]).sum())
                                            for n in lif}}
    times = np.arange(1, len(w_torch) + 1) * every * dt
    times[-1] = T * dt
    _write_distal_metrics(out, times, w_lava, np.array(lava["rewards_hist"]), w_torch, np.array(rew),
                          rewarded, prm.frac_bits, proj.scale_w, int(cfg.get("seed", 0)))
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


def _write_distal_metrics(out: Path, times, w_lava, rew_lava, w_torch, rew_torch, k: int, frac: int, scale_w: float,
                          seed: int) -> None:
    """``metrics.csv`` (Lava) and ``metrics_torch_fixed.csv`` in the distal-reward run's format: one
    row per report, the rewarded synapse's |weight| against the others (float units)."""
    cols = "time,seed,w_rewarded,w_mean,w_p99,rank,rewards,coincidences"
    for name, W, R in (("metrics.csv", w_lava, rew_lava), ("metrics_torch_fixed.csv", w_torch, rew_torch)):
        rows = [cols]
        for i in range(min(len(W), len(times))):
            w = np.abs(W[i].astype(np.float64)) / 2 ** frac * scale_w
            others = np.delete(w, k)
            rows.append(f"{times[i]:.3f},{seed},{w[k]:.6g},{others.mean():.6g},{np.percentile(others, 99):.6g},"
                        f"{(others < w[k]).mean():.6g},{R[i][0]},{R[i][1]}")
        (out / name).write_text("\n".join(rows) + "\n")


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
