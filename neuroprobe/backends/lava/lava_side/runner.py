"""neuroprobe's Lava runner: builds Lava processes from a job file, runs them, writes the results.

    python runner.py JOB.npz RESULT.npz

Runs in the Lava environment (Python 3.10, lava-nc 0.10.0); imports nothing from neuroprobe.
JOB.npz holds ``job.json`` (a JSON string, below) and the arrays it names. The job::

    {"precision": "fixed" | "float", "steps": T, "noise_seed": int,
     "populations": [{"name", "size", "kind": "lif" | "input",
                      lif: "du", "dv", "vth", "bias_mant", "bias_exp" (fixed; floats in float mode),
                      "noise": [mant, shift, offset] | null,      # fixed only: HashNoise into a_in
                      input: "data": KEY}],                       # (N, T) spikes for a RingBuffer
     "projections": [{"name", "pre", "post", "weights": KEY (n_post, n_pre), "weight_exp": int,
                      "plastic": null | {"pre_idx": KEY, "post_idx": KEY, "w_acc": KEY, "params": {...}}}],
     "dopamine": KEY | null,                                      # (T,) int dopamine for plastic connections
     "distal": null | {"pre_pop", "post_pop", "params": {...}},   # or: dopamine from DistalRewardSource
     "report_every": steps | null,                                # snapshot plastic weights every k steps
     "record": {"spikes": [pop], "v": [pop], "u": [pop]},          # every step (Lava Monitors)
     "record_window": {"steps": K, "spikes": [pop]} | null}      # spikes of the last K steps only

RESULT.npz: ``spikes/<pop>`` (T, N) uint8, ``v/<pop>``, ``u/<pop>`` (T, N) (int64 in fixed point,
float64 in float), ``w_acc/<proj>`` (S,) final plastic weights, ``w_hist/<proj>`` (R, S) and
``rewards_hist`` (R, 2: rewards, coincidences) every ``report_every`` steps, ``timing`` [build s, run s, read-out + stop s, import s]. On
failure: one line on stderr and exit status 2.

Started by neuroprobe's driver (``NEUROPROBE_LAVA_PARENT`` set), the runner watches its parent: a
watchdog thread waits for EOF on stdin (a pipe whose only write end the parent holds) and checks
every 0.1 s that its parent PID is unchanged (when the driver is its direct parent). Once the
parent is gone (SIGKILL included), it kills the other processes of its process group (Lava's
runtime), removes ``NEUROPROBE_LAVA_TMPDIR`` (the job's temporary directory, the ``TMPDIR`` of
Lava's own temporary files where its path is short enough) and multiprocessing's temporary
directory, and kills itself. Run by hand (no ``NEUROPROBE_LAVA_PARENT``), no watchdog.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import threading
import time

import numpy as np

_T_START = time.perf_counter()  # before Lava is imported
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build_and_run(job: dict, arrays) -> dict:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIF
    from lava.proc.monitor.process import Monitor

    from processes import CascadeRSTDPConn, DistalRewardSource, DopamineSource, HashNoise, SpikeWindow

    t0 = time.perf_counter()
    fixed = job["precision"] == "fixed"
    T = int(job["steps"])
    procs, outs = {}, {}
    for p in job["populations"]:
        if p["kind"] == "lif":
            kw = dict(shape=(p["size"],), du=p["du"], dv=p["dv"], vth=p["vth"])
            if fixed:
                kw.update(bias_mant=np.full(p["size"], p["bias_mant"], dtype=np.int32), bias_exp=p["bias_exp"])
            else:
                kw.update(bias_mant=np.full(p["size"], p["bias"], dtype=float), bias_exp=0,
                          v=np.full(p["size"], p.get("v0", 0.0), dtype=float))
            lif = LIF(**kw)
            procs[p["name"]] = lif
            outs[p["name"]] = lif.s_out
            if p.get("noise"):
                if not fixed:
                    raise ValueError(f"population {p['name']}: membrane noise runs in fixed point only")
                mant, shift, offset = p["noise"]
                nz = HashNoise(shape=(p["size"],), seed=int(job.get("noise_seed", 0)), offset=offset, mant=mant,
                               shift=shift)
                nz.a_out.connect(lif.a_in)
                procs[p["name"] + ".noise"] = nz
        elif p["kind"] == "input":
            data = np.asarray(arrays[p["data"]])
            src = RingBuffer(data=data.astype(np.int32 if fixed else float))
            procs[p["name"]] = src
            outs[p["name"]] = src.s_out
        else:
            raise ValueError(f"population {p['name']}: kind {p['kind']!r} not deployable")
    dopa = distal = None
    if job.get("dopamine"):
        dopa = DopamineSource(data=np.asarray(arrays[job["dopamine"]], dtype=np.int64))
    elif job.get("distal"):
        dj = job["distal"]
        sizes = {p["name"]: p["size"] for p in job["populations"]}
        distal = dopa = DistalRewardSource(n_pre=sizes[dj["pre_pop"]], n_post=sizes[dj["post_pop"]],
                                           params={k: int(v) for k, v in dj["params"].items()})
        outs[dj["pre_pop"]].connect(distal.s_pre)
        outs[dj["post_pop"]].connect(distal.s_post)
    plastic = {}
    for pr in job["projections"]:
        post = procs[pr["post"]]
        if pr.get("plastic"):
            if not fixed or dopa is None:
                raise ValueError(f"projection {pr['name']}: plasticity needs fixed point and a dopamine source")
            pl = pr["plastic"]
            conn = CascadeRSTDPConn(n_pre=pr["n_pre"], n_post=pr["n_post"], pre_idx=arrays[pl["pre_idx"]],
                                    post_idx=arrays[pl["post_idx"]], w_acc=np.asarray(arrays[pl["w_acc"]]),
                                    params=pl["params"])
            outs[pr["pre"]].connect(conn.s_in)
            outs[pr["post"]].connect(conn.s_post)
            dopa.d_out.connect(conn.dopamine)
            plastic[pr["name"]] = conn
        else:
            W = np.asarray(arrays[pr["weights"]])
            kw = {"weight_exp": int(pr["weight_exp"]), "num_weight_bits": 8} if fixed else {}
            conn = Dense(weights=W, **kw)
            outs[pr["pre"]].connect(conn.s_in)
        conn.a_out.connect(post.a_in)
        procs[pr["name"]] = conn
    monitors = []
    rec = job.get("record", {})
    for kind, port in (("spikes", "s_out"), ("v", "v"), ("u", "u")):
        for name in rec.get(kind, []):
            m = Monitor()
            m.probe(getattr(procs[name], port), T)
            monitors.append((kind, name, port, m))
    windows = []
    rw = job.get("record_window") or {}
    for name in rw.get("spikes", []):
        w = SpikeWindow(shape=(outs[name].shape[0],), window=int(rw["steps"]))
        outs[name].connect(w.s_in)
        windows.append((name, w))
    anchor = next(iter(procs.values()))
    cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt")
    every = int(job.get("report_every") or T)
    hist = {name: [] for name in plastic}
    rew = []
    t1 = time.perf_counter()
    done = 0
    try:
        while done < T:
            k = min(every, T - done)
            anchor.run(condition=RunSteps(num_steps=k), run_cfg=cfg)
            done += k
            if job.get("report_every"):
                for name, conn in plastic.items():
                    hist[name].append(np.asarray(conn.w_acc.get()).astype(np.int32))
                if distal is not None:
                    rew.append([int(distal.rewards.get()[0]), int(distal.coincidences.get()[0])])
                print(f"progress {done}/{T}", file=sys.stderr, flush=True)
    except BaseException:
        anchor.stop()
        raise
    t2 = time.perf_counter()
    out = {}
    try:
        for name, h in hist.items():
            if h:
                out[f"w_hist/{name}"] = np.stack(h)
        if rew:
            out["rewards_hist"] = np.array(rew, dtype=np.int64)
        for kind, name, port, m in monitors:
            data = m.get_data()[procs[name].name][port]
            out[f"{kind}/{name}"] = data.astype(np.uint8) if kind == "spikes" else (
                np.rint(data).astype(np.int64) if fixed else data.astype(np.float64))
        for name, w in windows:
            K = int(rw["steps"])
            data = np.asarray(w.data.get()).astype(np.uint8)
            out[f"window/{name}"] = np.roll(data, -(T % K), axis=0) if T >= K else data[:T]
        for name, conn in plastic.items():
            out[f"w_acc/{name}"] = np.asarray(conn.w_acc.get()).astype(np.int64)
    finally:
        anchor.stop()
    out["timing"] = np.array([t1 - t0, t2 - t1, time.perf_counter() - t2, t0 - _T_START])
    return out


def _group_members(pgid: int) -> list[int]:
    """PIDs of the processes in process group ``pgid`` (Linux /proc; empty elsewhere)."""
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after "pid (comm)": state, ppid, pgrp
            pids.append(int(entry))
    return pids


def _die_with_parent(tmpdir: str | None) -> None:
    """The parent is gone: kill the rest of the group, remove the job's directory, kill ourselves."""
    me, pgid = os.getpid(), os.getpgrp()
    # the driver starts the runner (or a wrapper that runs it) in a new session, so the group that
    # leads it is the job's alone; a runner started otherwise kills only itself
    ours = pgid == os.getsid(0)
    if ours:
        for _ in range(5):  # processes forked meanwhile are caught by the next pass (and the last killpg)
            others = [pid for pid in _group_members(pgid) if pid != me]
            for pid in others:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if not others:
                break
    mp = sys.modules.get("multiprocessing.process")  # Lava's: its temporary directory (sockets) too
    mp_tmp = getattr(mp, "current_process", lambda: None)()
    mp_tmp = getattr(mp_tmp, "_config", {}).get("tempdir")
    for path in (tmpdir, mp_tmp):
        for _ in range(5):  # nothing in the group writes into it any more; retry if something did meanwhile
            if not path or not os.path.exists(path):
                break
            shutil.rmtree(path, ignore_errors=True)
    if ours:
        os.killpg(pgid, signal.SIGKILL)
    os._exit(3)


def _watch_parent() -> threading.Event | None:
    """Start the watchdog (see the module docstring) when the driver asked for it; setting the
    returned event stops it. The thread is not a daemon: once it has seen the parent die, an ending
    main thread (Lava failing as its processes are killed) waits for it to finish the clean-up."""
    parent = os.environ.get("NEUROPROBE_LAVA_PARENT")
    if not parent:
        return None
    parent_pid, tmpdir = int(parent), os.environ.get("NEUROPROBE_LAVA_TMPDIR") or None
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        fd = None
    # a wrapper between the driver and this interpreter (a shell script that does not exec) leaves
    # the pipe's EOF as the only sign; the PID check needs the driver as our direct parent
    watch_pid = os.getppid() == parent_pid
    # multiprocessing's temporary directory made now, before Lava forks: its processes share it
    # (one made in a child would be unknown here)
    import multiprocessing.util

    multiprocessing.util.get_temp_dir()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if watch_pid and os.getppid() != parent_pid:
                break
            if fd is None:
                time.sleep(0.1)
                continue
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and not os.read(fd, 65536):  # EOF: every write end is closed, the parent is gone
                break
        else:
            return
        _die_with_parent(tmpdir)

    threading.Thread(target=watch, name="parent-watchdog", daemon=False).start()
    return stop


def main(argv: list[str]) -> int:
    stop = _watch_parent()
    try:
        return _main(argv)
    finally:
        if stop is not None:
            stop.set()


def _main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: runner.py JOB.npz RESULT.npz", file=sys.stderr)
        return 2
    try:
        with np.load(argv[1], allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        job = json.loads(str(arrays.pop("job.json")))
        out = build_and_run(job, arrays)
        tmp = argv[2] + ".part.npz"
        np.savez(tmp, **out)
        os.replace(tmp, argv[2])
    except Exception as e:  # one line for the driver; the driver adds context
        print(f"lava runner: {type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
