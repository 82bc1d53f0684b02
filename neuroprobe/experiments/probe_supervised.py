"""The delayed-label supervised loop of rule 'probe': one window = one stream step, B branches at once.

S = ``task.batch`` parallel streams each present one input x_t (S, n_in) per step. The scheduler
gives A_t (B, M) and all B branches (branch b runs W_m + ΔW_{m, A_t[b, m]} in every layer m) see the
same S inputs in one batch (:func:`~neuroprobe.rules.probe.probed_sweep` on x_t expanded to
(B, S, n_in)); each branch's log-probabilities log softmax(logits) (B, S, C) are kept.

The labels y_t arrive ``task.label_delay`` = D steps later (D = 0: in the same step;
:meth:`~neuroprobe.tasks.SupervisedStream.next_delayed`). A FIFO holds the last windows whose labels
are still on their way: their log-probabilities, their A and a snapshot of the probes that produced
them (:meth:`~neuroprobe.rules.probe.ProbeRule.snapshot_probes`; ``end_window`` renews the probes
every step, so the credit must be paired with the old window's probes, not the current ones). When
window t−D's labels arrive, each branch's outcome is

    R_b = −(1/S) Σ_s CE(p_b,s, y_s)                 (reward-like, higher is better)

and the rule's usual update runs on that window (advantage against the null branches, optionally
divided by its std, ``[modulator] scale``; routing; coefficients; the directional trace pushed with
the old window's probes, so ``rule.history``/``decay``/``kernel`` weigh windows of credit exactly as
in RL), ``.grad`` is written and the optimizer steps. During the first D steps nothing is credited
and the optimizer does not step; the probes are still renewed every step.

Node noise (``rule.noise_std`` > 0) is drawn per step and stream, shared by all branches.

Metrics: one row every ``task.eval_every`` steps (and at the last step):
``step,accuracy,train_loss,train_accuracy,forward_passes``: test accuracy of the unperturbed network
on the held-out split; the null branches' loss and accuracy (mean over the windows credited since
the last row, NaN if none was; the branch mean if there are no null branches); cumulative
single-sample forward passes, B × S per step. Checkpoints are written at row boundaries, at least
``run.checkpoint_every`` steps apart, and hold the FIFO, the stream, the generator and the rule, so a
resumed run ends with the same files as an uninterrupted one.
"""
from __future__ import annotations

from collections import deque

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..errors import ConfigError, NonFiniteError
from ..network import RateNetwork
from ..probes import ProbeDictionary
from ..rules.probe import ProbeRule, probed_sweep, rule_from_config
from ..tasks import SupervisedStream
from .build import build_optimizer, network_spec
from .rl import check_finite, stop_message
from .rundir import RunDir, learner_state, restore_learner

COLUMNS = ["step", "accuracy", "train_loss", "train_accuracy", "forward_passes"]

# one window whose labels have not arrived: (log-probabilities (B, S, C), A (B, M), probes or None)
Pending = tuple[Tensor, Tensor, list[ProbeDictionary] | None]


def branch_log_probs(rule: ProbeRule, x: Tensor, assignment: Tensor, generator: torch.Generator) -> Tensor:
    """x (S, n_in), assignment (B, M) -> log-probabilities (B, S, C) of every branch on every stream.

    Log-softmax of the logits (the stable form of the softmax readout: a cross-entropy from stored
    probabilities would overflow where a probability underflows to 0).
    """
    B, S = assignment.shape[0], x.shape[0]
    noise = rule.net.sample_noise((1, S), rule.noise_std, generator) if rule.noise_std > 0 else None
    with torch.no_grad():
        logits = probed_sweep(rule.net, x.expand(B, S, x.shape[-1]), assignment, rule.dictionaries, noise).logits
    return torch.log_softmax(logits, dim=-1)


def branch_outcomes(logp: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """logp (B, S, C), labels y (S,) -> (outcome (B,) = −mean cross-entropy over the S streams,
    accuracy (B,))."""
    B, S, _ = logp.shape
    yy = y.expand(B, S)
    ll = logp.gather(-1, yy.unsqueeze(-1)).squeeze(-1)  # (B, S) log p_b(y_s | x_s)
    return ll.to(torch.float64).mean(-1), (logp.argmax(-1) == yy).to(torch.float64).mean(-1)


def _unperturbed(values: Tensor, assignment: Tensor) -> float:
    """Mean over the null branches (all identical), else over all branches."""
    null = (assignment == 0).all(dim=1)
    return float(values[null].mean() if bool(null.any()) else values.mean())


def _pending_state(pending: deque[Pending]) -> list[dict]:
    return [{"logp": lp.clone(), "A": A.clone(), "probes": None if snap is None else [d.state_dict() for d in snap]}
            for lp, A, snap in pending]


def _load_pending(state: list[dict], rule: ProbeRule) -> deque[Pending]:
    out: deque[Pending] = deque()
    for e in state:
        snap = None
        if e["probes"] is not None:
            snap = rule.snapshot_probes()  # same configuration; every state tensor is replaced below
            for d, s in zip(snap, e["probes"]):
                d.load_state_dict(s)
        out.append((e["logp"].clone(), e["A"].clone(), snap))
    return out


def run_probe_supervised(cfg: dict, run: RunDir, resume: bool = False) -> dict:
    """Run (or resume from ``run``'s checkpoint) rule 'probe' on a delayed-label stream; returns {"steps": n}."""
    task = cfg["task"]
    torch.set_num_threads(cfg["run"]["threads"])  # tiny tensors: extra threads only add sync overhead
    seed, D, S, T = cfg["seed"], task["label_delay"], task["batch"], task["steps"]
    gen = torch.Generator().manual_seed(seed)
    net = RateNetwork(network_spec(cfg), generator=gen)
    stream = SupervisedStream(S, split="train", seed=seed, label_delay=D, dataset=task["dataset"])
    if stream.n_features != net.layers[0].in_features or stream.n_classes != net.layer_sizes[-1]:
        raise ConfigError(f"model sizes {net.spec.sizes} do not fit dataset {task['dataset']!r} "
                          f"({stream.n_features} features, {stream.n_classes} classes)")
    x_test, y_test = stream.test_set()
    dtype = net.layers[0].weight.dtype
    rule = rule_from_config(cfg, net)
    opt = build_optimizer(cfg, net)
    B = rule.branches
    pending: deque[Pending] = deque()  # windows whose labels are on their way, oldest first (at most D + 1)
    step, rows = 0, 0
    ckpt = run.load_checkpoint() if resume else None
    if ckpt is not None:
        restore_learner(ckpt, net, opt, rule, gen)
        stream.load_state_dict(ckpt["stream"])
        pending = _load_pending(ckpt["pending"], rule)
        step, rows = ckpt["step"], ckpt["rows"]
    last_ckpt = step
    metrics = run.open_metrics(COLUMNS, keep_rows=rows)
    k_eval, k_ckpt = task["eval_every"], cfg["run"]["checkpoint_every"]
    loss_sum = acc_sum = 0.0
    n_credited = 0
    bar = tqdm(total=T, initial=step, unit="step", disable=not cfg["run"]["progress"], dynamic_ncols=True,
               desc=f"PROBE · {task['name']} · {B} branches · D={D}")

    def checkpoint() -> None:
        run.save_checkpoint({**learner_state(net, opt, rule, gen), "stream": stream.state_dict(),
                             "pending": _pending_state(pending), "step": step, "rows": metrics.rows})

    try:
        while step < T:
            batch = stream.next_delayed()
            A = rule.assignment()
            logp = branch_log_probs(rule, batch.x.to(dtype), A, gen)
            # with D = 0 the window is credited at once, with the live probes: no snapshot needed
            pending.append((logp, A, rule.snapshot_probes() if D > 0 else None))
            if bool(batch.valid.all()):  # the labels of window step − D have arrived (all streams at once)
                logp_old, A_old, probes = pending.popleft()
                outcome, acc = branch_outcomes(logp_old, batch.delayed_y)
                try:  # logits that overflowed give NaN outcomes
                    rule.update(outcome, A_old, dictionaries=probes)
                except NonFiniteError as e:
                    raise NonFiniteError(stop_message(str(e), f"step {step}", run)) from None
                opt.step()
                check_finite(net, f"step {step}", run)
                loss_sum -= _unperturbed(outcome, A_old)
                acc_sum += _unperturbed(acc, A_old)
                n_credited += 1
            rule.end_window()
            step += 1
            bar.update(1)
            if step % k_eval == 0 or step == T:
                with torch.no_grad():
                    test_acc = (net(x_test.to(dtype)).argmax(-1) == y_test).float().mean().item()
                nan = float("nan")
                metrics.write({"step": step, "accuracy": test_acc,
                               "train_loss": loss_sum / n_credited if n_credited else nan,
                               "train_accuracy": acc_sum / n_credited if n_credited else nan,
                               "forward_passes": step * B * S})
                bar.set_postfix_str(f"test acc {test_acc:.3f}")
                loss_sum = acc_sum = 0.0
                n_credited = 0
                # at a row boundary the state is whole (the running means were just reset)
                if step - last_ckpt >= k_ckpt or step == T:
                    checkpoint()
                    last_ckpt = step
    finally:
        bar.close()
        metrics.close()
    return {"steps": step}
