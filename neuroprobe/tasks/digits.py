"""Supervised streams with optionally delayed labels, over scikit-learn's digits or a local .npz.

A stream gives one input per step to each of ``batch_size`` parallel, independent streams (the
batch axis is the axis of parallel trajectories, docs/architecture.md). Each stream walks through its own
random permutation of the split, so within an epoch it sees every sample exactly once; all
streams start a new epoch together. With ``label_delay = D`` the label of the input shown at step
``t`` becomes available at step ``t + D`` (:meth:`SupervisedStream.next_delayed`).

No downloads: ``load_digits`` (8x8 digits, 1797 samples, 64 features in 0..16, 10 classes) ships
with scikit-learn; MNIST-like data can be supplied as a local ``.npz`` with arrays ``x`` (N, D)
and ``y`` (N,).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from neuroprobe.errors import ConfigError

__all__ = [
    "IGNORE_INDEX",
    "DelayedLabelBatch",
    "SupervisedStream",
    "DigitsStream",
    "load_npz_dataset",
    "load_dataset",
]

# Label used where no delayed label has arrived yet: torch's default `ignore_index` for
# cross_entropy/nll_loss, so such entries drop out of a loss without masking.
IGNORE_INDEX = -100


class DelayedLabelBatch(NamedTuple):
    """One step of a delayed-label stream; ``B`` = batch_size, ``D`` = features.

    x: (B, D) float32, the inputs shown now.
    y: (B,) int64, their labels (for metrics only: a learner with delayed labels must not use it).
    delayed_y: (B,) int64, the labels of the inputs shown ``label_delay`` steps ago;
        ``IGNORE_INDEX`` where ``valid`` is False.
    valid: (B,) bool, False during the first ``label_delay`` steps.
    """

    x: torch.Tensor
    y: torch.Tensor
    delayed_y: torch.Tensor
    valid: torch.Tensor


def load_npz_dataset(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x`` (N, D) and ``y`` (N,) from an .npz file.

    Returns ``x`` as float32 (values unchanged) and ``y`` as int64 class indices ``0..K-1``.
    Raises ConfigError naming the file if it is missing, unreadable or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"dataset file {str(path)!r} does not exist (expected an .npz with arrays x and y)")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("x", "y") if k not in data.files]
            if missing:
                raise ConfigError(
                    f"dataset file {str(path)!r} lacks array(s) {missing}; it holds {sorted(data.files)}, "
                    "expected x (N, D) and y (N,)"
                )
            x, y = data["x"], data["y"]
    except ConfigError:
        raise
    except Exception as exc:  # not a zip/npz, truncated, pickled objects, ...
        raise ConfigError(f"dataset file {str(path)!r} is not a readable .npz: {exc}") from None
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(
            f"dataset file {str(path)!r}: expected x of shape (N, D) and y of shape (N,) with N > 0, "
            f"got x {x.shape} and y {y.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
        raise ConfigError(f"dataset file {str(path)!r}: x and y must be numeric, got {x.dtype} and {y.dtype}")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"dataset file {str(path)!r}: x contains NaN or infinite values")
    if not np.all(np.isfinite(y)) or np.any(y < 0) or np.any(y != np.round(y)):
        raise ConfigError(f"dataset file {str(path)!r}: y must hold non-negative integer class indices")
    return x.astype(np.float32), y.astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def load_dataset(dataset: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Features in [0, 1] (float32, (N, D)) and int64 labels (N,) of ``"digits"`` or an .npz path.

    Digits are divided by 16. An .npz whose ``x`` exceeds 1 is divided by its global maximum
    (e.g. 255 for 8-bit images), a fixed linear scaling; otherwise it is used as stored.
    """
    if isinstance(dataset, str) and dataset == "digits":
        x, y = _digits()
        return x.copy(), y.copy()
    if not isinstance(dataset, (str, os.PathLike)):
        raise ConfigError(f"dataset={dataset!r} must be 'digits' or a path to an .npz file")
    x, y = load_npz_dataset(dataset)
    peak = float(x.max())
    if peak > 1.0:
        x = x / np.float32(peak)
    return x, y


class SupervisedStream:
    """``batch_size`` parallel streams of (input, label) over a fixed stratified split.

    Args:
        batch_size: number B of parallel independent streams.
        split: ``"train"`` or ``"test"``: which part of the data :meth:`next` streams.
        seed: seeds the stream order (a ``torch.Generator``), not the split.
        test_fraction: fraction of the data in the test split, in (0, 1).
        label_delay: steps D between an input and the arrival of its label (:meth:`next_delayed`).
        dataset: ``"digits"`` (scikit-learn) or a path to an .npz with ``x`` and ``y``.
        split_seed: seeds the stratified train/test split (the same for every stream seed).

    :meth:`next` gives ``(x, y)``: x float32 (B, D), y int64 (B,). :meth:`next_delayed` gives a
    :class:`DelayedLabelBatch`. Both advance the same stream (and its label buffer).
    """

    def __init__(
        self,
        batch_size: int,
        split: str = "train",
        seed: int = 0,
        test_fraction: float = 0.25,
        label_delay: int = 0,
        dataset: str | os.PathLike = "digits",
        split_seed: int = 0,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r} must be a positive integer")
        if split not in ("train", "test"):
            raise ConfigError(f"split={split!r} is not allowed; use 'train' or 'test'")
        if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction={test_fraction!r} must lie strictly between 0 and 1")
        if isinstance(label_delay, bool) or not isinstance(label_delay, int) or label_delay < 0:
            raise ConfigError(f"label_delay={label_delay!r} must be a non-negative integer (steps)")
        for key, value in (("seed", seed), ("split_seed", split_seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{key}={value!r} must be an integer")

        x, y = load_dataset(dataset)
        self.dataset = dataset
        self.batch_size = batch_size
        self.split = split
        self.seed = seed
        self.label_delay = label_delay
        self.n_features = int(x.shape[1])
        self.n_classes = int(y.max()) + 1

        train_idx, test_idx = self._split_indices(y, test_fraction, split_seed)
        # sorted row indices into the full dataset of each split (disjoint, together all rows)
        self.train_indices, self.test_indices = train_idx, test_idx
        self._train = (torch.from_numpy(x[train_idx]), torch.from_numpy(y[train_idx]))
        self._test = (torch.from_numpy(x[test_idx]), torch.from_numpy(y[test_idx]))
        self._x, self._y = self._train if split == "train" else self._test

        self._generator = torch.Generator().manual_seed(seed)
        self._epoch = 0
        self._perm = self._draw_permutations()  # (B, N): row b is stream b's order this epoch
        self._pos = 0  # position within the epoch, shared by all streams
        self._t = 0  # steps taken
        self._label_buffer = torch.zeros(label_delay, batch_size, dtype=torch.int64)  # ring buffer

    @staticmethod
    def _split_indices(y: np.ndarray, test_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.model_selection import train_test_split

        try:
            train_idx, test_idx = train_test_split(
                np.arange(len(y)), test_size=test_fraction, stratify=y, random_state=split_seed
            )
        except ValueError as exc:  # e.g. a class with a single sample cannot be stratified
            raise ConfigError(f"cannot make a stratified split with test_fraction={test_fraction}: {exc}") from None
        return np.sort(train_idx), np.sort(test_idx)

    def _draw_permutations(self) -> torch.Tensor:
        # One independent permutation per stream, vectorised: argsort of i.i.d. uniforms
        # (float64 and a stable sort, so ties cannot make the order implementation-dependent).
        keys = torch.rand(self.batch_size, self.num_samples, generator=self._generator, dtype=torch.float64)
        return torch.argsort(keys, dim=1, stable=True)

    @property
    def num_samples(self) -> int:
        """Number of samples in the streamed split (one epoch of one stream)."""
        return int(self._y.shape[0])

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def step_count(self) -> int:
        return self._t

    def _advance(self) -> DelayedLabelBatch:
        if self._pos == self.num_samples:
            self._perm = self._draw_permutations()
            self._pos = 0
            self._epoch += 1
        idx = self._perm[:, self._pos]
        x, y = self._x[idx], self._y[idx]
        delay = self.label_delay
        if delay == 0:
            delayed_y, valid = y.clone(), torch.ones(self.batch_size, dtype=torch.bool)
        else:
            slot = self._t % delay
            if self._t >= delay:
                delayed_y, valid = self._label_buffer[slot].clone(), torch.ones(self.batch_size, dtype=torch.bool)
            else:
                delayed_y = torch.full((self.batch_size,), IGNORE_INDEX, dtype=torch.int64)
                valid = torch.zeros(self.batch_size, dtype=torch.bool)
            self._label_buffer[slot] = y
        self._pos += 1
        self._t += 1
        return DelayedLabelBatch(x, y, delayed_y, valid)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``x`` float32 (B, D), ``y`` int64 (B,), the current inputs and their labels."""
        batch = self._advance()
        return batch.x, batch.y

    def next_delayed(self) -> DelayedLabelBatch:
        """One step with the labels of ``label_delay`` steps ago (see :class:`DelayedLabelBatch`)."""
        return self._advance()

    def test_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole test split: X float32 (N_test, D), y int64 (N_test,) (copies)."""
        return self._test[0].clone(), self._test[1].clone()

    def train_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole train split: X float32 (N_train, D), y int64 (N_train,) (copies)."""
        return self._train[0].clone(), self._train[1].clone()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the stream and produce exactly the same later batches."""
        return {
            "batch_size": self.batch_size,
            "split": self.split,
            "num_samples": self.num_samples,
            "label_delay": self.label_delay,
            "generator": self._generator.get_state(),
            "perm": self._perm.clone(),
            "pos": self._pos,
            "t": self._t,
            "epoch": self._epoch,
            "label_buffer": self._label_buffer.clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` taken from a stream built with the same settings."""
        for key in ("batch_size", "split", "num_samples", "label_delay"):
            if key not in state:
                raise ConfigError(f"stream state lacks {key!r}; is it a SupervisedStream.state_dict()?")
            if state[key] != getattr(self, key):
                raise ConfigError(
                    f"stream state has {key}={state[key]!r} but this stream has {key}={getattr(self, key)!r}"
                )
        self._generator.set_state(state["generator"].clone())
        self._perm = state["perm"].clone()
        self._pos = int(state["pos"])
        self._t = int(state["t"])
        self._epoch = int(state["epoch"])
        self._label_buffer = state["label_buffer"].clone()


class DigitsStream(SupervisedStream):
    """:class:`SupervisedStream` over scikit-learn's 8x8 digits (64 features in [0, 1], 10 classes)
    by default; ``dataset=`` may instead name a local .npz (MNIST-like) file."""
