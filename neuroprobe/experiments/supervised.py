"""The supervised delayed-credit loop (CET paper, "batch index used as time").

B parallel streams each present one input per step; the credit of step t reaches each layer D_l
steps later and meets that layer's eligibility trace (:class:`~neuroprobe.rules.CETDelayed`).
Every ``eval_every`` steps a row is written: test accuracy on the held-out split, the training
loss/accuracy since the last row, and the cosine between the rule's update and the exact delayed
gradient per layer (mean since the last row).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..network import RateNetwork
from ..tasks import SupervisedStream
from .build import build_cet_rule, build_optimizer, network_spec
from .rl import check_finite
from .rundir import RunDir, learner_state, restore_learner


def columns(net: RateNetwork) -> list[str]:
    return ["step", "accuracy", "train_loss", "train_accuracy"] + [f"align_{n}" for n in net.layer_names]


def run_supervised(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    task = cfg["task"]
    torch.set_num_threads(cfg["run"]["threads"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    net = RateNetwork(network_spec(cfg), generator=gen)
    stream = SupervisedStream(task["batch"], split="train", seed=cfg["seed"], dataset=task["dataset"])
    if stream.n_features != net.layers[0].in_features or stream.n_classes != net.layer_sizes[-1]:
        raise ConfigError(f"model sizes {net.spec.sizes} do not fit dataset {task['dataset']!r} "
                          f"({stream.n_features} features, {stream.n_classes} classes)")
    x_test, y_test = stream.test_set()
    rule = build_cet_rule(cfg, net)
    opt = build_optimizer(cfg, net)
    step, rows = 0, 0
    ckpt = run.load_checkpoint() if resume else None
    if ckpt is not None:
        restore_learner(ckpt, net, opt, rule)
        stream.load_state_dict(ckpt["stream"])
        step, rows = ckpt["step"], ckpt["rows"]
    cols = columns(net)
    metrics = run.open_metrics(cols, keep_rows=rows)
    k_eval, k_ckpt = task["eval_every"], cfg["run"]["checkpoint_every"]
    acc_sum = loss_sum = 0.0
    align: dict[str, list[float]] = {n: [] for n in net.layer_names}
    n_seen = 0
    bar = tqdm(total=task["steps"], initial=step, unit="step", disable=not cfg["run"]["progress"], dynamic_ncols=True,
               desc=f"CET · {rule.trace_kind} n={cfg['rule']['order']} D={cfg['rule']['delay']}")
    try:
        while step < task["steps"]:
            x, y = stream.next()
            stats = rule.step(x, y)
            opt.step()
            step += 1
            check_finite(net, f"step {step}", run)
            acc_sum += stats["accuracy"]
            loss_sum += stats["loss"]
            n_seen += 1
            for n, c in rule.last_alignment.items():
                align[n].append(c)
            bar.update(1)
            if step % k_eval == 0 or step == task["steps"]:
                with torch.no_grad():
                    test_acc = (net(x_test).argmax(-1) == y_test).float().mean().item()
                row = {"step": step, "accuracy": test_acc, "train_loss": loss_sum / n_seen,
                       "train_accuracy": acc_sum / n_seen}
                row.update({f"align_{n}": float(np.mean(v)) if v else float("nan") for n, v in align.items()})
                metrics.write(row)
                bar.set_postfix_str(f"test acc {test_acc:.3f}")
                acc_sum = loss_sum = 0.0
                n_seen = 0
                align = {n: [] for n in net.layer_names}
                if metrics.rows % k_ckpt == 0 or step == task["steps"]:
                    run.save_checkpoint({**learner_state(net, opt, rule), "stream": stream.state_dict(), "step": step, "rows": metrics.rows})
    finally:
        bar.close()
        metrics.close()
    return {"steps": step}
