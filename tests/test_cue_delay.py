"""CueDelay-v0: the episode timeline by hand, seeding, reward of correct and wrong decisions,
actions outside the go step ignored, kwargs and config wiring, bad kwargs as ConfigError."""
from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from neuroprobe.config import validate_experiment
from neuroprobe.config.tasks import GymTaskConfig
from neuroprobe.errors import ConfigError
from neuroprobe.tasks import TASKS, CueDelayEnv, make_env, make_vector_env, task_info


def _episode(env, policy, seed=None):
    """Run one episode (reset with ``seed``) taking policy(t, cue) at step t; returns obs, rewards, flags, infos."""
    obs, info = env.reset(seed=seed)
    cue = info["cue"]
    observations, rewards, terms, infos = [obs], [], [], [info]
    t = 0
    while True:
        obs, r, term, trunc, info = env.step(policy(t, cue))
        assert not trunc
        observations.append(obs)
        rewards.append(r)
        terms.append(term)
        infos.append(info)
        t += 1
        if term:
            return np.array(observations), np.array(rewards), np.array(terms), infos


def test_timeline_by_hand():
    C, L, D, nc, nd = 2, 3, 4, 3, 5
    env = CueDelayEnv(n_cues=nc, cue_steps=C, delay=L, n_distractors=nd, reward_delay=D, distractor_prob=0.5)
    obs, rewards, terms, infos = _episode(env, lambda t, c: c, seed=7)
    cue = infos[0]["cue"]
    n = C + L + 1 + D
    assert env.episode_length == n and len(rewards) == n and obs.shape == (n + 1, nc + nd + 1)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs[0])
    cue_ch, dis, go = obs[:, :nc], obs[:, nc:nc + nd], obs[:, -1]
    onehot = np.eye(nc, dtype=np.float32)[cue]
    assert (cue_ch == onehot).all()                              # cue_visible="always": on at every step
    # cue phase t = 0..C-1: cue only, no distractors, no go
    assert (dis[:C] == 0).all() and (go[:C] == 0).all()
    # delay t = C..C+L-1: random binary distractors, no go
    assert set(np.unique(dis[C:C + L])) <= {0.0, 1.0} and dis[C:C + L].any() and (go[C:C + L] == 0).all()
    # go step t = G: go flag only
    G = C + L
    assert go[G] == 1 and (dis[G] == 0).all() and go.sum() == 1
    # feedback t = G+1..G+D: distractors continue
    assert dis[G + 1:G + D + 1].any() and (go[G + 1:] == 0).all()
    # reward exactly D steps after the decisive action (step index G), which ends the episode
    assert rewards[G + D] == 1.0 and (rewards[:G + D] == 0).all()
    assert terms[-1] and not terms[:-1].any()
    assert [i["phase"] for i in infos[1:]] == ["cue"] * C + ["delay"] * L + ["go"] + ["feedback"] * D
    assert infos[-1]["correct"] is True and infos[-1]["decision"] == cue
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_reward_delay_zero_and_cue_period_visibility():
    env = CueDelayEnv(cue_steps=3, delay=2, reward_delay=0, cue_visible="cue_period")
    obs, rewards, terms, _ = _episode(env, lambda t, c: c, seed=1)
    assert len(rewards) == 3 + 2 + 1 and rewards[-1] == 1.0 and terms[-1]
    assert obs[:3, :2].sum() == 3 and (obs[3:, :2] == 0).all()   # cue visible only in the cue period
    assert obs[5, -1] == 1


def test_only_the_go_action_matters():
    env = CueDelayEnv(delay=2, reward_delay=5)
    G = env.go_step
    for seed in range(6):
        # right only at the go step, wrong everywhere else; and the reverse
        _, r1, _, i1 = _episode(env, lambda t, c: c if t == G else 1 - c, seed=seed)
        _, r2, _, i2 = _episode(env, lambda t, c: 1 - c if t == G else c, seed=seed)
        assert r1.sum() == 1.0 and r1[-1] == 1.0 and i1[-1]["correct"]
        assert r2.sum() == -1.0 and r2[-1] == -1.0 and not i2[-1]["correct"]


def test_wrong_reward_configurable():
    env = CueDelayEnv(wrong_reward=0.0, correct_reward=2.0, reward_delay=1)
    _, r, _, _ = _episode(env, lambda t, c: 1 - c, seed=0)
    assert r.sum() == 0.0
    _, r, _, _ = _episode(env, lambda t, c: c, seed=0)
    assert r[-1] == 2.0


def test_seeding_determinism():
    def run(seed):
        env = make_env("CueDelay-v0", seed=seed)
        out = []
        for _ in range(4):  # later episodes continue the seeded stream
            obs, rewards, _, infos = _episode(env, lambda t, c: 0)
            out.append((obs, rewards, infos[0]["cue"]))
        return out

    a, b, c = run(3), run(3), run(4)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c))
    cues = {ep[2] for s in range(10) for ep in run(s)}
    assert cues == {0, 1}


def test_registered_with_defaults_and_kwargs():
    assert "CueDelay-v0" in TASKS and "CueDelay-v0" in get_args(GymTaskConfig.model_fields["name"].annotation)
    info = task_info("CueDelay-v0")
    assert (info["obs_dim"], info["n_actions"], info["max_episode_steps"]) == (7, 2, 18)
    env = make_env("CueDelay-v0", seed=0)
    u = env.unwrapped
    assert isinstance(u, CueDelayEnv)
    assert (u.n_cues, u.cue_steps, u.delay, u.n_distractors, u.reward_delay, u.cue_visible) == (2, 2, 5, 4, 10, "always")
    obs, _ = env.reset()
    assert obs.shape == (info["obs_dim"],) and env.action_space.n == info["n_actions"]
    obs, rewards, _, infos = _episode(env, lambda t, c: 0)
    assert len(rewards) == 18 and infos[-1]["episode"]["l"] == 18
    # kwargs pass through; an int reward_delay is the task's own D (no wrapper)
    env = make_env("CueDelay-v0", seed=0, n_cues=4, delay=7, n_distractors=3, cue_visible="cue_period", reward_delay=100)
    u = env.unwrapped
    assert (u.n_cues, u.delay, u.reward_delay, u.cue_visible, u.obs_dim) == (4, 7, 100, "cue_period", 8)
    obs, rewards, _, _ = _episode(env, lambda t, c: 0)
    assert len(rewards) == 2 + 7 + 1 + 100 and (rewards[:-1] == 0).all() and rewards[-1] != 0
    venv = make_vector_env("CueDelay-v0", 3, seed=0, reward_delay=5)
    assert venv.reset()[0].shape == (3, 7)


@pytest.mark.parametrize("kwargs, words", [
    ({"n_cues": 1}, "n_cues"), ({"cue_steps": 0}, "cue_steps"), ({"delay": -1}, "delay"),
    ({"n_distractors": 2.5}, "n_distractors"), ({"cue_visible": "never"}, "cue_visible"),
    ({"distractor_prob": 1.5}, "distractor_prob"), ({"wrong_reward": "bad"}, "wrong_reward"),
    ({"reward_delay": -3}, "reward_delay"), ({"reward_delay": True}, "reward_delay"), ({"colour": 1}, "colour"),
])
def test_bad_kwargs_raise_config_error(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        make_env("CueDelay-v0", **kwargs)


def test_bad_action_raises_config_error():
    env = CueDelayEnv()
    env.reset(seed=0)
    with pytest.raises(ConfigError, match="action"):
        env.step(2)


def _cfg(sizes, **task):
    return {"model": {"sizes": sizes}, "task": {"name": "CueDelay-v0", **task}, "rule": {"name": "fg", "lr": 0.01}}


def test_config_model_size_check():
    exp = validate_experiment(_cfg([7, 16, 2], reward_delay=20))
    assert exp.family == "rl" and exp.task.name == "CueDelay-v0" and exp.task.reward_delay == 20
    with pytest.raises(ConfigError, match=r"'model.sizes' = \[4, 16, 2\] does not fit task 'CueDelay-v0'.*\(7, 2\)"):
        validate_experiment(_cfg([4, 16, 2]))


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    check_env(CueDelayEnv(cue_visible="cue_period"), skip_render_check=True)
