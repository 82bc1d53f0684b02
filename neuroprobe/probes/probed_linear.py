"""ProbedLinear: an ``nn.Linear`` whose batch rows can each carry one low-rank probe.

Branch ``b`` of a batch computes with ``W + ΔW_{a_b}``, where ``a = assignment`` (B,) holds probe
labels in 0..K (0 = null probe) and ``ΔW_k = (σ/√r) U_k V_kᵀ`` (see
:class:`~neuroprobe.probes.dictionary.ProbeDictionary`):

    y_b = x_b Wᵀ + bias + (σ/√r) (x_b V_{a_b}) U_{a_b}ᵀ

The full-rank product ``x Wᵀ`` is computed once for the whole batch; the corrections are low-rank
and computed for all branches at once, without materialising B weight matrices:

* ``mode="mask"`` (default for K·r <= 64): ``z = x [V_1 … V_K]`` (one matmul, (…, K·r)), zero every
  block but the branch's own (one-hot of ``a``), then ``y += coef · z [U_1 … U_K]ᵀ``;
  cost ``2·K·r·(n_in+n_out)`` multiply-adds per row;
* ``mode="gather"``: gather each branch's factors (B, n_in, r), (B, n_out, r) and apply them with
  two batched einsums; cost ``2·r·(n_in+n_out)`` per row plus the gather, better for large K.

Used in a recurrent transition, the same assignment is passed at every step of a window, so each
branch runs its own perturbed dynamics::

    cell = ProbedLinear(n_hidden, n_hidden, num_probes=8, rank=1, scale=1e-2)
    h = torch.zeros(B, n_hidden)
    for t in range(T):                       # loop over time only
        h = torch.tanh(x_proj[:, t] + cell(h, assignment))

A sequence input (B, T, n_in) can also be passed at once: ``cell(x, assignment)`` broadcasts the
branch's probe over every middle axis.

The probe dictionary is held as a plain attribute (not a submodule), so ``state_dict()`` is exactly
``nn.Linear``'s (``weight``, ``bias``) and a state dict from ``nn.Linear`` loads unchanged; the
probe state has its own :meth:`ProbedLinear.probe_state_dict`.  ``.to()``, ``.double()`` etc. also
move the dictionary.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuroprobe.errors import ConfigError, ShapeError
from neuroprobe.probes.dictionary import ProbeDictionary, lowrank_sum

__all__ = ["ProbedLinear", "MODES", "check_branch_labels"]

MODES = ("auto", "mask", "gather")
_MASK_MAX_KR = 64  # "auto" uses the one-hot mask up to this many correction columns K·r


def check_branch_labels(assignment: Tensor, batch: int, num_probes: int, name: str = "assignment") -> Tensor:
    """Validate a per-branch probe label vector: (batch,) integer tensor with values in 0..num_probes.

    Returns it as ``torch.long``.  Raises ShapeError / ConfigError naming ``name``.
    """
    if not isinstance(assignment, Tensor) or assignment.dim() != 1 or assignment.shape[0] != batch:
        shape = tuple(assignment.shape) if isinstance(assignment, Tensor) else type(assignment).__name__
        raise ShapeError(f"{name} must be a 1-D tensor of shape (B,) = ({batch},) matching x.shape[0], got {shape}")
    if assignment.dtype == torch.bool or assignment.is_floating_point() or assignment.is_complex():
        raise ConfigError(f"{name} must be an integer (long) tensor of probe labels, got dtype {assignment.dtype}")
    assignment = assignment.long()
    if batch and (int(assignment.min()) < 0 or int(assignment.max()) > num_probes):
        raise ConfigError(
            f"{name} values must be probe labels in 0..{num_probes} (0 = null probe), "
            f"got range {int(assignment.min())}..{int(assignment.max())}"
        )
    return assignment


class ProbedLinear(nn.Linear):
    """Drop-in ``nn.Linear`` with a probe dictionary; ``forward(x, assignment)`` probes per branch.

    Args:
        in_features, out_features, bias, device, dtype: as ``nn.Linear`` (same parameters, same
            initialisation).
        num_probes: K non-null probes (labels 1..K).
        rank: r of each probe.
        scale: σ, entry std of each probe (ΔW_k = (σ/√r) U_k V_kᵀ).
        mode: ``"auto"``, ``"mask"`` or ``"gather"`` (module docstring); all give the same result.
        **dictionary_kwargs: passed to :class:`ProbeDictionary` (``regime``, ``antithetic``,
            ``keyed``, ``seed``, ``module_id``, ...).

    Shapes: ``x`` (B, ..., in_features), ``assignment`` (B,) long in 0..K -> (B, ..., out_features).
    Without ``assignment`` (or with ``None``) the output is exactly ``nn.Linear``'s.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_probes: int = 8,
        rank: int = 1,
        bias: bool = True,
        scale: float = 1e-2,
        *,
        mode: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **dictionary_kwargs: Any,
    ) -> None:
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {v!r}")
        if not isinstance(bias, bool):
            raise ConfigError(f"bias must be True or False, got {bias!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.mode = mode
        self.dictionary = ProbeDictionary(
            out_features, in_features, num_probes=num_probes, rank=rank, scale=scale,
            dtype=self.weight.dtype, device=self.weight.device, **dictionary_kwargs,
        )  # fmt: skip

    # ----------------------------------------------------------------------- conveniences

    @property
    def num_probes(self) -> int:
        return self.dictionary.num_probes

    @property
    def rank(self) -> int:
        return self.dictionary.rank

    @property
    def scale(self) -> float:
        return self.dictionary.scale

    def refresh(self, window: int | None = None) -> Tensor:
        """Renew the probes for the next window (:meth:`ProbeDictionary.refresh`)."""
        return self.dictionary.refresh(window)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> "ProbedLinear":
        out = super()._apply(fn, recurse)
        self.dictionary.to_(dtype=self.weight.dtype, device=self.weight.device)
        return out

    def probe_state_dict(self) -> dict[str, Any]:
        """The probe dictionary's checkpoint state (``state_dict()`` holds only weight and bias)."""
        return self.dictionary.state_dict()

    def load_probe_state_dict(self, state: dict[str, Any]) -> None:
        self.dictionary.load_state_dict(state)

    def extra_repr(self) -> str:
        d = self.dictionary
        return super().extra_repr() + f", num_probes={d.num_probes}, rank={d.rank}, scale={d.scale}, regime={d.regime!r}"

    # ----------------------------------------------------------------------- forward

    def forward(self, x: Tensor, assignment: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """``x`` (B, ..., in_features), ``assignment`` (B,) long in 0..K or None -> (B, ..., out_features)."""
        if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"x must be a tensor of shape (..., in_features={self.in_features}), got {shape}")
        y = F.linear(x, self.weight, self.bias)
        if assignment is None:
            return y
        if x.dim() < 2:
            raise ShapeError(f"x must be (B, ..., in_features={self.in_features}) when an assignment is given, got {tuple(x.shape)}")
        d = self.dictionary
        a = check_branch_labels(assignment, x.shape[0], d.num_probes)
        K, r = d.num_probes, d.rank
        mode = self.mode
        if mode == "auto":
            mode = "mask" if K * r <= _MASK_MAX_KR else "gather"
        B = x.shape[0]
        if mode == "mask":
            Us, Vs = d.stacked()  # (out, K r), (in, K r): views of the stored factors
            Us, Vs = Us.to(x.dtype), Vs.to(x.dtype)
            z = x.reshape(-1, self.in_features) @ Vs  # (B·mid, K r)
            onehot = (a[:, None] == torch.arange(1, K + 1, device=a.device)).to(x.dtype) * d.coef  # (B, K)
            z = (z.view(B, -1, K, r) * onehot.view(B, 1, K, 1)).view(-1, K * r)
            # y is F.linear's fresh output (its backward does not need it): add the correction in place
            y = y if y.is_contiguous() else y.contiguous()
            y.view(-1, self.out_features).addmm_(z, Us.T)
            return y
        U, V = d.factors()
        U, V = U.to(x.dtype), V.to(x.dtype)
        zero_u = torch.zeros(1, self.out_features, r, dtype=x.dtype, device=x.device)
        zero_v = torch.zeros(1, self.in_features, r, dtype=x.dtype, device=x.device)
        Ub, Vb = torch.cat([zero_u, U])[a], torch.cat([zero_v, V])[a]  # (B, out, r), (B, in, r)
        z = torch.einsum("b...i,bir->b...r", x, Vb)
        return y + d.coef * torch.einsum("b...r,bor->b...o", z, Ub)

    # ----------------------------------------------------------------------- updates

    def collapse(self, coefficients: Tensor) -> Tensor:
        """``Σ_k c_k ΔW_k`` for the current probes, one matmul; coefficients (K,) -> (out, in).

        ``coefficients[k-1]`` weights probe label ``k`` (the null probe has no coefficient).
        """
        c = self.dictionary._check_coefficients(coefficients, "coefficients")
        U, V = self.dictionary.factors()
        return lowrank_sum(self.dictionary.coef * c, U, V).to(self.weight.dtype)

    def apply_update(self, coefficients: Tensor, alpha: float = 1.0, credit: str = "reward", accumulate: bool = False) -> Tensor:
        """Write the collapsed update into ``weight.grad`` (cost convention); returns ``weight.grad``.

        Δθ = s·α·Σ_k c_k ΔW_k with s = +1 for ``credit="reward"`` (c is reward-like, higher is
        better: the step ascends) and s = −1 for ``credit="cost"``.  ``weight.grad`` receives −Δθ
        (added to an existing grad when ``accumulate``; an existing grad buffer is overwritten in
        place otherwise), so ``torch.optim.SGD(lr=η).step()`` applies W ← W + η·Δθ, as every rule
        of :mod:`neuroprobe.rules` does.  The returned tensor is ``weight.grad`` itself (= −Δθ
        without ``accumulate``).
        """
        if credit not in ("reward", "cost"):
            raise ConfigError(f"credit must be 'reward' or 'cost', got {credit!r}")
        sign = 1.0 if credit == "reward" else -1.0
        d = self.dictionary
        c = d._check_coefficients(coefficients, "coefficients")
        U, V = d.factors()
        w = (-sign * float(alpha) * d.coef) * c  # weights of −Δθ
        g = self.weight.grad
        with torch.no_grad():
            if g is not None and accumulate:
                lowrank_sum(w, U, V, out=g, accumulate=True)
            elif g is not None and g.shape == self.weight.shape and g.dtype == self.weight.dtype:
                lowrank_sum(w, U, V, out=g)  # reuse the buffer: no (out, in) allocation
            else:
                self.weight.grad = lowrank_sum(w, U, V).to(self.weight.dtype)
        return self.weight.grad
