"""Every run kind on every device, through the same code (issue 13, part 4).

A GPU run differs from a CPU run only in where tensors live: the config's ``device`` reaches the
rules' ``build`` as ``BuildContext.device``. A forgotten ``device=`` is invisible on the CPU (every
tensor is a CPU tensor), so CPU-only CI would never see it. These tests therefore run every kind
three ways:

* on the CPU;
* on an **emulated CUDA device** (:class:`FakeCuda`, below): the run has ``device = "cuda"``, the
  arithmetic happens on the CPU, but every tensor carries the device it would have on a GPU
  (created with ``device=cuda``, moved with ``.to``/``.cuda``, or computed from such tensors), and
  every torch call is checked the way CUDA checks it: tensors of two devices in one operation (a
  CPU tensor is allowed only as a 0-dim scalar), a CPU generator drawing for a CUDA tensor,
  ``.numpy()`` of a CUDA tensor. A violation raises at the offending line of neuroprobe. Since the
  numbers are computed on the CPU, the emulated run must also write the *same* metrics as the CPU
  run (a run whose noise comes from a CUDA generator excepted): the device changes nothing else;
* on a real GPU, when torch sees one (``gpu_check.sh``): the run finishes with finite metrics and
  agrees with the CPU run where floating-point differences cannot matter.

What the emulation cannot see: kernels missing or numerically different on CUDA, memory, speed,
tensors created by C++ or numba code outside torch's Python API, tensors created before the test
(untagged, never flagged) and torch functions that accept mixed devices on a real GPU but that the
emulator treats leniently (indexing assignments).
"""
from __future__ import annotations

import csv
import importlib.util
import math
import os
import subprocess
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import neuroprobe.runner as runner
from neuroprobe.config import load_experiment
from neuroprobe.errors import ConfigError
from neuroprobe.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "experiments"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# =========================================================================== the emulated CUDA device
class FakeCudaError(RuntimeError):
    """What CUDA would have refused, with the neuroprobe line that did it."""


_TAG = "_np_fake_cuda"  # on a tensor: True = on the emulated GPU; False or absent = on the CPU
_CUDA = torch.device("cuda", 0)
_TB = torch._C.TensorBase
_REAL_GENERATOR = torch.Generator
# torch functions that legitimately see tensors of two devices
_CROSS_DEVICE = {"_has_compatible_shallow_copy_type", "is_same_size", "is_set_to", "__reduce_ex__", "__deepcopy__",
                 "copy_", "__setitem__"}


def _tag(t) -> bool:
    return getattr(t, _TAG, False)  # a tensor made outside the emulation (before it, or a cache) is a CPU tensor


def _set_tag(t, value) -> None:
    try:
        setattr(t, _TAG, value)
    except (AttributeError, TypeError):  # a tensor type without a __dict__
        pass


def _device_type(d) -> str | None:
    if isinstance(d, torch.device):
        return d.type
    if isinstance(d, str):
        return torch.device(d).type
    if isinstance(d, int) and not isinstance(d, bool):
        return "cuda"  # a bare ordinal means a CUDA device
    return None


class FakeGenerator(_REAL_GENERATOR):
    """``torch.Generator(device="cuda")`` on a CPU-only torch: a CPU generator that says it is a
    CUDA one (its numbers differ from a real CUDA generator's; runs that use one are compared by
    finiteness, not values)."""

    def __new__(cls, device="cpu"):
        g = super().__new__(cls)
        g._fake = _device_type(device) == "cuda"
        return g

    def __init__(self, device="cpu"):
        super().__init__()

    @property
    def device(self):
        return _CUDA if self._fake else torch.device("cpu")


def _where() -> str:
    """The innermost line of the neuroprobe package on the stack."""
    pkg = str(ROOT / "neuroprobe") + os.sep
    for fr in reversed(traceback.extract_stack()[:-3]):
        if fr.filename.startswith(pkg):
            return f"{os.path.relpath(fr.filename, ROOT)}:{fr.lineno}: {fr.line}"
    return "(outside neuroprobe)"


class FakeCuda(TorchFunctionMode):
    """Tags every tensor a torch call returns with its emulated device and checks each call's
    tensors as CUDA would (module docstring). ``ops`` counts calls by the device they ran on."""

    def __init__(self):
        super().__init__()
        self.violations: list[str] = []
        self.ops = {"cuda": 0, "cpu": 0}

    def _refuse(self, what: str):
        text = f"{what} at {_where()}"
        self.violations.append(text)
        raise FakeCudaError(text)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        owner, name = getattr(func, "__self__", None), getattr(func, "__name__", "")
        # what a tensor says about itself
        if name == "__get__" and owner is _TB.device:
            return _CUDA if _tag(args[0]) else func(*args)
        if name == "__get__" and owner is _TB.is_cuda:
            return bool(_tag(args[0]))
        if name == "__set__" and owner is _TB.data:  # param.data = t (nn.Module.to): the parameter moves
            func(*args)
            _set_tag(args[0], _tag(args[1]))
            return None
        if func is _TB.get_device:
            return 0 if _tag(args[0]) else -1
        if func in (_TB.numpy, torch.Tensor.__array__) and _tag(args[0]):
            self._refuse("can't convert a cuda tensor to numpy (call .cpu() first)")
        if name in _CROSS_DEVICE:
            return func(*args, **kwargs)
        # where the result goes
        want = None
        if "device" in kwargs:
            want = _device_type(kwargs["device"])
            if want == "cuda":
                kwargs["device"] = "cpu"
        moving = func in (_TB.to, _TB.cpu, _TB.cuda)
        if func is _TB.to:
            args = list(args)
            for i, a in enumerate(args[1:], 1):
                if isinstance(a, (str, torch.device)):
                    want, args[i] = _device_type(a), "cpu"
                elif isinstance(a, torch.Tensor):  # .to(other): other's device and dtype
                    want = "cuda" if _tag(a) else "cpu"
                    args[i] = a.dtype
            args = tuple(args)
        elif func is _TB.cpu:
            want = "cpu"
        elif func is _TB.cuda:
            want, func, args, kwargs = "cuda", _TB.cpu, args[:1], {}
        flat = tree_flatten((args, kwargs))[0]
        data_only = name in ("tensor", "as_tensor") and args and not isinstance(args[0], torch.Tensor)
        tensors = [] if data_only else [t for t in flat if isinstance(t, torch.Tensor)]
        if func is _TB.__getitem__:  # CPU index tensors may index a CUDA tensor, not the reverse
            if not _tag(args[0]) and any(_tag(t) for t in tensors[1:]):
                self._refuse("a cuda index into a cpu tensor")
            op = _tag(args[0])
        elif moving:
            op = _tag(args[0]) if want is None else want == "cuda"
        elif want is not None:
            op = want == "cuda"
        elif not tensors:
            op = False  # a factory without device=: the default device, the CPU
        else:
            cuda = [t for t in tensors if _tag(t)]
            cpu = [t for t in tensors if not _tag(t) and t.dim() > 0]
            if cuda and cpu:
                self._refuse(f"{name}: a cuda tensor {tuple(cuda[0].shape)} meets a cpu tensor {tuple(cpu[0].shape)}")
            op = bool(cuda)
        for g in flat:
            if isinstance(g, _REAL_GENERATOR) and op != getattr(g, "_fake", False):
                self._refuse(f"{name}: a {'cpu' if op else 'cuda'} generator draws for a {'cuda' if op else 'cpu'} "
                             f"tensor")
        self.ops["cuda" if op else "cpu"] += 1
        out = func(*args, **kwargs)
        if name == "__iter__":  # iterating a tensor yields its rows, on its device
            return iter(self._retag(list(out), op, tensors, False))
        return self._retag(out, op, tensors, moving or want is not None)

    def _retag(self, out, op: bool, inputs: list, moved: bool):
        if isinstance(out, torch.Tensor):
            if any(out is t for t in inputs):  # in place, or a no-op: the tensor keeps its device...
                if not moved or _tag(out) == op:
                    return out
                out = out.clone()  # ...unless moved: a real move copies, the source stays where it was
            _set_tag(out, op)
            return out
        if isinstance(out, (tuple, list)):
            items = [self._retag(o, op, inputs, moved) for o in out]
            return type(out)(items) if type(out) in (tuple, list) else out
        return out


_orig_make_subclass = torch.Tensor._make_subclass


def _make_subclass(cls, data, requires_grad=False, **kwargs):  # nn.Parameter(t): the parameter is where t is
    out = _orig_make_subclass(cls, data, requires_grad, **kwargs)
    _set_tag(out, _tag(data))
    return out


@contextmanager
def fake_cuda():
    """Within: torch says CUDA is available (one device), ``torch.Generator(device="cuda")`` works,
    and :class:`FakeCuda` checks every torch call (checkpoints, loaded with map_location="cpu", hold
    CPU tensors, as everything untagged)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.cuda, "is_available", lambda: True)
        mp.setattr(torch.cuda, "device_count", lambda: 1)
        mp.setattr(torch, "Generator", FakeGenerator)
        mp.setattr(torch.Tensor, "_make_subclass", staticmethod(_make_subclass))
        mode = FakeCuda()
        with mode:
            yield mode


# ------------------------------------------------------------------ the emulator catches what CUDA refuses
_MADE_BEFORE = torch.ones(3)  # e.g. a module constant or a cache filled by an earlier CPU run


@pytest.mark.parametrize("bug", [
    lambda: torch.zeros(3, device="cuda") * _MADE_BEFORE,                          # a CPU constant
    lambda: torch.zeros(3, device="cuda") + torch.ones(3),                        # forgot device=
    lambda: torch.ones(2, 3) @ torch.zeros(3, 2).to("cuda"),
    lambda: torch.nn.Linear(3, 2).to("cuda")(torch.zeros(4, 3)),                   # input left on the CPU
    lambda: torch.nn.Linear(3, 2)(torch.zeros(4, 3, device="cuda")),              # module never moved
    lambda: torch.randn(3, generator=torch.Generator(), device="cuda"),           # CPU generator, CUDA draw
    lambda: torch.zeros(3, device="cuda").normal_(generator=torch.Generator()),
    lambda: torch.multinomial(torch.ones(2, 3, device="cuda"), 1, generator=torch.Generator()),
    lambda: torch.zeros(3, device="cuda").numpy(),                                 # .numpy() of a GPU tensor
    lambda: np.asarray(torch.zeros(3).cuda()),
    lambda: torch.zeros(3)[torch.tensor([0, 1], device="cuda")],                  # CUDA index, CPU tensor
    lambda: torch.where(torch.zeros(3, dtype=torch.bool), torch.zeros(3, device="cuda"), torch.ones(3)),
    lambda: torch.cat([torch.zeros(2, device="cuda"), torch.zeros(2)]),
])
def test_emulator_refuses_what_cuda_refuses(bug):
    with fake_cuda():
        with pytest.raises(FakeCudaError):
            bug()


def test_emulator_allows_what_cuda_allows():
    with fake_cuda() as mode:
        x = torch.arange(6.0, device="cuda").view(2, 3)
        assert x.device.type == "cuda" and x.is_cuda and (x * 2).device.type == "cuda"
        assert (x * torch.tensor(2.0)).device.type == "cuda"            # CPU scalars are fine
        assert x[torch.tensor([1])].device.type == "cuda"               # CPU index into a CUDA tensor
        assert x[torch.tensor([True, False])].shape == (1, 3)
        assert all(row.device.type == "cuda" for row in x)             # rows of a CUDA tensor
        y = x.cpu()
        assert y.device.type == "cpu" and x.device.type == "cuda"       # a move copies; the source stays
        assert y.numpy().shape == (2, 3) and x.sum().item() == 15.0 and x.tolist()[1] == [3.0, 4.0, 5.0]
        net = torch.nn.Linear(3, 2).to("cuda")
        assert all(p.device.type == "cuda" for p in net.parameters())
        assert net(x).device.type == "cuda"
        assert torch.zeros_like(x).device.type == "cuda" and x.new_zeros(2).device.type == "cuda"
        g = torch.Generator(device="cuda").manual_seed(0)
        assert torch.randn(3, generator=g, device="cuda").device.type == "cuda"
        z = torch.zeros(3)
        z.copy_(x[0])                                                   # copies cross devices
        assert z.device.type == "cpu" and torch.equal(z, torch.tensor([0.0, 1.0, 2.0]))
        assert mode.ops["cuda"] > 0 and not mode.violations


# =========================================================================== every run kind
TINY_DISTAL = ["task.duration=0.2", "task.report_every=0.1", "run.checkpoint_every=0.1", "run.record_last=0"]
KINDS = {  # name: (config, overrides, the noise comes from a CUDA generator on a GPU)
    "rate_nrl": ("nrl_cartpole.toml", ["seeds=3", "task.episodes=4"], False),
    "rate_rmhl": ("rmhl_cartpole.toml", ["seeds=2", "task.episodes=3"], False),
    "rate_bp": ("bp_cartpole.toml", ["seeds=2", "task.episodes=3"], False),
    "cet": ("cet_digits.toml", ["task.steps=40", "task.eval_every=20", "run.checkpoint_every=20"], False),
    "probe_cartpole": ("probe_cartpole.toml", ["task.episodes=4", "rule.branches=8", "run.checkpoint_every=2"],
                       False),
    "probe_digits": ("probe_digits.toml", ["task.steps=12", "task.eval_every=4", "rule.branches=8",
                                           "task.label_delay=2", "rule.regime=semi_persistent",
                                           "run.checkpoint_every=6"], False),
    # float64 and hash noise: the torch engine draws no generator noise, so the GPU run is comparable
    "distal_float": ("distal_reward.toml", ["seeds=2", "run.rng=hash", "run.dtype=float64", "rule.order=3",
                                            "rule.delay=0.05", *TINY_DISTAL], False),
    "distal_float32": ("distal_reward.toml", ["seeds=2", "run.dtype=float32", *TINY_DISTAL], True),
    "spiking_nrl": ("spiking_cartpole.toml", ["seeds=2", "task.episodes=4", "run.checkpoint_every=2"], True),
}
# the budget key of each kind and the half budget a resumed run starts from
HALF = {"cet": ("task.steps", 20), "probe_digits": ("task.steps", 4), "distal_float": ("task.duration", 0.1),
        "probe_cartpole": ("task.episodes", 2), "spiking_nrl": ("task.episodes", 2)}


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


KEY_METRICS = ("return", "accuracy", "w_rewarded", "w_mean")  # NaN elsewhere means "nothing since the last row"


def _assert_finite(run_dir: Path) -> list[dict]:
    """The run finished (summary.json) and its metrics hold no ±inf, and no NaN in a key metric."""
    rows = _read(run_dir / "metrics.csv")
    assert rows and (run_dir / "summary.json").is_file(), f"{run_dir}: unfinished"
    for row in rows:
        for k, v in row.items():
            try:
                x = float(v)
            except ValueError:
                continue
            assert not math.isinf(x) and (k not in KEY_METRICS or math.isfinite(x)), f"{run_dir.name}: {k} = {v}"
    return rows


class _Recorded:
    parts = None


def _run(kind: str, out: Path, device: str, extra: tuple[str, ...] = (), resume: Path | None = None) -> Path:
    config, overrides, _ = KINDS[kind]
    sets = [*overrides, "run.progress=false", f"device={device}", *extra]
    if resume is not None:
        return run_experiment(None, list(extra), resume=resume, figures=False)
    return run_experiment(EXP / config, sets, out=out, figures=False)


@pytest.fixture(scope="module")
def cpu_runs(tmp_path_factory):
    """The CPU run of each kind, made once (the emulated and real GPU runs compare with it)."""
    tmp, done = tmp_path_factory.mktemp("cpu"), {}

    def get(kind: str) -> Path:
        if kind not in done:
            done[kind] = _run(kind, tmp / kind, "cpu")
        return done[kind]
    return get


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    """The emulated-CUDA run of each kind: (run dir, parameters' devices, ops per device)."""
    tmp, done = tmp_path_factory.mktemp("fake"), {}

    def get(kind: str):
        if kind not in done:
            with fake_cuda() as mode, pytest.MonkeyPatch.context() as mp:
                class Recording(runner.Loop):
                    def __init__(self, parts, *a, **k):
                        _Recorded.parts = parts
                        super().__init__(parts, *a, **k)

                mp.setattr(runner, "Loop", Recording)
                out = _run(kind, tmp / kind, "cuda")
                devices = {p.device.type for p in _Recorded.parts.agent.parameters()}
            done[kind] = (out, devices, dict(mode.ops))
        return done[kind]
    return get


@pytest.mark.parametrize("kind", list(KINDS))
def test_run_kind_on_emulated_cuda(kind, cpu_runs, fake_runs):
    """device = "cuda" runs to the end with no tensor on the wrong device, the learned parameters
    on the GPU, and (noise from the CPU generator) exactly the CPU run's metrics."""
    out, devices, ops = fake_runs(kind)
    assert devices == {"cuda"}, f"{kind}: parameters on {devices}"
    assert ops["cuda"] > 100, ops  # the network's work did run on the (emulated) GPU
    rows = _assert_finite(out)
    ref = cpu_runs(kind)
    ref_rows = _assert_finite(ref)
    if KINDS[kind][2]:  # a CUDA generator draws other numbers than the CPU one: same shape of results
        assert len(rows) == len(ref_rows) and rows[0].keys() == ref_rows[0].keys()
    else:
        assert (out / "metrics.csv").read_text() == (ref / "metrics.csv").read_text()


@pytest.mark.parametrize("kind", list(HALF))
def test_resume_on_emulated_cuda(kind, fake_runs, tmp_path):
    """A run resumed on the GPU (its checkpoint loads on the CPU) ends like the uninterrupted one."""
    key, half = HALF[kind]
    straight, _, _ = fake_runs(kind)
    full = next(o for o in KINDS[kind][1] + TINY_DISTAL if o.startswith(key + "="))
    with fake_cuda():
        first = _run(kind, tmp_path / "r", "cuda", extra=(f"{key}={half}",))
        resumed = _run(kind, tmp_path / "r", "cuda", extra=(full,), resume=first)
    assert (resumed / "metrics.csv").read_text() == (straight / "metrics.csv").read_text()


def test_fixed_point_torch_engine_runs_on_the_cpu(tmp_path):
    """Loihi's integer engine is a CPU engine (device = "cpu" only); a tiny run finishes."""
    out = run_experiment(EXP / "distal_reward_loihi.toml", ["run.precision=fixed", "seeds=2", *TINY_DISTAL,
                                                            "run.progress=false"], out=tmp_path / "f", figures=False)
    rows = _assert_finite(out)
    assert {r["seed"] for r in rows} == {"0", "1"}


# ------------------------------------------------------------------ real devices (the GPU check)
def _first(rows: list[dict], by: str = "seed") -> dict:
    first = {}
    for r in rows:
        first.setdefault(r[by], r)
    return first


@pytest.mark.skipif("cuda" not in DEVICES, reason="needs a CUDA device (benchmarks/gpu_check.sh on a GPU machine)")
@pytest.mark.parametrize("kind", list(KINDS))
def test_run_kind_on_cuda_agrees_with_cpu(kind, cpu_runs, tmp_path):
    """On a real GPU: the run finishes with finite metrics; where float differences cannot change
    discrete choices the results agree with the CPU run."""
    out = _run(kind, tmp_path / kind, "cuda")
    rows, ref = _assert_finite(out), _assert_finite(cpu_runs(kind))
    assert len(rows) == len(ref)  # every kind writes a fixed number of rows for its budget
    if kind.startswith("rate") or kind == "probe_cartpole":
        # the first episode of every seed runs on the initial weights: same actions, same return
        a, b = _first(rows), _first(ref)
        assert {s: r["return"] for s, r in a.items()} == {s: r["return"] for s, r in b.items()}
    elif kind in ("cet", "probe_digits"):
        for r, q in zip(rows, ref):
            assert abs(float(r["accuracy"]) - float(q["accuracy"])) <= 0.05, (r, q)
    elif kind == "distal_float":  # float64, hash noise: the first report agrees spike for spike
        for r, q in zip(rows[:2], ref[:2]):
            assert r["coincidences"] == q["coincidences"] and r["rewards"] == q["rewards"]
            assert float(r["w_mean"]) == pytest.approx(float(q["w_mean"]), rel=1e-9)


# ------------------------------------------------------------------ what cannot run on a GPU is refused
@pytest.mark.parametrize("sets, words", [
    (["run.backend=event", "run.rng=hash"], ["event engine", "CPU"]),
    (["run.backend=brian2"], ["Brian2", "CPU"]),
    (["run.precision=fixed"], ["fixed-point", "CPU"]),
    (["run.backend=lava", "run.precision=fixed"], ["Lava", "CPU"]),
])
def test_cpu_only_engines_refuse_cuda(sets, words, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # get past "no CUDA" to the engine's own check
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    load_experiment(EXP / "distal_reward_loihi.toml", [*sets, "device=cpu"])  # valid on the CPU
    with pytest.raises(ConfigError) as e:
        load_experiment(EXP / "distal_reward_loihi.toml", [*sets, "device=cuda"])
    msg = str(e.value)
    assert "\n" not in msg and "'device' = 'cuda'" in msg and all(w in msg for w in words), msg


def test_cuda_index_beyond_the_visible_devices_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    load_experiment(EXP / "probe_digits.toml", ["device=cuda:0"])  # the probe rule runs on a GPU too
    with pytest.raises(ConfigError, match="cuda:1 requested but torch sees 1 CUDA device"):
        load_experiment(EXP / "probe_digits.toml", ["device=cuda:1"])


# =========================================================================== the GPU check's pieces
def _bench():
    spec = importlib.util.spec_from_file_location("gpu_throughput", ROOT / "benchmarks" / "gpu_throughput.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_throughput_benchmark_runs_on_the_cpu():
    bench = _bench()
    rows, table = bench.run("cpu", quick=True, seeds=(1, 3), branches=(8,), trials=(1, 2))
    kinds = [r["kind"] for r in rows]
    assert kinds == ["rate NRL CartPole"] * 2 + ["probe window digits"] + ["spiking distal reward"] * 2
    for r in rows:
        assert all(math.isfinite(v) and v >= 0 for v in r.values() if isinstance(v, float)), r
    nrl = rows[1]
    assert nrl["env_steps_per_s"] == pytest.approx(3 * nrl["loop_steps"] / nrl["wall_s"])
    assert 0 < nrl["env_share"] < 1
    probe = rows[2]
    assert probe["forward_passes_per_s"] == pytest.approx(8 * 32 / (probe["ms_per_window"] / 1e3))
    spk = rows[4]
    assert spk["neurons"] == 1000 and spk["neuron_steps_per_s"] == pytest.approx(1000 * 2 * spk["steps"] / spk["wall_s"])
    assert spk["events_per_s"] > spk["neuron_steps_per_s"] * spk["rate_hz"] * 1e-3  # ~100 targets per spike
    for needle in ("torch " + torch.__version__, "| rate NRL CartPole | S = 3 seeds", "B = 8 branches x S = 32",
                   "B = 2 trials", "neuron-steps/s", "synaptic events/s", "env-steps/s"):
        assert needle in table, needle


def test_synaptic_event_count_is_spikes_times_out_degree():
    """The benchmark's event counter against a count by hand on a 3-neuron projection."""
    from types import SimpleNamespace

    bench = _bench()
    proj = SimpleNamespace(spec=SimpleNamespace(pre="a"), pre=torch.tensor([0, 0, 2, 2, 2]), n_pre=3)
    net = SimpleNamespace(projections=[proj], device=torch.device("cpu"))
    loop = SimpleNamespace(parts=SimpleNamespace(agent=SimpleNamespace(net=net)))
    ev = bench.SynapticEvents()
    for z in ([[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]):
        ev.on_step(loop, SimpleNamespace(action={"a": torch.tensor(z)}))
    assert ev.totals() == (2 + 0 + 3 + 2 + 3, 2 + 1 + 2)  # out-degrees 2, 0, 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")
def test_throughput_benchmark_refuses_cuda_without_one_in_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), "--device", "cuda",
                           "--quick"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "CUDA" in proc.stderr, proc.stderr


def test_gpu_check_script_plans_the_gpu_tests_and_the_benchmark():
    script = ROOT / "benchmarks" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    proc = subprocess.run(["bash", str(script), "--dry-run"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    # the files with tests that run only where CUDA is
    cuda_only = sorted(p.name for p in (ROOT / "tests").glob("test_*.py")
                       if "skipif(not torch.cuda.is_available()" in p.read_text() or '"cuda" not in DEVICES' in
                       p.read_text())
    assert "test_devices.py" in cuda_only and "test_spiking_engine.py" in cuda_only
    for name in cuda_only:
        assert f"tests/{name}" in plan, name
    assert "gpu_throughput.py --device cuda" in plan and "timeout" in plan
