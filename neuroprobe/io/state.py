"""Checkpoint state as plain trees: loadable with ``torch.load(f, weights_only=True)``.

A *plain tree* holds only dicts (str or int keys), lists, python scalars (bool, int, float, str),
None and torch tensors: what torch's restricted ("weights only") unpickler accepts. Loading one
never runs code from the file, unlike pickled live objects (``torch.load(weights_only=False)``).

* :func:`to_plain` turns checkpoint state into a plain tree: NamedTuples (norse's and neuroprobe's
  state tuples) become dicts of their fields, tuples and deques lists, numpy arrays tensors (same
  dtype), numpy scalars python scalars, a ``numpy.random.Generator`` its ``bit_generator.state``,
  a ``numpy.random.RandomState`` its ``get_state(legacy=False)`` dict, a ``torch.Generator`` its
  ``get_state()`` tensor. Anything else raises :class:`~neuroprobe.errors.NeuroprobeError` naming
  the entry, e.g. ``state['lif']['exc']: cannot store <class 'X'> in a checkpoint``.
* :func:`restore_like` is the inverse, guided by a template object of the same structure (e.g.
  ``net.init_state(B)``): NamedTuple types, tuples, deques, numpy dtypes come from the template;
  generators in the template get the saved state in place (and are returned).
* :func:`env_state` / :func:`load_env_state` capture and restore the state of a Gymnasium 0.29
  ``SyncVectorEnv`` built by :func:`neuroprobe.tasks.make_vector_env` (every sub-environment's
  wrapper chain: physics state, step counters, pending rewards, RNG states, NeuroGym trials),
  so that a freshly built vector env continues bit-identically under the same actions.

Typical use::

    ckpt = to_plain({"net": net.state_dict(), "opt": opt.state_dict(), "gen": gen,
                     "state": state, "envs": env_state(envs)})
    torch.save(ckpt, path)
    ...
    ckpt = torch.load(path, weights_only=True)
    net.load_state_dict(ckpt["net"]); opt.load_state_dict(ckpt["opt"])
    restore_like(gen, ckpt["gen"]); state = restore_like(net.init_state(B), ckpt["state"])
    load_env_state(envs, ckpt["envs"])
"""
from __future__ import annotations

import collections
import types
from typing import Any

import numpy as np
import torch

from ..errors import NeuroprobeError

__all__ = ["to_plain", "restore_like", "env_state", "load_env_state", "is_plain"]

_SCALARS = (bool, int, float, str)


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and isinstance(getattr(type(x), "_fields", None), tuple)


def _child(path: str, key: Any) -> str:
    return f"{path}[{key!r}]"


def _array_to_tensor(a: np.ndarray, path: str) -> torch.Tensor:
    """A copy of ``a`` as a CPU tensor of the same dtype (native byte order)."""
    if a.dtype.byteorder not in ("=", "|"):
        a = a.astype(a.dtype.newbyteorder("="))
    try:
        return torch.from_numpy(np.array(a, copy=True, order="C"))
    except TypeError:
        raise NeuroprobeError(f"{path}: cannot store a numpy array of dtype {a.dtype} in a checkpoint "
                              "(torch has no such dtype)") from None


def _key(k: Any, path: str) -> str | int:
    if isinstance(k, np.integer):
        k = int(k)
    if isinstance(k, str) or (isinstance(k, int) and not isinstance(k, bool)):
        return k
    raise NeuroprobeError(f"{path}: cannot store dict key {k!r} ({type(k)}) in a checkpoint (str or int keys only)")


def to_plain(obj: Any, *, path: str = "state") -> Any:
    """``obj`` as a plain tree (module docstring) that ``torch.load(weights_only=True)`` reads back.

    Tensors are detached (not copied; a Parameter becomes a plain tensor), numpy arrays copied.
    Dict keys must be str or int (int keys are kept: ``torch.optim`` state dicts use them).
    ``path`` names the root in error messages.
    """
    return _to_plain(obj, path, set())


def _to_plain(obj: Any, path: str, active: set[int]) -> Any:
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, np.generic):
        if isinstance(obj, (np.bool_, np.integer, np.floating)):
            return obj.item()
        raise NeuroprobeError(f"{path}: cannot store {type(obj)} in a checkpoint")
    for t in (bool, int, float, str):  # subclasses (IntEnum, ...) as the plain type
        if isinstance(obj, t):
            return t(obj)
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return t if type(t) is torch.Tensor else t.as_subclass(torch.Tensor)
    if isinstance(obj, np.ndarray):
        return _array_to_tensor(obj, path)
    if isinstance(obj, torch.Generator):
        return obj.get_state()
    if isinstance(obj, np.random.Generator):
        return _to_plain(obj.bit_generator.state, path, active)
    if isinstance(obj, np.random.RandomState):
        return _to_plain(obj.get_state(legacy=False), path, active)
    if isinstance(obj, (dict, list, tuple, collections.deque)):
        if id(obj) in active:
            raise NeuroprobeError(f"{path}: cannot store a container that contains itself in a checkpoint")
        active.add(id(obj))
        try:
            if isinstance(obj, dict):
                return {_key(k, path): _to_plain(v, _child(path, k), active) for k, v in obj.items()}
            if _is_namedtuple(obj):
                return {f: _to_plain(getattr(obj, f), _child(path, f), active) for f in obj._fields}
            return [_to_plain(v, _child(path, i), active) for i, v in enumerate(obj)]
        finally:
            active.discard(id(obj))
    raise NeuroprobeError(f"{path}: cannot store {type(obj)} in a checkpoint")


def is_plain(obj: Any) -> bool:
    """True if ``obj`` is already a plain tree (only what ``to_plain`` returns)."""
    if obj is None or type(obj) in (bool, int, float, str):
        return True
    if type(obj) is torch.Tensor:
        return True
    if type(obj) is list:
        return all(is_plain(v) for v in obj)
    if type(obj) is dict:
        return all((type(k) is str or type(k) is int) and is_plain(v) for k, v in obj.items())
    return False


# --------------------------------------------------------------------------- restore_like


def restore_like(template: Any, plain: Any, *, path: str = "state") -> Any:
    """Rebuild ``plain`` (from :func:`to_plain`, possibly through torch.save/torch.load) with the
    types of ``template``, an object of the same structure.

    * NamedTuple: a dict with exactly its fields -> the same NamedTuple type.
    * tuple / list / deque: a list -> the template's type (a deque keeps its ``maxlen``). Items are
      restored against the template's items; when the lengths differ the template must be
      homogeneous (its first item is then the template of every item) or empty (items kept as
      they are).
    * dict: every template key must be present; keys the template lacks are kept in plain form.
    * numpy array / scalar: a tensor / number -> the template's dtype (the shape is the saved one).
    * ``numpy.random.Generator`` / ``RandomState`` / ``torch.Generator``: the template gets the
      saved state in place and is returned.
    * tensor: the saved tensor, moved to the template's device.
    * python scalar: the saved scalar (or None). ``None`` template: ``plain`` unchanged.

    A mismatch raises :class:`~neuroprobe.errors.NeuroprobeError` naming the entry.
    """
    if template is None:
        return plain
    if isinstance(template, torch.Tensor):
        if not isinstance(plain, torch.Tensor):
            _mismatch(path, template, plain)
        return plain.to(device=template.device)
    if isinstance(template, np.generic):
        if isinstance(plain, torch.Tensor) and plain.numel() == 1:
            plain = plain.item()
        if not isinstance(plain, (bool, int, float)):
            _mismatch(path, template, plain)
        return template.dtype.type(plain)
    if isinstance(template, _SCALARS):
        if plain is not None and not isinstance(plain, _SCALARS):
            _mismatch(path, template, plain)
        if isinstance(template, str) != isinstance(plain, str) and plain is not None:
            _mismatch(path, template, plain)
        return plain
    if isinstance(template, np.ndarray):
        if isinstance(plain, torch.Tensor):
            arr = plain.detach().cpu().numpy()
        elif isinstance(plain, (list, int, float, bool)):
            arr = np.asarray(plain)
        else:
            _mismatch(path, template, plain)
        return np.array(arr, dtype=template.dtype, copy=True)
    if isinstance(template, torch.Generator):
        if not isinstance(plain, torch.Tensor):
            _mismatch(path, template, plain)
        template.set_state(plain.detach().cpu().to(torch.uint8))
        return template
    if isinstance(template, np.random.Generator):
        _set_bit_generator_state(template, plain, path)
        return template
    if isinstance(template, np.random.RandomState):
        if not isinstance(plain, dict):
            _mismatch(path, template, plain)
        tmpl = template.get_state(legacy=False)
        try:
            template.set_state(restore_like(tmpl, plain, path=path))
        except (ValueError, TypeError, KeyError) as e:
            raise NeuroprobeError(f"{path}: not a RandomState state ({e})") from None
        return template
    if isinstance(template, dict):
        if not isinstance(plain, dict):
            _mismatch(path, template, plain)
        missing = [k for k in template if k not in plain]
        if missing:
            raise NeuroprobeError(f"{path}: saved state lacks key(s) {missing} (has {list(plain)})")
        out = {k: restore_like(template[k], v, path=_child(path, k)) if k in template else v
               for k, v in plain.items()}
        return collections.OrderedDict(out) if isinstance(template, collections.OrderedDict) else out
    if _is_namedtuple(template):
        if not isinstance(plain, dict):
            _mismatch(path, template, plain)
        fields = list(template._fields)
        if sorted(map(str, plain)) != sorted(fields):
            raise NeuroprobeError(f"{path}: saved fields {list(plain)} do not match {type(template).__name__}"
                                  f"{tuple(fields)}")
        return type(template)(**{f: restore_like(getattr(template, f), plain[f], path=_child(path, f))
                                 for f in fields})
    if isinstance(template, (list, tuple, collections.deque)):
        if not isinstance(plain, (list, tuple)):
            _mismatch(path, template, plain)
        items = _restore_items(list(template), list(plain), path)
        if isinstance(template, collections.deque):
            return collections.deque(items, maxlen=template.maxlen)
        if isinstance(template, tuple):
            return tuple(items) if type(template) is tuple else type(template)(items)
        return items
    raise NeuroprobeError(f"{path}: cannot restore into {type(template)} (no plain form)")


def _restore_items(template: list, plain: list, path: str) -> list:
    if len(template) == len(plain):
        return [restore_like(t, p, path=_child(path, i)) for i, (t, p) in enumerate(zip(template, plain))]
    if not template:
        return list(plain)
    if len({type(t) for t in template}) != 1:
        raise NeuroprobeError(f"{path}: saved {len(plain)} item(s), the template has {len(template)}")
    return [restore_like(template[0], p, path=_child(path, i)) for i, p in enumerate(plain)]


def _set_bit_generator_state(gen: np.random.Generator, plain: Any, path: str) -> None:
    if not isinstance(plain, dict) or "bit_generator" not in plain:
        _mismatch(path, gen, plain)
    name = type(gen.bit_generator).__name__
    if plain["bit_generator"] != name:
        raise NeuroprobeError(f"{path}: saved state is for bit generator {plain['bit_generator']!r}, "
                              f"this generator uses {name!r}")
    state = restore_like(gen.bit_generator.state, plain, path=path)
    try:
        gen.bit_generator.state = state
    except (ValueError, TypeError, KeyError) as e:
        raise NeuroprobeError(f"{path}: not a {name} state ({e})") from None


def _mismatch(path: str, template: Any, plain: Any) -> None:
    raise NeuroprobeError(f"{path}: saved {type(plain).__name__} does not match the template's "
                          f"{type(template).__name__}")


# --------------------------------------------------------------------------- vector environments
#
# Environment attributes change type over a run (CartPole's ``state`` is an array after reset and a
# tuple of numpy floats after a step; ``_decision`` None or int), so a fresh environment is no
# reliable template. Their values are stored *tagged* instead: containers and numpy values become
# ``{"__kind__": ..., ...}`` dicts that say how to rebuild them exactly.

_KIND = "__kind__"
# attributes that construction recreates (or that are not state): never stored, never touched
_SKIP_ATTRS = frozenset({
    "env", "unwrapped", "spec", "metadata", "render_mode", "_saved_kwargs", "_action_space",
    "_observation_space", "_reward_range", "_metadata", "_cached_spec", "screen", "clock", "viewer",
    "window", "renderer", "_top", "env_fns", "envs",
})


def _is_structural(value: Any) -> bool:
    """Values construction recreates: environments, spaces, specs, callables, modules, classes."""
    import gymnasium as gym

    return isinstance(value, (gym.Env, gym.Wrapper, gym.spaces.Space, gym.envs.registration.EnvSpec, type,
                              types.ModuleType)) or callable(value)


class _Unstorable(Exception):
    def __init__(self, path: str, value: Any):
        super().__init__(path)
        self.path, self.value = path, value


def _enc(x: Any, path: str) -> Any:
    if x is None or type(x) in (bool, int, float, str):
        return x
    if isinstance(x, torch.Tensor):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        if x.dtype.hasobject:
            raise _Unstorable(path, x)
        return {_KIND: "ndarray", "dtype": x.dtype.str, "data": _array_to_tensor(x, path)}
    if isinstance(x, (np.bool_, np.integer, np.floating)):
        return {_KIND: "npscalar", "dtype": x.dtype.str, "value": x.item()}
    if isinstance(x, np.random.Generator):
        return {_KIND: "np.Generator", "state": _enc(x.bit_generator.state, path)}
    if isinstance(x, np.random.RandomState):
        return {_KIND: "np.RandomState", "state": _enc(x.get_state(legacy=False), path)}
    if isinstance(x, torch.Generator):
        return {_KIND: "torch.Generator", "state": x.get_state(), "device": str(x.device)}
    if type(x) is list:
        return [_enc(v, _child(path, i)) for i, v in enumerate(x)]
    if type(x) is tuple:
        return {_KIND: "tuple", "items": [_enc(v, _child(path, i)) for i, v in enumerate(x)]}
    if type(x) is collections.deque:
        return {_KIND: "deque", "items": [_enc(v, _child(path, i)) for i, v in enumerate(x)], "maxlen": x.maxlen}
    if type(x) is dict:
        if all(type(k) is str for k in x):
            return {_KIND: "dict", "items": {k: _enc(v, _child(path, k)) for k, v in x.items()}}
        return {_KIND: "dict", "keys": [_enc(k, f"{path}.keys()[{i}]") for i, k in enumerate(x)],
                "values": [_enc(v, _child(path, k)) for k, v in x.items()]}
    raise _Unstorable(path, x)


def _dec(p: Any, existing: Any, path: str) -> Any:
    """Rebuild a tagged value; generators of ``existing`` (the fresh env's value) are reused in place."""
    if p is None or type(p) in (bool, int, float, str):
        return p
    if isinstance(p, torch.Tensor):
        return p.clone()
    if isinstance(p, list):
        return [_dec(v, None, _child(path, i)) for i, v in enumerate(p)]
    if not isinstance(p, dict) or _KIND not in p:
        raise NeuroprobeError(f"{path}: not an environment state entry ({type(p).__name__})")
    kind = p[_KIND]
    try:
        if kind == "ndarray":
            return np.array(p["data"].numpy(), dtype=np.dtype(p["dtype"]), copy=True)
        if kind == "npscalar":
            return np.dtype(p["dtype"]).type(p["value"])
        if kind == "tuple":
            return tuple(_dec(v, None, _child(path, i)) for i, v in enumerate(p["items"]))
        if kind == "deque":
            return collections.deque((_dec(v, None, _child(path, i)) for i, v in enumerate(p["items"])),
                                     maxlen=p["maxlen"])
        if kind == "dict":
            if "items" in p:
                return {k: _dec(v, None, _child(path, k)) for k, v in p["items"].items()}
            keys = [_dec(k, None, path) for k in p["keys"]]
            return {k: _dec(v, None, _child(path, k)) for k, v in zip(keys, p["values"])}
        if kind == "np.Generator":
            state = _dec(p["state"], None, path)
            name = state["bit_generator"]
            if isinstance(existing, np.random.Generator) and type(existing.bit_generator).__name__ == name:
                gen = existing
            else:
                bit_gen = getattr(np.random, name, None)
                if not (isinstance(bit_gen, type) and issubclass(bit_gen, np.random.BitGenerator)):
                    raise NeuroprobeError(f"{path}: unknown numpy bit generator {name!r}")
                gen = np.random.Generator(bit_gen())
            gen.bit_generator.state = state
            return gen
        if kind == "np.RandomState":
            rs = existing if isinstance(existing, np.random.RandomState) else np.random.RandomState()
            rs.set_state(_dec(p["state"], None, path))
            return rs
        if kind == "torch.Generator":
            gen = existing if isinstance(existing, torch.Generator) else torch.Generator(device=p["device"])
            gen.set_state(p["state"])
            return gen
    except NeuroprobeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as e:
        raise NeuroprobeError(f"{path}: malformed {kind!r} entry ({type(e).__name__}: {e})") from None
    raise NeuroprobeError(f"{path}: unknown entry kind {kind!r}")


def _space_generators(space: Any) -> list:
    """The RNGs of a space and its subspaces (Tuple/Dict/…), in a fixed order."""
    out = [space.__dict__.get("_np_random")]
    subs = getattr(space, "spaces", None)
    if isinstance(subs, dict):
        for k in subs:
            out += _space_generators(subs[k])
    elif isinstance(subs, (list, tuple)):
        for s in subs:
            out += _space_generators(s)
    return out


def _set_space_generators(space: Any, saved: list, path: str) -> list:
    """Restore what :func:`_space_generators` listed; returns the unused rest of ``saved``."""
    if not saved:
        raise NeuroprobeError(f"{path}: saved state lacks the space's random generator")
    space._np_random = _dec(saved[0], space.__dict__.get("_np_random"), path)
    rest = saved[1:]
    subs = getattr(space, "spaces", None)
    if isinstance(subs, dict):
        for k in subs:
            rest = _set_space_generators(subs[k], rest, _child(path, k))
    elif isinstance(subs, (list, tuple)):
        for i, s in enumerate(subs):
            rest = _set_space_generators(s, rest, _child(path, i))
    return rest


def _enc_space(space: Any, path: str) -> list:
    return [_enc(g, path) for g in _space_generators(space)]


def _layers(env: Any) -> list:
    out, seen = [], set()
    while env is not None and id(env) not in seen:
        seen.add(id(env))
        out.append(env)
        env = env.__dict__.get("env")
    return out


def _layer_state(layer: Any, path: str) -> dict:
    import gymnasium as gym

    attrs, spaces = {}, {}
    for name, value in vars(layer).items():
        if name in _SKIP_ATTRS:
            continue
        if isinstance(value, gym.spaces.Space):
            spaces[name] = _enc_space(value, f"{path}.{name}")
            continue
        if _is_structural(value):
            continue
        try:
            attrs[name] = _enc(value, f"{path}.{name}")
        except _Unstorable as e:
            raise NeuroprobeError(f"{e.path}: cannot store {type(e.value)} in a checkpoint (environment "
                                  f"attribute of {type(layer).__name__})") from None
    return {"class": type(layer).__name__, "attrs": attrs, "spaces": spaces}


def _load_layer(layer: Any, saved: dict, path: str) -> None:
    import gymnasium as gym

    if saved.get("class") != type(layer).__name__:
        raise NeuroprobeError(f"{path}: saved state is for a {saved.get('class')!r} layer, this environment has "
                              f"{type(layer).__name__!r} (build the vector env with the same task and settings)")
    cur = vars(layer)
    attrs, spaces = saved["attrs"], saved["spaces"]
    for name, value in attrs.items():
        setattr(layer, name, _dec(value, cur.get(name), f"{path}.{name}"))
    for name in [n for n, v in cur.items() if n not in attrs and n not in _SKIP_ATTRS
                 and not isinstance(v, gym.spaces.Space) and not _is_structural(v)]:
        delattr(layer, name)  # created after the checkpoint was taken (e.g. by a reset)
    for name, gens in spaces.items():
        space = cur.get(name)
        if not isinstance(space, gym.spaces.Space):
            raise NeuroprobeError(f"{path}.{name}: saved a space's random generator but there is no space here")
        if _set_space_generators(space, list(gens), f"{path}.{name}"):
            raise NeuroprobeError(f"{path}.{name}: saved more space generators than the space has")


_VEC_SPACES = ("action_space", "observation_space", "single_action_space", "single_observation_space")


def env_state(vector_env: Any) -> dict:
    """The state of a ``SyncVectorEnv`` (Gymnasium 0.29) as a plain tree.

    Per sub-environment, for every layer of its wrapper chain (outermost first): the plain-storable
    entries of the layer's ``__dict__`` (arrays, numbers, tuples, dicts, deques, RNG states), with
    structural attributes (the wrapped env, spaces, spec, metadata, render objects, callables)
    left to construction, plus the RNG states of the spaces it holds. Anything else raises
    :class:`~neuroprobe.errors.NeuroprobeError` naming it, rather than being silently lost.

    The vector env itself keeps nothing between steps (it auto-resets inside ``step``); only its
    spaces' RNG states are stored (``action_space.sample()``).
    """
    envs = getattr(vector_env, "envs", None)
    if not isinstance(envs, list):
        raise NeuroprobeError(f"env_state needs a gymnasium SyncVectorEnv (with .envs), got {type(vector_env)}")
    out = {"num_envs": len(envs), "spaces": {}, "envs": []}
    for name in _VEC_SPACES:
        space = vector_env.__dict__.get(name)
        if space is not None:
            out["spaces"][name] = _enc_space(space, f"venv.{name}")
    for i, env in enumerate(envs):
        out["envs"].append([_layer_state(layer, f"envs[{i}].{type(layer).__name__}") for layer in _layers(env)])
    return out


def load_env_state(vector_env: Any, state: dict) -> None:
    """Restore :func:`env_state` into ``vector_env``, built like the saved one (same task, number of
    environments, seed and reward delay), typically fresh. Afterwards stepping it with the same
    actions gives the same observations, rewards and flags as the saved one would have."""
    envs = getattr(vector_env, "envs", None)
    if not isinstance(envs, list):
        raise NeuroprobeError(f"load_env_state needs a gymnasium SyncVectorEnv (with .envs), got {type(vector_env)}")
    if not isinstance(state, dict) or not {"num_envs", "envs", "spaces"} <= set(state):
        raise NeuroprobeError("environment state must be a dict from env_state() (keys num_envs, envs, spaces)")
    if state["num_envs"] != len(envs) or len(state["envs"]) != len(envs):
        raise NeuroprobeError(f"environment state holds {state['num_envs']} environment(s), this vector env has "
                              f"{len(envs)}")
    for name, gens in state["spaces"].items():
        space = vector_env.__dict__.get(name)
        if space is None:
            raise NeuroprobeError(f"venv.{name}: no such space in this vector env")
        if _set_space_generators(space, list(gens), f"venv.{name}"):
            raise NeuroprobeError(f"venv.{name}: saved more space generators than the space has")
    for i, (env, saved) in enumerate(zip(envs, state["envs"])):
        layers = _layers(env)
        if len(saved) != len(layers):
            raise NeuroprobeError(f"envs[{i}]: saved {len(saved)} wrapper layer(s) "
                                  f"{[s.get('class') for s in saved]}, this environment has {len(layers)} "
                                  f"{[type(l).__name__ for l in layers]}")
        for layer, s in zip(layers, saved):
            _load_layer(layer, s, f"envs[{i}].{type(layer).__name__}")
