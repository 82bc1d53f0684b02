"""Tasks: Gymnasium/NeuroGym RL environments, the cue–delay–action task, delayed-reward wrappers, delayed-label streams."""

from neuroprobe.tasks.cue_delay import CueDelayEnv
from neuroprobe.tasks.digits import (
    IGNORE_INDEX,
    DelayedLabelBatch,
    DigitsStream,
    SupervisedStream,
    load_dataset,
    load_npz_dataset,
)
from neuroprobe.tasks.gym_tasks import (
    TASKS,
    TaskSpec,
    completed_episodes,
    make_env,
    make_vector_env,
    task_info,
    true_rewards,
)
from neuroprobe.tasks.wrappers import REWARD_DELAY_MODES, DelayedReward, EpisodeStatistics

__all__ = [
    "TASKS",
    "TaskSpec",
    "CueDelayEnv",
    "task_info",
    "make_env",
    "make_vector_env",
    "completed_episodes",
    "true_rewards",
    "DelayedReward",
    "EpisodeStatistics",
    "REWARD_DELAY_MODES",
    "DigitsStream",
    "SupervisedStream",
    "DelayedLabelBatch",
    "IGNORE_INDEX",
    "load_npz_dataset",
    "load_dataset",
]
