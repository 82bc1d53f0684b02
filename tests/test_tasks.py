"""Tests for neuroprobe.tasks: RL envs, reward-delay wrappers, delayed-label streams."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroprobe.errors import ConfigError
from neuroprobe.tasks import (
    IGNORE_INDEX,
    TASKS,
    DelayedReward,
    DigitsStream,
    completed_episodes,
    load_npz_dataset,
    make_env,
    make_vector_env,
    task_info,
    true_rewards,
)

# --------------------------------------------------------------------------- RL environments


@pytest.mark.parametrize(
    "name, obs_dim, n_actions",
    [("CartPole-v1", 4, 2), ("Acrobot-v1", 6, 3), ("Reaching1D-v0", 32, 3)],
)
def test_env_dims(name, obs_dim, n_actions):
    info = task_info(name)
    assert (info["obs_dim"], info["n_actions"], info["kind"]) == (obs_dim, n_actions, "rl")
    env = make_env(name, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (obs_dim,)
    assert env.action_space.n == n_actions
    obs, reward, terminated, truncated, _ = env.step(0)  # Acrobot's first step fails on NumPy 2 unpatched
    assert obs.shape == (obs_dim,) and np.isfinite(reward)
    env.close()


def _rollout(venv, actions, seed=None):
    obs, _ = venv.reset() if seed is None else venv.reset(seed=seed)
    observations, rewards, dones = [obs], [], []
    for a in actions:
        obs, r, term, trunc, _ = venv.step(a)
        observations.append(obs)
        rewards.append(r)
        dones.append(term | trunc)
    return np.stack(observations), np.stack(rewards), np.stack(dones)


@pytest.mark.parametrize("name, steps", [("CartPole-v1", 120), ("Acrobot-v1", 30), ("Reaching1D-v0", 320)])
def test_vector_env_same_seed_same_trajectories(name, steps):
    num_envs, n_actions = 3, TASKS[name].n_actions
    actions = np.random.default_rng(0).integers(0, n_actions, size=(steps, num_envs))
    a = _rollout(make_vector_env(name, num_envs, seed=7), actions)
    b = _rollout(make_vector_env(name, num_envs, seed=7), actions)
    c = _rollout(make_vector_env(name, num_envs, seed=7), actions, seed=7)  # explicit reset seed
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    d = _rollout(make_vector_env(name, num_envs, seed=8), actions)
    assert not np.array_equal(a[0], d[0])
    # the copies are independent trajectories, not clones
    assert not np.array_equal(a[0][:, 0], a[0][:, 1])


def test_vector_env_episode_returns_cartpole():
    venv = make_vector_env("CartPole-v1", 2, seed=0)
    venv.reset()
    lengths = np.zeros(2, dtype=int)
    finished = []
    for _ in range(60):  # always pushing left ends an episode in ~10 steps
        _, reward, term, trunc, info = venv.step(np.zeros(2, dtype=int))
        lengths += 1
        eps = completed_episodes(info)
        assert sorted(i for i, _, _ in eps) == list(np.flatnonzero(term | trunc))
        for i, ret, length in eps:
            assert length == lengths[i] and ret == float(length)  # +1 per step
            finished.append(i)
            lengths[i] = 0
    assert set(finished) == {0, 1}


def test_reaching_episode_is_300_steps_with_summed_return():
    venv = make_vector_env("Reaching1D-v0", 2, seed=3)
    venv.reset()
    total = np.zeros(2)
    for t in range(300):
        _, reward, term, trunc, info = venv.step(np.full(2, t % 3))
        total += reward
        assert np.all(reward >= -0.1) and np.all(reward <= 1.0)
        if t < 299:
            assert not np.any(term | trunc)
    assert np.all(trunc) and not np.any(term)
    eps = completed_episodes(info)
    assert [i for i, _, _ in eps] == [0, 1]
    for i, ret, length in eps:
        assert length == 300 and ret == pytest.approx(total[i], abs=1e-9)


def test_vector_env_reward_delay_episode_end():
    venv = make_vector_env("CartPole-v1", 2, seed=1, reward_delay="episode_end")
    venv.reset()
    for _ in range(60):
        _, reward, term, trunc, info = venv.step(np.zeros(2, dtype=int))
        done = term | trunc
        assert np.all(reward[~done] == 0)
        np.testing.assert_array_equal(true_rewards(info, 2), np.ones(2))
        for i, ret, length in completed_episodes(info):
            assert reward[i] == ret == float(length)


# --------------------------------------------------------------------------- DelayedReward


class FixedRewardEnv(gym.Env):
    """Deterministic env: step t (0-based) of an episode pays rewards[t]; terminates after the list."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, rewards):
        self.rewards = list(rewards)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        r = self.rewards[self.t]
        self.t += 1
        return np.full(1, self.t, np.float32), r, self.t == len(self.rewards), False, {}


def _delivered(env, n=None):
    env.reset()
    out, true = [], []
    for _ in range(n or 10**6):
        _, r, term, trunc, info = env.step(0)
        out.append(r)
        true.append(info["true_reward"])
        if term or trunc:
            break
    return out, true


REWARDS = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_delayed_reward_episode_end_hand_computed():
    out, true = _delivered(DelayedReward(FixedRewardEnv(REWARDS), mode="episode_end"))
    assert out == [0, 0, 0, 0, 0, 21.0]
    assert true == REWARDS


@pytest.mark.parametrize(
    "delay, expected",
    [
        (0, [1, 2, 3, 4, 5, 6]),
        (2, [0, 0, 1, 2, 3, 4 + 5 + 6]),
        (5, [0, 0, 0, 0, 0, 1 + 2 + 3 + 4 + 5 + 6]),
        (9, [0, 0, 0, 0, 0, 21]),
    ],
)
def test_delayed_reward_steps_hand_computed(delay, expected):
    out, true = _delivered(DelayedReward(FixedRewardEnv(REWARDS), mode="steps", delay=delay))
    assert out == [float(v) for v in expected]
    assert true == REWARDS


def test_delayed_reward_truncation_delivers_pending():
    env = DelayedReward(gym.wrappers.TimeLimit(FixedRewardEnv(REWARDS), max_episode_steps=4), "steps", 3)
    out, _ = _delivered(env)
    assert out == [0.0, 0.0, 0.0, 1.0 + 2 + 3 + 4]


def test_delayed_reward_reset_clears_pending():
    env = DelayedReward(FixedRewardEnv(REWARDS), mode="steps", delay=2)
    _delivered(env, n=4)  # leaves rewards 3 and 4 pending
    out, _ = _delivered(env)
    assert out == [0.0, 0.0, 1.0, 2.0, 3.0, 15.0]
    env = DelayedReward(FixedRewardEnv(REWARDS), mode="episode_end")
    _delivered(env, n=3)
    assert _delivered(env)[0][-1] == 21.0


@pytest.mark.parametrize("mode, delay", [("episode_end", 0)] + [("steps", d) for d in range(9)])
def test_delayed_reward_preserves_return(mode, delay):
    rewards = np.random.default_rng(delay).normal(size=7).tolist()
    out, true = _delivered(DelayedReward(FixedRewardEnv(rewards), mode=mode, delay=delay))
    assert sum(out) == pytest.approx(sum(rewards), abs=1e-12)
    assert true == rewards


# --------------------------------------------------------------------------- errors


def test_unknown_task_lists_allowed_names():
    with pytest.raises(ConfigError, match="unknown task 'Pong-v5'.*CartPole-v1"):
        make_env("Pong-v5")
    with pytest.raises(ConfigError, match="Reaching1D-v0"):
        task_info("cartpole")
    with pytest.raises(ConfigError, match="Acrobot-v1"):
        make_vector_env("nope", 2, seed=0)


def test_bad_reward_delay_settings():
    with pytest.raises(ConfigError, match="mode='later'.*episode_end"):
        DelayedReward(FixedRewardEnv(REWARDS), mode="later")
    with pytest.raises(ConfigError, match="delay=-1"):
        DelayedReward(FixedRewardEnv(REWARDS), mode="steps", delay=-1)
    with pytest.raises(ConfigError, match="delay=3"):
        DelayedReward(FixedRewardEnv(REWARDS), mode="episode_end", delay=3)
    with pytest.raises(ConfigError, match="reward_delay='soon'"):
        make_vector_env("CartPole-v1", 2, seed=0, reward_delay="soon")
    with pytest.raises(ConfigError, match="num_envs=0"):
        make_vector_env("CartPole-v1", 0, seed=0)


def test_npz_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.npz"
    with pytest.raises(ConfigError, match="absent.npz"):
        load_npz_dataset(missing)
    with pytest.raises(ConfigError, match="absent.npz"):
        DigitsStream(4, dataset=missing)
    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, x=np.zeros((4, 3)))
    with pytest.raises(ConfigError, match=r"no_y.npz.*\['y'\]"):
        load_npz_dataset(no_y)
    bad_shape = tmp_path / "bad_shape.npz"
    np.savez(bad_shape, x=np.zeros((4, 3)), y=np.zeros(5))
    with pytest.raises(ConfigError, match="bad_shape.npz"):
        load_npz_dataset(bad_shape)
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    with pytest.raises(ConfigError, match="text.npz"):
        load_npz_dataset(not_npz)


def test_stream_bad_arguments():
    with pytest.raises(ConfigError, match="split='val'"):
        DigitsStream(4, split="val")
    with pytest.raises(ConfigError, match="label_delay=-2"):
        DigitsStream(4, label_delay=-2)
    with pytest.raises(ConfigError, match="batch_size=0"):
        DigitsStream(0)


# --------------------------------------------------------------------------- digits streams


def test_digits_shapes_and_ranges():
    stream = DigitsStream(5, seed=0)
    x, y = stream.next()
    assert x.shape == (5, 64) and x.dtype == torch.float32
    assert y.shape == (5,) and y.dtype == torch.int64
    assert stream.n_features == 64 and stream.n_classes == 10
    X_test, y_test = stream.test_set()
    X_train, y_train = stream.train_set()
    assert len(y_test) == 450 and len(y_train) == 1347 == stream.num_samples
    assert X_test.dtype == torch.float32 and y_test.dtype == torch.int64
    assert 0.0 <= float(X_train.min()) and float(X_train.max()) == 1.0  # 16 / 16


def test_digits_split_disjoint_stratified_and_seed_independent():
    a, b = DigitsStream(2, seed=0), DigitsStream(2, seed=123, split="test")
    assert not set(a.train_indices) & set(a.test_indices)
    assert sorted([*a.train_indices, *a.test_indices]) == list(range(1797))
    np.testing.assert_array_equal(a.test_indices, b.test_indices)  # split ignores the stream seed
    assert torch.equal(a.test_set()[0], b.test_set()[0])
    _, y_train = a.train_set()
    _, y_test = a.test_set()
    frac = torch.bincount(y_test, minlength=10) / torch.bincount(torch.cat([y_train, y_test]), minlength=10)
    assert torch.all((frac - 0.25).abs() < 0.02)  # stratified
    assert not np.array_equal(DigitsStream(2, split_seed=1).test_indices, a.test_indices)


def _index_dataset(tmp_path, n=40, n_classes=4):
    # x encodes the sample's index, so streams can be checked sample by sample
    path = tmp_path / "indexed.npz"
    np.savez(path, x=np.arange(n, dtype=np.float64).reshape(n, 1), y=np.arange(n) % n_classes)
    return path, n - 1  # stored x is divided by its maximum


def _ids(x, scale):
    return torch.round(x[:, 0] * scale).long()


def test_npz_stream_split_disjoint_and_epochs_without_replacement(tmp_path):
    path, scale = _index_dataset(tmp_path)
    train = DigitsStream(3, dataset=path, seed=0, test_fraction=0.25)
    test_ids = set(_ids(train.test_set()[0], scale).tolist())
    train_ids = set(_ids(train.train_set()[0], scale).tolist())
    assert not test_ids & train_ids and len(test_ids | train_ids) == 40
    n = train.num_samples
    seen = torch.stack([_ids(train.next()[0], scale) for _ in range(2 * n)], dim=1)  # (B, 2 epochs)
    for row in seen:
        for epoch in (row[:n], row[n:]):
            assert set(epoch.tolist()) == train_ids and len(epoch) == n
    assert not torch.equal(seen[0], seen[1])  # streams are independently shuffled
    assert not torch.equal(seen[0, :n], seen[0, n:])  # reshuffled each epoch
    _, y = DigitsStream(3, dataset=path).next()
    assert y.dtype == torch.int64


def test_digits_stream_determinism():
    a, b, c = DigitsStream(4, seed=5), DigitsStream(4, seed=5), DigitsStream(4, seed=6)
    same = different = True
    for _ in range(20):
        (xa, ya), (xb, yb), (xc, _) = a.next(), b.next(), c.next()
        same &= torch.equal(xa, xb) and torch.equal(ya, yb)
        different &= torch.equal(xa, xc)
    assert same and not different


@pytest.mark.parametrize("delay", [0, 3])
def test_state_dict_resume_reproduces_batches(tmp_path, delay):
    path, _ = _index_dataset(tmp_path)
    a = DigitsStream(4, dataset=path, seed=2, label_delay=delay)
    for _ in range(25):  # mid second epoch (30 train samples)
        a.next_delayed()
    state = a.state_dict()
    torch.save(state, tmp_path / "stream.pt")
    after = [a.next_delayed() for _ in range(40)]  # crosses an epoch boundary
    b = DigitsStream(4, dataset=path, seed=99, label_delay=delay)  # different seed: state wins
    b.load_state_dict(torch.load(tmp_path / "stream.pt"))
    for batch_a in after:
        batch_b = b.next_delayed()
        for ta, tb in zip(batch_a, batch_b):
            assert torch.equal(ta, tb)
    with pytest.raises(ConfigError, match="batch_size"):
        DigitsStream(5, dataset=path, label_delay=delay).load_state_dict(state)


def test_delayed_labels_align():
    delay, steps = 4, 12
    delayed = DigitsStream(6, seed=1, label_delay=delay)
    plain = DigitsStream(6, seed=1)
    labels = []
    for t in range(steps):
        x, y, delayed_y, valid = delayed.next_delayed()
        x0, y0 = plain.next()
        assert torch.equal(x, x0) and torch.equal(y, y0)  # the delay does not change the inputs
        labels.append(y0)
        if t < delay:
            assert not valid.any() and torch.all(delayed_y == IGNORE_INDEX)
        else:
            assert valid.all() and torch.equal(delayed_y, labels[t - delay])
    x, y, delayed_y, valid = DigitsStream(2, label_delay=0).next_delayed()
    assert valid.all() and torch.equal(delayed_y, y)
