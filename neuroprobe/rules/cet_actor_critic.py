"""Actor-critic with a CET-delayed actor: the CET paper's RL experiment (Section 4, Algorithm 1).

B environments run in parallel (the batch axis); every ``rollout`` steps the actor and the critic
take one optimizer step (the authors' code: 4 CartPole environments, rollouts of 128 steps, Adam).

Critic: an MLP trained by ordinary backprop on the λ-return (GAE, γ, λ) of the rollout,
``vf_coef · ½ · mean_{t,b} (V(s_t) − R_t)²``.

Actor: trained *online* with RL eligibility traces of the λ-return (Sutton & Barto ch. 12, the
authors' Algorithm 1). At step t the policy-gradient credit of each actor layer,
``g_l,t = ∂ log π(a_t|s_t) / ∂h_l`` (its pre-activation; B×n_out), is emitted together with the TD
error ``δ_t = r_t + γ(1 − done_t) V(s_t+1) − V(s_t)`` and the episode-end flag. They reach layer l
``L_l`` steps later (L_l = D_l, or D_l − 1 with ``credit_lag = "D-1"``; :class:`DelayedBroadcast`)
and meet the layer's cascading eligibility trace ``E_l,t = CET[u_l]_t`` (kernel peaking at D_l),
exactly as in the supervised rule :class:`~neuroprobe.rules.cet.CETDelayed`:

    ĝ_l,t   = g_l,t−L ⊗ E_l,t                       (per environment b: B×n_out×n_in)
    z_l     ← γλ z_l + ĝ_l,t                        (RL eligibility trace of the λ-return)
    acc_l  += Σ_b δ_t−L,b z_l,b
    z_l     ← (1 − done_t−L) z_l                    (the episode of step t−L ended: forget it)

and at the end of a rollout ``W_l.grad = −acc_l/(B·T) − c_ent · Σ_t,b ∇_W H_t,b /(B·T)``. Where E is
factorised (B×n_in), the rule keeps the rollout's g, E, δ and done and replays these four lines at
its end as two matrix products (:func:`replay_lambda_trace`: the same sums in another order, 1.4–1.6×
faster on CartPole's 8-256-256-2 actor than a pass over z every step). With no
delay and no trace (``trace = "none"``, D = 0) the sum equals the GAE policy gradient
``Σ_t,b Â_t,b ∇ log π(a_t,b|s_t,b)`` in its backward view (Â summed over the δ's seen so far; the
trace carries across rollouts). With a perfect trace (a delay line of L_l steps) the update is the
exact policy gradient of L_l steps back; the cosine between the two is the gradient alignment.
``u_l`` is what the trace holds (``trace_on``, as in the supervised rule): the presynaptic activity
x_l ("presynaptic", factorised), f'(h_l)⊗x_l paired with the post-activation credit ("synapse"), or
f'(h_l)⊗x_l paired with the pre-activation credit, x_l at the output layer ("synapse_preact", the
CET authors' code). The entropy bonus is differentiated exactly, without delay (as in the authors'
code). The actor has no biases (the authors' actor has none).

Everything runs on the batch axis B (environments); no loop over neurons or synapses. All tensors
are in the actor's dtype; ``state_dict`` holds everything a resumed run needs.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .._args import check_batch, check_int, check_number
from ..errors import ConfigError
from ..modulators.broadcast import DelayedBroadcast
from ..network import RateNetwork
from ..neurons.rate import ACTIVATION_GRADS
from ..traces import TRACE_KINDS, make_trace
from .cet import TRACE_ON, cet_layer_delays, credit_lags, trace_shapes

__all__ = ["split_signs", "log_policy_grad", "entropy_and_grad", "backprop_credits", "gae", "lambda_trace_weights",
           "replay_lambda_trace", "orthogonal_init", "CETActorCritic"]


# --------------------------------------------------------------------------- functional core


def split_signs(obs: Tensor) -> Tensor:
    """(…, n) -> (…, 2n): ``[max(x, 0), max(−x, 0)]``, the CET authors' positive inputs (their
    ``PositiveObsWrapper``): every input of the first layer is a non-negative rate."""
    return torch.cat([torch.relu(obs), torch.relu(-obs)], dim=-1)


def log_policy_grad(logits: Tensor, actions: Tensor) -> Tensor:
    """∂ log softmax(logits)[a] / ∂logits = onehot(a) − π; logits (B, A), actions (B,) long -> (B, A)."""
    pi = torch.softmax(logits, dim=-1)
    return torch.nn.functional.one_hot(actions, logits.shape[-1]).to(logits.dtype) - pi


def entropy_and_grad(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Entropy H = −Σ π log π of softmax(logits) (B,) and ∂H/∂logits = −π ⊙ (log π + H) (B, A)."""
    logp = torch.log_softmax(logits, dim=-1)
    pi = logp.exp()
    h = -(pi * logp).sum(-1)
    return h, -pi * (logp + h.unsqueeze(-1))


def backprop_credits(weights: list[Tensor], preacts: list[Tensor], top: Tensor,
                     activation: str) -> tuple[list[Tensor], list[Tensor]]:
    """Backpropagate a credit at the logits through the layers.

    weights[l]: (n_out_l, n_in_l); preacts[l]: (B, n_out_l); top: ∂J/∂logits (B, n_out_L);
    ``activation``: the hidden layers' activation (the output layer is linear). Returns
    ``(pre, post)``: per layer ∂J/∂h_l (pre-activation) and ∂J/∂x_l+1 (post-activation; ∂J/∂logits
    at the output layer), each (B, n_out_l).
    """
    n = len(weights)
    pre: list[Tensor] = [top] * n
    post: list[Tensor] = [top] * n
    for l in range(n - 2, -1, -1):
        post[l] = pre[l + 1] @ weights[l + 1]
        pre[l] = post[l] * ACTIVATION_GRADS[activation](preacts[l])
    return pre, post


def gae(rewards: Tensor, values: Tensor, dones: Tensor, next_value: Tensor, gamma: float,
        lam: float) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimates and λ-returns of a rollout.

    rewards, values, dones: (T, B), ``dones[t]`` = the episode ended on step t (terminated or
    truncated: no bootstrap, as the authors' code); next_value: V(s_T) (B,). Returns
    ``(advantages, returns)`` (T, B) with ``δ_t = r_t + γ(1 − d_t) V_t+1 − V_t``,
    ``A_t = δ_t + γλ(1 − d_t) A_t+1`` and ``R_t = A_t + V_t``.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in range(T - 1, -1, -1):  # over time (a recurrence), vectorised over the batch
        nv = next_value if t == T - 1 else values[t + 1]
        keep = 1.0 - dones[t]
        delta = rewards[t] + gamma * nv * keep - values[t]
        last = delta + gamma * lam * keep * last
        adv[t] = last
    return adv, adv + values


def lambda_trace_weights(delta: Tensor, keep: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """Weights that replay n steps of the λ-return's eligibility trace in one go.

    The per-step recursion (per environment b, step j = 0 … n−1, X_j = g_j ⊗ e_j)::

        z ← decay·z + X_j;   acc += δ_j z;   z ← keep_j z

    gives ``acc += decay·c_0·z_start + Σ_j c_j X_j`` and ``z_end = decay·w_0·z_start + Σ_j w_j X_j``
    with ``c_j = δ_j + decay·keep_j·c_j+1`` (c_n = 0) and ``w_j = keep_j·decay·w_j+1`` (w_n−1 =
    keep_n−1). delta, keep: (n, B). Returns ``(c, w)``, each (n, B).
    """
    n = delta.shape[0]
    c, w = torch.empty_like(delta), torch.empty_like(delta)
    run_c, run_w = torch.zeros_like(delta[0]), torch.ones_like(delta[0])
    for j in range(n - 1, -1, -1):  # a recurrence over time, vectorised over the batch
        run_c = delta[j] + decay * keep[j] * run_c
        run_w = keep[j] * run_w if j == n - 1 else keep[j] * decay * run_w
        c[j], w[j] = run_c, run_w
    return c, w


def replay_lambda_trace(z: Tensor, acc: Tensor, g: Tensor, e: Tensor, delta: Tensor, keep: Tensor,
                        decay: float) -> None:
    """In place: n steps of ``z ← decay·z + g_j ⊗ e_j; acc += Σ_b δ_j,b z_b; z ← keep_j·z`` as two
    matrix products (:func:`lambda_trace_weights`) instead of n passes over z.

    z (B, n_out, n_in); acc (n_out, n_in); g (n, B, n_out); e (n, B, n_in); delta, keep (n, B).
    """
    n, B = delta.shape
    if n == 0:
        return
    c, w = lambda_trace_weights(delta, keep, decay)
    # acc += Σ_j,b c_j,b g_j,b ⊗ e_j,b + decay Σ_b c_0,b z_b
    acc.addmm_((g * c.unsqueeze(-1)).reshape(n * B, -1).transpose(0, 1), e.reshape(n * B, -1))
    acc.add_(torch.tensordot(decay * c[0], z, dims=1))
    # z_b ← decay w_0,b z_b + Σ_j w_j,b g_j,b ⊗ e_j,b
    z.mul_((decay * w[0]).view(B, 1, 1))
    z.baddbmm_((g * w.unsqueeze(-1)).permute(1, 2, 0), e.transpose(0, 1))


def orthogonal_init(net: RateNetwork, gains: list[float], generator: torch.Generator) -> None:
    """Orthogonal weights with the given gain per layer, zero biases (the authors' ``layer_init``:
    √2 for every actor layer and the critic's hidden layers, 1 for the critic's output)."""
    with torch.no_grad():
        for layer, gain in zip(net.layers, gains):
            w = torch.empty(layer.weight.shape, dtype=torch.float64)
            torch.nn.init.orthogonal_(w, gain, generator=generator)
            layer.weight.copy_(w)
            if layer.bias is not None:
                layer.bias.zero_()


# --------------------------------------------------------------------------- the rule


class CETActorCritic:
    """Actor-critic whose actor learns through delayed CET credit (module docstring).

    Args:
        actor: RateNetwork (no batch axis of models, no biases, softmax readout); its input size is
            the encoded observation's (2·obs_dim with ``split_inputs``).
        critic: RateNetwork with one linear output (identity readout), same input.
        envs: B, parallel environments (the batch axis).
        rollout: T, steps per environment between updates.
        gamma, lam: discount and GAE λ; ent_coef, vf_coef: entropy bonus and value-loss weights;
        max_grad_norm: clip of the global gradient norm (actor and critic together); None = off.
        delay, delay_mode, output_credit: where each actor layer's trace kernel peaks
            (:func:`~neuroprobe.rules.cet.cet_layer_delays`); credit_lag: "D" or "D-1".
        trace, order, normalize, beta: the eligibility trace (``make_trace``); a layer whose delay is
            0 uses no trace.
        trace_on: "presynaptic", "synapse" or "synapse_preact" (as :class:`CETDelayed`).
        split_inputs: encode observations as ``[max(x,0), max(−x,0)]``.
        diagnostics: keep the exact delayed gradient (a perfect delay line) for the alignment.
        generator: draws the actions.
    """

    def __init__(self, actor: RateNetwork, critic: RateNetwork, envs: int, rollout: int = 128,
                 gamma: float = 0.99, lam: float = 0.95, ent_coef: float = 0.01, vf_coef: float = 0.5,
                 max_grad_norm: float | None = 0.5, delay: int = 0, delay_mode: str = "constant",
                 trace: str = "cascade", order: int = 1, normalize: str | None = "peak", beta: float | None = None,
                 trace_on: str = "presynaptic", credit_lag: str = "D", output_credit: str = "delayed",
                 split_inputs: bool = True, diagnostics: bool = True, generator: torch.Generator | None = None):
        for name, net in (("actor", actor), ("critic", critic)):
            if not isinstance(net, RateNetwork) or net.batch is not None:
                raise ConfigError(f"{name}: must be a RateNetwork without a batch axis of models")
        if any(layer.bias is not None for layer in actor.layers):
            raise ConfigError("actor: must have no biases (model.bias = false; the CET authors' actor has none)")
        if actor.spec.readout != "softmax":
            raise ConfigError(f"actor readout = {actor.spec.readout!r}: must be 'softmax' (a policy)")
        if critic.layers[-1].out_features != 1 or critic.layers[0].in_features != actor.layers[0].in_features:
            raise ConfigError("critic: must take the actor's input and have one output")
        if trace not in TRACE_KINDS:
            raise ConfigError(f"rule.trace = {trace!r}: allowed {list(TRACE_KINDS)}")
        if trace_on not in TRACE_ON:
            raise ConfigError(f"rule.trace_on = {trace_on!r}: allowed {list(TRACE_ON)}")
        self.actor, self.critic = actor, critic
        self.B, self.T = check_batch(envs, "rule.envs"), check_int("rule.rollout", rollout, ge=1)
        self.gamma = check_number("rule.gamma", gamma, ge=0, le=1)
        self.lam = check_number("rule.gae_lambda", lam, ge=0, le=1)
        self.ent_coef = check_number("rule.ent_coef", ent_coef, ge=0)
        self.vf_coef = check_number("rule.vf_coef", vf_coef, ge=0)
        self.max_grad_norm = None if max_grad_norm is None else check_number("rule.max_grad_norm", max_grad_norm, gt=0)
        self.trace_kind, self.trace_on, self.split_inputs = trace, trace_on, bool(split_inputs)
        self.generator = generator
        n = len(actor.layers)
        self.delays = cet_layer_delays(n, check_int("rule.delay", delay, ge=0), delay_mode, output_credit)
        self.lags = credit_lags(self.delays, credit_lag)
        # per layer one signal: [credit (n_out) | δ | done], so that all three arrive together
        self.broadcast = DelayedBroadcast(self.lags)
        dt = {"dtype": actor.layers[0].weight.dtype, "device": actor.layers[0].weight.device}
        self.dtype, self.device = dt["dtype"], dt["device"]
        sizes = [actor.layers[0].in_features] + [layer.out_features for layer in actor.layers]
        self.sizes = sizes
        shapes = trace_shapes(sizes, self.B, trace_on)
        true_shapes = trace_shapes(sizes, self.B, "synapse" if trace_on == "synapse" else "presynaptic")
        self.traces = []
        for shape, d in zip(shapes, self.delays):
            kind = trace if d > 0 else "none"  # no delay: the credit meets the activity it belongs to
            kw = {"beta": beta} if beta and kind in ("cascade", "exponential") else {}
            self.traces.append(make_trace(kind, shape, order=order, delay=d if kind != "none" else None,
                                          normalize=normalize, **kw, **dt))
        self.diagnostics = bool(diagnostics)
        self._true_x = ([make_trace("perfect", s, delay=lag, **dt) for s, lag in zip(true_shapes, self.lags)]
                        if self.diagnostics else None)
        self.z_shapes = [(self.B, o, i) for i, o in zip(sizes[:-1], sizes[1:])]
        # factorised eligibilities (B, n_in) are kept for the rollout and replayed into z and acc in
        # two matrix products at its end (replay_lambda_trace); per-synapse ones are added per step
        self._replay = [len(s) == 2 for s in shapes]
        self._replay_true = [len(s) == 2 for s in true_shapes]
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Empty traces, delay lines, RL eligibility traces and rollout (a fresh run)."""
        dt = {"dtype": self.dtype, "device": self.device}
        self.broadcast.reset()
        for tr in self.traces + (self._true_x or []):
            tr.reset()
        self.z = [torch.zeros(s, **dt) for s in self.z_shapes]
        self.acc = [torch.zeros(s[1:], **dt) for s in self.z_shapes]
        self.ent_acc = [torch.zeros(s[1:], **dt) for s in self.z_shapes]
        self.z_true = [torch.zeros(s, **dt) for s in self.z_shapes] if self.diagnostics else None
        self.acc_true = [torch.zeros(s[1:], **dt) for s in self.z_shapes] if self.diagnostics else None
        n0 = self.sizes[0]
        self.obs_buf = torch.zeros(self.T, self.B, n0, **dt)
        self.rew_buf = torch.zeros(self.T, self.B, **dt)
        self.done_buf = torch.zeros(self.T, self.B, **dt)
        self.val_buf = torch.zeros(self.T, self.B, **dt)
        self.act_buf = torch.zeros(self.T, self.B, dtype=torch.long, device=self.device)
        # the rollout's arrived credit per layer (for the replay): g, e, e_true, δ, keep; n_arrived
        self.rollout_credit = [{"g": torch.zeros(self.T, self.B, o, **dt),
                                "e": torch.zeros(self.T, self.B, i, **dt) if fe else None,
                                "e_true": torch.zeros(self.T, self.B, i, **dt) if ft and self.diagnostics else None,
                                "delta": torch.zeros(self.T, self.B, **dt), "keep": torch.zeros(self.T, self.B, **dt)}
                               for (_, o, i), fe, ft in zip(self.z_shapes, self._replay, self._replay_true)]
        self.n_arrived = [0] * len(self.z_shapes)
        self.t = 0               # steps of the current rollout
        self.updates = 0         # rollouts completed
        self.entropy_sum = 0.0   # Σ_t,b H over the current rollout (reported)
        n = len(self.z_shapes)
        self.step_align, self.step_align_n = [0.0] * n, [0] * n  # Σ and count of per-step cosines
        self._pending: dict | None = None
        self._next_value: tuple[Tensor, Tensor] | None = None  # (x, V(x)) of the last next_obs (a cache)
        self.last: dict = {}

    def state_dict(self) -> dict:
        d = {"broadcast": self.broadcast.state_dict(), "traces": [t.state_dict() for t in self.traces],
             "true_x": [t.state_dict() for t in self._true_x] if self._true_x else None,
             "z": [z.clone() for z in self.z], "acc": [a.clone() for a in self.acc],
             "ent_acc": [a.clone() for a in self.ent_acc],
             "z_true": [z.clone() for z in self.z_true] if self.z_true else None,
             "acc_true": [a.clone() for a in self.acc_true] if self.acc_true else None,
             "obs": self.obs_buf.clone(), "rew": self.rew_buf.clone(), "done": self.done_buf.clone(),
             "val": self.val_buf.clone(), "act": self.act_buf.clone(),
             "arrived": [{k: (v[:n].clone() if v is not None else None) for k, v in buf.items()}
                         for buf, n in zip(self.rollout_credit, self.n_arrived)],
             "t": self.t, "updates": self.updates, "entropy_sum": self.entropy_sum,
             "step_align": list(self.step_align), "step_align_n": list(self.step_align_n)}
        return d

    def load_state_dict(self, d: dict) -> None:
        def fit(name, saved, like):
            if tuple(saved.shape) != tuple(like.shape):
                raise ConfigError(f"cet_ac state {name}: shape {tuple(saved.shape)} does not fit this run's "
                                  f"{tuple(like.shape)}")
            return saved.to(dtype=like.dtype, device=like.device).clone()

        self.broadcast.load_state_dict(d["broadcast"])
        self.broadcast.buffers = [[t.to(device=self.device, dtype=self.dtype) for t in buf]
                                  for buf in self.broadcast.buffers]
        for t, s in zip(self.traces, d["traces"]):
            t.load_state_dict(s)
        if self._true_x:
            for t, s in zip(self._true_x, d["true_x"]):
                t.load_state_dict(s)
        self.z = [fit("z", s, z) for s, z in zip(d["z"], self.z)]
        self.acc = [fit("acc", s, a) for s, a in zip(d["acc"], self.acc)]
        self.ent_acc = [fit("ent_acc", s, a) for s, a in zip(d["ent_acc"], self.ent_acc)]
        if self.diagnostics:
            self.z_true = [fit("z_true", s, z) for s, z in zip(d["z_true"], self.z_true)]
            self.acc_true = [fit("acc_true", s, a) for s, a in zip(d["acc_true"], self.acc_true)]
        self.obs_buf, self.rew_buf = fit("obs", d["obs"], self.obs_buf), fit("rew", d["rew"], self.rew_buf)
        self.done_buf, self.val_buf = fit("done", d["done"], self.done_buf), fit("val", d["val"], self.val_buf)
        self.act_buf = d["act"].to(dtype=torch.long, device=self.device).clone()
        self._next_value = None
        self.n_arrived = [0] * len(self.z_shapes)
        for l, saved in enumerate(d.get("arrived") or []):  # absent in checkpoints written before the replay
            for k, v in saved.items():
                buf = self.rollout_credit[l][k]
                if (v is None) != (buf is None):
                    raise ConfigError(f"cet_ac state arrived[{l}].{k}: does not fit this run's traces")
                if v is not None:
                    n = v.shape[0]
                    buf[:n] = fit(f"arrived[{l}].{k}", v, buf[:n])
                    self.n_arrived[l] = n
        self.t, self.updates, self.entropy_sum = int(d["t"]), int(d["updates"]), float(d["entropy_sum"])
        self.step_align = [float(v) for v in d["step_align"]]
        self.step_align_n = [int(v) for v in d["step_align_n"]]

    # ------------------------------------------------------------------ acting
    def encode(self, obs: Tensor) -> Tensor:
        """Raw observations (B, obs_dim) -> the networks' input (B, n_in)."""
        obs = torch.as_tensor(obs).to(dtype=self.dtype, device=self.device)
        return split_signs(obs) if self.split_inputs else obs

    def value(self, x: Tensor) -> Tensor:
        """V(x) for encoded inputs (…, n_in) -> (…,), without gradient."""
        with torch.no_grad():
            return self.critic(x).squeeze(-1)

    def act(self, obs: Tensor) -> Tensor:
        """Sample actions (B,) for raw observations (B, obs_dim); keeps what the step's credit needs."""
        if self._pending is not None:
            raise ConfigError("CETActorCritic.act called twice without observe (one observe per step)")
        x = self.encode(obs)
        if tuple(x.shape) != (self.B, self.sizes[0]):
            raise ConfigError(f"observations of shape {tuple(torch.as_tensor(obs).shape)} do not fit "
                              f"{self.B} environments and the actor's input {self.sizes[0]}")
        with torch.no_grad():
            sweep = self.actor.sweep(x.unsqueeze(-2))
            inputs = [i.squeeze(-2) for i in sweep.inputs]
            preacts = [h.squeeze(-2) for h in sweep.preacts]
            logits = sweep.logits.squeeze(-2)
            probs = torch.softmax(logits, dim=-1)
            a = torch.multinomial(probs, 1, generator=self.generator).squeeze(-1)
            weights = [layer.weight for layer in self.actor.layers]
            act_fn = self.actor.spec.activation
            pre, post = backprop_credits(weights, preacts, log_policy_grad(logits, a), act_fn)
            ent, ent_top = entropy_and_grad(logits)
            ent_pre, _ = backprop_credits(weights, preacts, ent_top, act_fn)
            for l in range(len(weights)):  # the entropy bonus: exact, now (the authors' code)
                self.ent_acc[l] += ent_pre[l].transpose(0, 1) @ inputs[l]
            self.entropy_sum += float(ent.sum())
            fps = [ACTIVATION_GRADS[self.actor.activation_of(l)](h) for l, h in enumerate(preacts)]
        # V(s_t) was computed as V(s_t+1) of the last step unless an environment was reset in between
        cached = self._next_value
        v = cached[1] if cached is not None and torch.equal(cached[0], x) else self.value(x)
        self._pending = {"x": x, "a": a, "inputs": inputs, "pre": pre, "post": post, "fps": fps, "v": v}
        return a

    # ------------------------------------------------------------------ learning
    def observe(self, reward, done, next_obs) -> bool:
        """The step's reward (B,), end flags (B,) (terminated or truncated) and next observations.

        Advances the delay lines and traces, accumulates the actor's update, stores the rollout;
        at the end of a rollout writes ``.grad`` of actor and critic (clipped) and returns True
        (the caller steps the optimizer), else False.
        """
        p = self._pending
        if p is None:
            raise ConfigError("CETActorCritic.observe called without act")
        self._pending = None
        dt = {"dtype": self.dtype, "device": self.device}
        r = torch.as_tensor(reward).to(**dt).reshape(self.B)
        d = torch.as_tensor(done).to(**dt).reshape(self.B)
        x_next = self.encode(next_obs)
        v_next = self.value(x_next)
        self._next_value = (x_next, v_next)
        delta = r + self.gamma * (1.0 - d) * v_next - p["v"]
        # the rollout (the critic's λ-return needs it whole)
        self.obs_buf[self.t], self.rew_buf[self.t], self.done_buf[self.t] = p["x"], r, d
        self.val_buf[self.t], self.act_buf[self.t] = p["v"], p["a"]
        self.t += 1
        credit = p["post"] if self.trace_on == "synapse" else p["pre"]
        last = len(self.actor.layers) - 1
        inputs, fps = p["inputs"], p["fps"]
        if self.trace_on == "presynaptic":
            us = true_us = inputs
        elif self.trace_on == "synapse":
            us = true_us = [fp.unsqueeze(-1) * x.unsqueeze(-2) for fp, x in zip(fps, inputs)]
        else:  # synapse_preact: f'(h)⊗x in hidden layers (f' again in the credit), x at the output
            us = [x if l == last else fps[l].unsqueeze(-1) * x.unsqueeze(-2) for l, x in enumerate(inputs)]
            true_us = inputs
        arrived = self.broadcast.push([torch.cat([c, delta.unsqueeze(-1), d.unsqueeze(-1)], -1) for c in credit])
        eligibility = [tr.step(u) for tr, u in zip(self.traces, us)]
        exact = [tr.step(u) for tr, u in zip(self._true_x, true_us)] if self.diagnostics else None
        decay = self.gamma * self.lam
        for l, sig in enumerate(arrived):
            if sig is None:  # the first L_l steps: nothing has arrived yet
                continue
            g, dl, keep = sig[:, :-2], sig[:, -2], 1.0 - sig[:, -1]
            buf, j = self.rollout_credit[l], self.n_arrived[l]
            buf["g"][j], buf["delta"][j], buf["keep"][j] = g, dl, keep
            self.n_arrived[l] = j + 1
            if self._replay[l]:
                buf["e"][j] = eligibility[l]
            else:
                self._accumulate(self.z[l], self.acc[l], g, eligibility[l], dl, keep, decay)
            if self.diagnostics:
                if self._replay_true[l]:
                    buf["e_true"][j] = exact[l]
                else:
                    self._accumulate(self.z_true[l], self.acc_true[l], g, exact[l], dl, keep, decay)
                # the CET authors' alignment: the step's g ⊗ E against g ⊗ (activity L steps back)
                c = _pair_cosine(g, eligibility[l], exact[l])
                if not math.isnan(c):
                    self.step_align[l] += c
                    self.step_align_n[l] += 1
        if self.t < self.T:
            return False
        self._replay_arrived()
        self._update(v_next)
        self._next_value = None  # the caller now steps the critic: V(s_t+1) must be computed anew
        return True

    def _replay_arrived(self) -> None:
        """Adds the rollout's arrived credit of the factorised layers to z and acc
        (:func:`replay_lambda_trace`, equal to the per-step recursion of :meth:`_accumulate`)."""
        decay = self.gamma * self.lam
        for l, (buf, n) in enumerate(zip(self.rollout_credit, self.n_arrived)):
            g, dl, keep = buf["g"][:n], buf["delta"][:n], buf["keep"][:n]
            if self._replay[l]:
                replay_lambda_trace(self.z[l], self.acc[l], g, buf["e"][:n], dl, keep, decay)
            if self.diagnostics and self._replay_true[l]:
                replay_lambda_trace(self.z_true[l], self.acc_true[l], g, buf["e_true"][:n], dl, keep, decay)
        self.n_arrived = [0] * len(self.rollout_credit)

    @staticmethod
    def _accumulate(z: Tensor, acc: Tensor, g: Tensor, e: Tensor, delta: Tensor, keep: Tensor, decay: float) -> None:
        """In place: z ← decay·z + g ⊗ e (per environment), acc += Σ_b δ_b z_b, z ← keep·z.

        g (B, n_out); e (B, n_in) (factorised) or (B, n_out, n_in) (per synapse); z (B, n_out, n_in)."""
        if e.dim() == 2:
            z.baddbmm_(g.unsqueeze(-1), e.unsqueeze(-2), beta=decay)  # one fused batched outer product
        else:
            z.mul_(decay).addcmul_(g.unsqueeze(-1), e)
        acc.add_(torch.tensordot(delta, z, dims=1))
        z.mul_(keep.view(-1, 1, 1))

    def _update(self, v_next: Tensor) -> None:
        """End of a rollout: critic loss by backprop, actor .grad from the accumulated credit,
        global norm clip; resets the rollout's accumulators (traces and delay lines carry on)."""
        n = float(self.B * self.T)
        _, returns = gae(self.rew_buf, self.val_buf, self.done_buf, v_next, self.gamma, self.lam)
        for prm in self.critic.parameters():
            prm.grad = None
        with torch.enable_grad():
            v = self.critic(self.obs_buf).squeeze(-1)
            v_loss = 0.5 * ((v - returns) ** 2).mean()
            (self.vf_coef * v_loss).backward()
        align = {}
        pg = [a / n for a in self.acc]
        for l, layer in enumerate(self.actor.layers):
            # cost convention: the optimizer descends −(policy gradient + entropy bonus)
            layer.weight.grad = -(pg[l] + self.ent_coef * self.ent_acc[l] / n)
            if self.diagnostics:
                align[f"fc{l + 1}"] = _cosine(self.acc[l], self.acc_true[l])
        if self.diagnostics:
            align["all"] = _cosine(torch.cat([a.flatten() for a in self.acc]),
                                   torch.cat([a.flatten() for a in self.acc_true]))
            for l in range(len(self.z_shapes)):
                k = self.step_align_n[l]
                align[f"step_fc{l + 1}"] = self.step_align[l] / k if k else math.nan
        norm = None
        if self.max_grad_norm is not None:
            params = list(self.actor.parameters()) + list(self.critic.parameters())
            norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        self.last = {"value_loss": float(v_loss.detach()), "entropy": self.entropy_sum / n, "alignment": align,
                     "grad_norm": norm}
        self.updates += 1
        for lst in (self.acc, self.ent_acc) + ((self.acc_true,) if self.diagnostics else ()):
            for a in lst:
                a.zero_()
        self.t, self.entropy_sum = 0, 0.0
        self.step_align, self.step_align_n = [0.0] * len(self.z_shapes), [0] * len(self.z_shapes)


def _pair_cosine(g: Tensor, e: Tensor, x: Tensor) -> float:
    """Cosine between g ⊗ e and g ⊗ x over all environments and synapses; g (B, n_out), e and x
    (B, n_in) (factorised: computed without forming the outer products) or (B, n_out, n_in)."""
    if e.dim() == 2 and x.dim() == 2:
        w = (g * g).sum(-1)  # |g_b|²: vec(g⊗e)·vec(g⊗x) = Σ_b |g_b|² e_b·x_b
        dot, ne, nx = (w * (e * x).sum(-1)).sum(), (w * (e * e).sum(-1)).sum(), (w * (x * x).sum(-1)).sum()
    else:
        ge = g.unsqueeze(-1) * (e.unsqueeze(-2) if e.dim() == 2 else e)
        gx = g.unsqueeze(-1) * (x.unsqueeze(-2) if x.dim() == 2 else x)
        dot, ne, nx = (ge * gx).sum(), (ge * ge).sum(), (gx * gx).sum()
    den = float(ne) * float(nx)
    return float(dot) / math.sqrt(den) if den > 0 else math.nan


def _cosine(a: Tensor, b: Tensor) -> float:
    """Cosine of two tensors (NaN when either is zero: nothing has arrived yet)."""
    a, b = a.double().flatten(), b.double().flatten()
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return math.nan
    return float((a @ b) / (na * nb))
