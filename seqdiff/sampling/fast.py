"""Event-driven (first-hitting) sampling for masked diffusion: one network call per unmasking event.

Why it is exact. In the MDLM reverse process a masked token at time t unmasks before s with probability
(alpha_s - alpha_t) / (1 - alpha_t), independently of every other token and of the model; only the *value*
it takes comes from p(x0 | xt). So the time at which each token unmasks can be drawn up front: starting
from all-mask at t=1, alpha(tau) = 1 - u (1 - alpha(1)) with u ~ U(0, 1), i.i.d. per masked position. The
sampler then jumps straight from one unmasking event to the next (first-hitting, Zheng et al. 2024),
calling the network once per event and never for an interval in which nothing unmasks.

- `num_steps=None`: continuous time. Event times are a.s. distinct, so exactly one token unmasks per call
  (length calls per sequence): the exact MDLM reverse process, no discretisation error.
- `num_steps=K`: times snapped to the K-step uniform grid of `AncestralSampler(K)`; tokens sharing a grid
  interval unmask together. This has exactly the distribution of the ancestral sampler with K steps (and
  its cache), but never pays for an empty step.

Batching: each row follows its own event list. Call r evaluates every row that still has an r-th event,
at that row's own time (a per-row t[B], so time-conditioned backbones stay exact), and only those rows.
Rows therefore never wait for each other's empty steps: the whole batch needs max_b(#events of row b)
calls, where the grid loop needs one per step in which *any* row changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from seqdiff.device import rand
from seqdiff.diffusion.objective import subs_log_probs
from seqdiff.noise import LogLinearSchedule, Schedule
from seqdiff.sampling.autoregressive import _autocast
from seqdiff.sampling.constraints import Constraints
from seqdiff.sampling.loop import SampleOutput
from seqdiff.sampling.samplers import sample_categorical, uniform_timesteps


def inverse_alpha(schedule: Schedule, a: Tensor, iters: int = 60) -> Tensor:
    """t with alpha(t) = a for a monotone decreasing schedule, by bisection in float64 (any schedule)."""
    lo, hi = torch.zeros_like(a, dtype=torch.float64), torch.ones_like(a, dtype=torch.float64)
    a = a.double()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = schedule.alpha(mid) > a  # alpha decreasing: alpha(mid) > a means t lies right of mid
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    return 0.5 * (lo + hi)


def unmask_events(masked: Tensor, schedule: Schedule, num_steps: int | None,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Draw when each masked position unmasks, starting from t=1.

    masked: (B, L) bool. Returns
      rank:  (B, L) long, index of the event (network call) at which the position unmasks, -1 if unmasked;
      times: (B, R) float, time of each row's r-th event (the t the network is called with), 1.0 padding;
      n_events: (B,) long, number of events of each row.
    """
    B, L = masked.shape
    a1 = float(schedule.alpha(torch.tensor(1.0, dtype=torch.float64)))
    u = rand((B, L), generator, masked.device, torch.float64)
    a_tau = 1.0 - u * (1.0 - a1)  # alpha at the unmasking time, uniform on (alpha(1), 1]
    if num_steps is None:
        key = a_tau  # smallest alpha = latest time = first event; continuous draws are distinct a.s.
    else:  # grid step k covers (t_{k+1}, t_k]: the token unmasks in the step whose alpha range holds a_tau
        grid = uniform_timesteps(num_steps, masked.device, torch.float64)
        a_grid = schedule.alpha(grid)  # increasing from alpha(1) to alpha(0)
        a_grid[-1] = 1.0  # the last step resolves every remaining mask, as AncestralSampler's s=0 step does
        key = torch.searchsorted(a_grid[1:].contiguous(), a_tau, right=False).double()  # step index 0..K-1
    # Rank events per row without a Python loop: sort keys (unmasked positions last), flag each new value.
    key = torch.where(masked, key, torch.full_like(key, torch.inf))
    skey, order = key.sort(dim=-1)
    valid = torch.isfinite(skey)
    new = valid & torch.cat([valid[:, :1], skey[:, 1:] != skey[:, :-1]], dim=1)  # first of each distinct key
    srank = new.long().cumsum(-1) - 1  # (B, L) event index in sorted order
    rank = torch.full((B, L), -1, dtype=torch.long, device=masked.device)
    rank.scatter_(1, order, torch.where(valid, srank, torch.full_like(srank, -1)))
    n_events = new.sum(-1)
    R = int(n_events.max()) if B else 0
    event_key = torch.ones(B, R, dtype=torch.float64, device=masked.device)  # padding: never used
    bi, li = new.nonzero(as_tuple=True)
    event_key[bi, srank[bi, li]] = skey[bi, li]
    if num_steps is None:
        times = inverse_alpha(schedule, event_key).float()  # the hitting times themselves
    else:
        times = grid[event_key.long().clamp_max(num_steps - 1)].float()  # the step's start time, as in the loop
    return rank, times, n_events


@torch.no_grad()
def first_hitting_denoise(
    backbone: nn.Module,
    x: Tensor,
    mask_id: int,
    schedule: Schedule | None = None,
    num_steps: int | None = None,
    constraints: Constraints | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> SampleOutput:
    """Reverse process from x (B, L) (mask = to generate, treated as masked at t=1) to clean tokens.

    Returns SampleOutput(tokens, nfe = batched network calls, steps = total unmasking events over rows).
    """
    schedule = schedule or LogLinearSchedule()
    x = x.clone()
    rank, times, n_events = unmask_events(x == mask_id, schedule, num_steps, generator)
    nfe = 0
    for r in range(times.shape[1]):
        rows = (n_events > r).nonzero().flatten()  # rows with an r-th event; the others are done
        xa = x[rows]
        with _autocast(dtype, x.device):
            logits = backbone(xa, times[rows, r])
        nfe += 1
        hit = rank[rows] == r  # (b, L) positions unmasking now
        bi, li = hit.nonzero(as_tuple=True)
        log_p = subs_log_probs(logits[bi, li][:, None], xa[bi, li][:, None], mask_id)  # (n, 1, V)
        if constraints is not None and constraints.allowed is not None:
            allowed = constraints.allowed[li, : log_p.shape[-1]][:, None]
            log_p = log_p.masked_fill(~allowed, -torch.inf)
        x[rows[bi], li] = sample_categorical(log_p, generator)[:, 0]
    return SampleOutput(tokens=x, nfe=nfe, steps=int(n_events.sum()))


def first_hitting_sample(
    backbone: nn.Module,
    mask_id: int,
    num_samples: int,
    length: int,
    schedule: Schedule | None = None,
    num_steps: int | None = None,
    constraints: Constraints | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> SampleOutput:
    """Generate (num_samples, length) tokens in one window (length <= backbone.max_len)."""
    window = getattr(backbone, "max_len", None)
    if window is not None and length > window:
        raise ValueError(f"first-hitting sampling covers one window: length {length} > max_len {window}")
    device = device or next(backbone.parameters()).device
    constraints = (constraints or Constraints.free(length)).to(device)
    if constraints.length != length:
        raise ValueError(f"constraints cover {constraints.length} positions but length={length}")
    x = constraints.initial(num_samples, mask_id)
    return first_hitting_denoise(backbone, x, mask_id, schedule, num_steps, constraints, generator, dtype)
