"""The reinforcement-learning tasks of the NRL paper, as Gymnasium environments.

Tasks: ``CartPole-v1`` and ``Acrobot-v1`` (Gymnasium, delayed reward in the paper's sense: the
learner uses the episode return), ``Reaching1D-v0`` (NeuroGym, immediate reward) and
``CueDelay-v0`` (neuroprobe's own cue–delay–action task with distractors, whose reward arrives
``reward_delay`` steps after the decisive action; :mod:`neuroprobe.tasks.cue_delay`).

NeuroGym tasks never end by themselves; as in the NRL authors' setup an episode ("trial" in the
paper) of ``Reaching1D-v0`` is a fixed 300 environment steps at ``dt = 10`` ms (a TimeLimit
truncation), and its return is the sum of the 300 rewards.

Reading a vector env (``make_vector_env``; Gymnasium 0.29 ``SyncVectorEnv``, which auto-resets):
after ``obs, reward, terminated, truncated, info = venv.step(actions)``, environment ``i``
finished an episode on this step iff ``terminated[i] or truncated[i]``; then ``obs[i]`` is
already the first observation of its next episode, and
``info["final_info"][i]["episode"]["r"]`` / ``["l"]`` are the finished episode's return and
length (``info["final_observation"][i]`` its last observation). :func:`completed_episodes`
does this bookkeeping. ``reward[i]`` is the *delivered* reward (after any reward delay); the
undelayed reward is ``info["true_reward"]`` (for an env that just finished it sits in its
``final_info``; :func:`true_rewards` merges the two).

Seeding: environment ``i`` of a vector env built with ``seed`` uses ``seed + i`` on its first
reset (the same scheme as ``SyncVectorEnv.reset(seed=seed)``), and later auto-resets continue
its random stream, so the same seed gives bit-identical trajectories under the same actions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from neuroprobe.errors import ConfigError
from neuroprobe.tasks.wrappers import DelayedReward, EpisodeStatistics

__all__ = [
    "TaskSpec",
    "TASKS",
    "task_info",
    "make_env",
    "make_vector_env",
    "completed_episodes",
    "true_rewards",
]


@dataclass(frozen=True)
class TaskSpec:
    """One RL task: where it comes from, its sizes and the arguments it is made with.

    ``make_kwargs`` are passed to ``gymnasium.make`` (the caller's kwargs override them);
    ``max_episode_steps`` is the episode length cap (TimeLimit truncation).
    """

    name: str
    source: str  # "gymnasium", "neurogym" or "neuroprobe"
    obs_dim: int
    n_actions: int
    max_episode_steps: int
    make_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


TASKS: dict[str, TaskSpec] = {
    "CartPole-v1": TaskSpec(
        "CartPole-v1", "gymnasium", obs_dim=4, n_actions=2, max_episode_steps=500,
        description="balance a pole; +1 per step until failure or 500 steps",
    ),
    "Acrobot-v1": TaskSpec(
        "Acrobot-v1", "gymnasium", obs_dim=6, n_actions=3, max_episode_steps=500,
        description="swing a two-link arm up; -1 per step until success or 500 steps",
    ),
    "Reaching1D-v0": TaskSpec(
        "Reaching1D-v0", "neurogym", obs_dim=32, n_actions=3, max_episode_steps=300,
        make_kwargs={"dt": 10},  # ms, as in the NRL authors' code
        description="reach a target on a 1D ring (NeuroGym); reward in [-0.1, 1] per step, "
        "0 during fixation; an episode is 300 steps of 10 ms",
    ),
    # sizes and length at the default kwargs (n_cues=2, cue_steps=2, delay=5, n_distractors=4,
    # reward_delay=10): obs = 2 cue + 4 distractor + 1 go channels; 2 + 5 + 1 + 10 steps
    "CueDelay-v0": TaskSpec(
        "CueDelay-v0", "neuroprobe", obs_dim=7, n_actions=2, max_episode_steps=18,
        description="cue, delay with distractors, go; +1/-1 for the action at go (= cue index), "
        "delivered reward_delay steps later, which ends the episode",
    ),
}

# neuroprobe's own tasks, made through gymnasium.make like the others
if "CueDelay-v0" not in gym.registry:
    gym.register(id="CueDelay-v0", entry_point="neuroprobe.tasks.cue_delay:CueDelayEnv")


def _spec(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown task {name!r}; allowed tasks: {sorted(TASKS)}") from None


def task_info(name: str) -> dict[str, Any]:
    """Sizes of a task: ``{"obs_dim", "n_actions", "kind": "rl", "max_episode_steps", "source"}``."""
    spec = _spec(name)
    return {
        "obs_dim": spec.obs_dim,
        "n_actions": spec.n_actions,
        "kind": "rl",
        "max_episode_steps": spec.max_episode_steps,
        "source": spec.source,
    }


class _SeedOnFirstReset(gym.Wrapper):
    """Seed the environment with ``seed`` on its first reset unless the caller passes a seed.

    Also seeds NeuroGym's own generator: NeuroGym envs draw trials from ``self.rng`` (a
    ``numpy.random.RandomState``), which ``reset(seed=...)`` does not touch.
    """

    def __init__(self, env: gym.Env, seed: int | None):
        super().__init__(env)
        self._seed = seed
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None and not self._seeded:
            seed = self._seed
        if seed is not None:
            self._seeded = True
            self.env.action_space.seed(seed)
            if callable(getattr(self.env.unwrapped, "seed", None)):  # NeuroGym BaseEnv.seed(seed)
                self.env.unwrapped.seed(seed)
        return self.env.reset(seed=seed, options=options)


def _rk4_float64(derivs, y0, t):
    """Gymnasium 0.29's ``acrobot.rk4``, same arithmetic, without ``np.float_`` (gone in NumPy 2)."""
    y = np.array(y0, dtype=np.float64)
    for i in range(len(t) - 1):
        dt = t[i + 1] - t[i]
        dt2 = dt / 2.0
        k1 = np.asarray(derivs(y))
        k2 = np.asarray(derivs(y + dt2 * k1))
        k3 = np.asarray(derivs(y + dt2 * k2))
        k4 = np.asarray(derivs(y + dt * k3))
        y = y + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y[:4]  # the state; the appended action component is dropped, as in Gymnasium


def _make_acrobot_numpy2_safe() -> None:
    # gymnasium 0.29.1's Acrobot-v1 calls np.float_ in its integrator and so fails on its first
    # step under NumPy >= 2 (neurogym 2.3 pins gymnasium 0.29). Swap in an equivalent integrator.
    if hasattr(np, "float_"):
        return
    from gymnasium.envs.classic_control import acrobot

    acrobot.rk4 = _rk4_float64


def _reward_delay_kwargs(reward_delay: str | int | None) -> dict[str, Any] | None:
    """DelayedReward arguments for a ``reward_delay`` setting (None: no wrapper)."""
    if reward_delay is None:
        return None
    if reward_delay == "episode_end":
        return {"mode": "episode_end"}
    if isinstance(reward_delay, (int, np.integer)) and not isinstance(reward_delay, bool) and reward_delay >= 0:
        return {"mode": "steps", "delay": int(reward_delay)}
    raise ConfigError(
        f"reward_delay={reward_delay!r} is not allowed; use None, 'episode_end' or a "
        "non-negative number of steps"
    )


def make_env(
    name: str,
    *,
    reward_delay: str | int | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> gym.Env:
    """Make one environment of task ``name`` (see :data:`TASKS`).

    ``kwargs`` go to ``gymnasium.make`` and override the task's defaults (e.g. ``dt=`` for
    Reaching1D, ``max_episode_steps=``). ``reward_delay``: ``None`` (reward as the task gives
    it), ``"episode_end"`` (whole return on the last step) or an int ``D`` (rewards ``D`` steps
    late); see :class:`~neuroprobe.tasks.wrappers.DelayedReward`. ``seed`` is used on the first
    reset if that reset passes none.

    Wrapper order (inner to outer): task, TimeLimit, DelayedReward, EpisodeStatistics
    (``info["episode"] = {"r", "l"}`` on the last step), seeding. Observations are raw.

    ``CueDelay-v0`` (source "neuroprobe"): its kwargs (``n_cues``, ``cue_steps``, ``delay``,
    ``n_distractors``, ``correct_reward``, ``wrong_reward``, ``cue_visible``, ``distractor_prob``)
    go to :class:`~neuroprobe.tasks.cue_delay.CueDelayEnv`; an int ``reward_delay`` is the task's own
    delay D between the decisive action and the reward (no wrapper: the episode ends when the
    reward arrives, so a wrapper would deliver it on the same step anyway), ``None`` keeps the
    task default (10). No TimeLimit unless ``max_episode_steps`` is given (every episode ends by
    itself after cue_steps + delay + 1 + reward_delay steps).
    """
    spec = _spec(name)
    delay_kwargs = _reward_delay_kwargs(reward_delay)
    if spec.source == "neuroprobe":
        if delay_kwargs is not None and delay_kwargs["mode"] == "steps":
            kwargs = {**kwargs, "reward_delay": delay_kwargs["delay"]}
            delay_kwargs = None
        make_kwargs = {**spec.make_kwargs, **kwargs}
    else:
        make_kwargs = {**spec.make_kwargs, "max_episode_steps": spec.max_episode_steps, **kwargs}
    if spec.source == "neurogym":
        import neurogym  # noqa: F401  (registers the NeuroGym ids with Gymnasium; slow import)

        # As neurogym.make does: Gymnasium's env checker rejects some NeuroGym observation/space pairs.
        make_kwargs.setdefault("disable_env_checker", True)
    if name == "Acrobot-v1":
        _make_acrobot_numpy2_safe()
    with warnings.catch_warnings():
        # NeuroGym metadata lacks `render_modes`; Gymnasium warns about it on every make.
        warnings.filterwarnings("ignore", message=".*render_modes.*")
        try:
            env = gym.make(name, **make_kwargs)
        except TypeError as exc:
            raise ConfigError(f"task {name!r}: bad keyword argument for gymnasium.make: {exc}") from None
    if delay_kwargs is not None:
        env = DelayedReward(env, **delay_kwargs)
    env = EpisodeStatistics(env)
    return _SeedOnFirstReset(env, seed)


def make_vector_env(
    name: str,
    num_envs: int,
    seed: int,
    reward_delay: str | int | None = None,
    **kwargs: Any,
) -> gym.vector.SyncVectorEnv:
    """``num_envs`` independent copies of task ``name`` in one ``SyncVectorEnv`` (auto-reset).

    Copy ``i`` is seeded with ``seed + i`` on the first ``venv.reset()`` (with or without
    ``seed=seed``); ``venv.action_space`` is seeded with ``seed``. See the module docstring for
    how finished episodes' returns and termination flags are read.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ConfigError(f"num_envs={num_envs!r} must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed={seed!r} must be an integer")
    seed = int(seed)
    _spec(name)
    _reward_delay_kwargs(reward_delay)  # fail before building anything
    fns = [
        (lambda i=i: make_env(name, reward_delay=reward_delay, seed=seed + i, **kwargs))
        for i in range(num_envs)
    ]
    venv = gym.vector.SyncVectorEnv(fns)
    venv.action_space.seed(seed)
    return venv


def completed_episodes(info: dict) -> list[tuple[int, float, int]]:
    """``[(env_index, return, length), ...]`` for the episodes that ended on this vector step."""
    if "final_info" not in info:
        return []
    out = []
    for i in np.flatnonzero(info["_final_info"]):
        episode = info["final_info"][i]["episode"]
        out.append((int(i), float(episode["r"]), int(episode["l"])))
    return out


def true_rewards(info: dict, num_envs: int) -> np.ndarray:
    """Undelayed rewards of this vector step, float64 of shape ``(num_envs,)``.

    Only meaningful when the env was built with a ``reward_delay`` (else use ``reward``).
    """
    out = np.zeros(num_envs, dtype=np.float64)
    if "true_reward" in info:
        mask = info["_true_reward"]
        out[mask] = info["true_reward"][mask]
    if "final_info" in info:
        for i in np.flatnonzero(info["_final_info"]):
            out[i] = info["final_info"][i]["true_reward"]
    return out
