"""Selective scan (Mamba S6) in pure PyTorch, plus a bidirectional Mamba mixer.

The scan computes, per channel d and state n (A is diagonal, B/C are shared by the channels of a group):

    h_t[d, n] = exp(delta_t[d] * A[d, n]) * h_{t-1}[d, n] + delta_t[d] * B_t[g(d), n] * u_t[d]
    y_t[d]    = sum_n C_t[g(d), n] * h_t[d, n]  (+ D[d] * u_t[d])  (* silu(z_t[d]))

Shapes follow mamba-ssm's `selective_scan_fn` so CUDA can call its fused kernel with the same arguments:
u, delta, z: (B, D, L); A: (D, N); B, C: (B, G, N, L) with G groups dividing D (G=1 may also be given as
(B, N, L)); D, delta_bias: (D,).

Implementations (all exact; compared in scripts/benchmark_caduceus.py):
- "naive":   the textbook loop indexing x[..., i]; autograd; the test reference (backward grows like L^2).
- "unbind":  the same loop over unbind-ed steps; autograd.
- "logstep": Hillis-Steele log-step parallel scan over (B, D, L, N); autograd.
- "chunked": two-level scan: a loop of T steps inside all chunks at once, then a loop of L/T steps that
             carries the state across chunks, then a correction with the in-chunk decay products; autograd.
             Mamba-2's "matmuls within chunks" needs a decay shared by all state dims (a scalar per head);
             Mamba-1's decay exp(delta*A) differs per (d, n), so the matmul form needs either O(L*T*D*N)
             pairwise exponentials or the factorisation exp(a-b)=exp(a)exp(-b), which overflows once
             |delta*A| summed over a chunk passes ~88. Both are worse than the state-passing form used here.
- "fused":   (default) a torch.autograd.Function with a hand-written backward: the forward is one in-place
             addcmul per step on a contiguous (L, B, D, N) buffer with no autograd graph, the backward
             recomputes h (like mamba-ssm's kernel, so only (B, D, L)-sized tensors are kept between forward
             and backward) and runs the adjoint recurrence backwards in time.
On CUDA, when mamba-ssm's compiled `selective_scan_cuda` loads, `selective_scan` calls its fused kernel instead
(and `MambaMixer` calls causal-conv1d's kernel for its convolution when that loads).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SCAN_IMPLS = ("fused", "chunked", "unbind", "logstep", "naive")


@functools.cache
def _cuda_selective_scan() -> Callable | None:
    """mamba-ssm's fused CUDA kernel, imported on first CUDA use only, or None (then the PyTorch scan runs).

    Probes the compiled extension itself, not just the Python wrapper: mamba-ssm <= 2.3.2 imports
    `selective_scan_cuda` at module import (so a broken build fails the import), but later versions (state-spaces/
    mamba commit f577286, "Make CUDA selective scan install explicit opt-in") build it only with
    MAMBA_KEEP_CUDA_BUILD=TRUE, import it under try/except and set it to None, and `selective_scan_fn` then
    raises at call time."""
    try:
        from mamba_ssm.ops import selective_scan_interface as ssi
    except Exception:  # not installed, or an extension that does not load
        return None
    if getattr(ssi, "selective_scan_cuda", None) is None:
        return None
    return ssi.selective_scan_fn


@functools.cache
def _cuda_causal_conv1d() -> Callable | None:
    """causal-conv1d's CUDA kernel `causal_conv1d_fn(x (B, D, L), weight (D, W), bias, activation)`, or None.
    Importing `causal_conv1d` loads its compiled `causal_conv1d_cuda` (causal-conv1d 1.4-1.6), so an import
    that succeeds means the kernel is there."""
    try:
        from causal_conv1d import causal_conv1d_fn
    except Exception:
        return None
    return causal_conv1d_fn


def _use_cuda_kernels(x: Tensor) -> bool:
    """Whether the mamba-ssm / causal-conv1d CUDA kernels may run on x (tests monkeypatch this)."""
    return x.is_cuda


def _expand_groups(M: Tensor, D: int) -> Tensor:
    """B or C, (B, N, L) or (B, G, N, L) -> (B, D, N, L) with each group repeated over its D/G channels."""
    if M.dim() == 3:
        M = M.unsqueeze(1)
    b, g, n, L = M.shape
    if D % g:
        raise ValueError(f"{g} groups of B/C do not divide {D} channels")
    return M.unsqueeze(2).expand(b, g, D // g, n, L).reshape(b, D, n, L)


# ---------------------------------------------------------------------------------------------------------
# Autograd implementations: y (B, D, L) from u, delta (B, D, L), A (D, N), B, C (B, D, N, L) (groups expanded)


def _scan_naive(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (B, D, N)
    ys = []
    for i in range(u.shape[-1]):
        h = torch.exp(delta[:, :, i, None] * A) * h + (delta[:, :, i] * u[:, :, i])[..., None] * B[..., i]
        ys.append((h * C[..., i]).sum(-1))
    return torch.stack(ys, dim=-1)


def _scan_unbind(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    dA = torch.exp(delta.unsqueeze(-1) * A[:, None])  # (B, D, L, N)
    dBu = (delta * u).unsqueeze(-1) * B.transpose(-1, -2)  # (B, D, L, N)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    hs = []
    for a, b in zip(dA.unbind(2), dBu.unbind(2), strict=True):
        h = a * h + b
        hs.append(h)
    return (torch.stack(hs, dim=2) * C.transpose(-1, -2)).sum(-1)


def _scan_logstep(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
    a = torch.exp(delta.unsqueeze(-1) * A[:, None])  # (B, D, L, N)
    h = (delta * u).unsqueeze(-1) * B.transpose(-1, -2)
    L, k = u.shape[-1], 1
    while k < L:  # after the step with offset k, h_t holds the sum over the last 2k inputs
        h = torch.cat([h[:, :, :k], h[:, :, k:] + a[:, :, k:] * h[:, :, :-k]], dim=2)
        a = torch.cat([a[:, :, :k], a[:, :, k:] * a[:, :, :-k]], dim=2)
        k *= 2
    return (h * C.transpose(-1, -2)).sum(-1)


def _scan_chunked(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int = 32) -> Tensor:
    b, d, L = u.shape
    n = A.shape[1]
    T = min(chunk, L)
    pad = (-L) % T
    dA = torch.exp(delta.unsqueeze(-1) * A[:, None])  # (B, D, L, N)
    dBu = (delta * u).unsqueeze(-1) * B.transpose(-1, -2)
    if pad:  # identity steps (decay 1, input 0) at the end do not change the first L states
        dA = F.pad(dA, (0, 0, 0, pad), value=1.0)
        dBu = F.pad(dBu, (0, 0, 0, pad))
    nc = (L + pad) // T
    dA, dBu = dA.view(b, d, nc, T, n), dBu.view(b, d, nc, T, n)
    # 1) inside every chunk at once, from a zero state: local states and decay products since chunk start
    h, p = torch.zeros_like(dBu[:, :, :, 0]), torch.ones_like(dA[:, :, :, 0])
    hs, ps = [], []
    for a_i, b_i in zip(dA.unbind(3), dBu.unbind(3), strict=True):
        h, p = a_i * h + b_i, p * a_i
        hs.append(h)
        ps.append(p)
    h_loc, prod = torch.stack(hs, 3), torch.stack(ps, 3)  # (B, D, nc, T, N)
    # 2) carry the state across chunks (nc steps): state entering chunk c
    carry, entering = torch.zeros_like(h_loc[:, :, 0, 0]), []
    for c in range(nc):
        entering.append(carry)
        carry = prod[:, :, c, -1] * carry + h_loc[:, :, c, -1]
    h_in = torch.stack(entering, 2).unsqueeze(3)  # (B, D, nc, 1, N)
    # 3) exact states, then contract with C
    hfull = (h_loc + prod * h_in).view(b, d, nc * T, n)[:, :, :L]
    return (hfull * C.transpose(-1, -2)).sum(-1)


# ---------------------------------------------------------------------------------------------------------
# Fused CPU implementation with a hand-written backward


def _recurrence_(a: Tensor, x: Tensor, reverse: bool = False) -> Tensor:
    """In place on x (K, ...): x_t += a_t * x_{t-1} (or x_t += a_{t+1} * x_{t+1} if reverse). One op per step."""
    K = x.shape[0]
    if reverse:
        for i in range(K - 2, -1, -1):
            x[i].addcmul_(a[i + 1], x[i + 1])
    else:
        for i in range(1, K):
            x[i].addcmul_(a[i], x[i - 1])
    return x


# Elements (B*D*N per step times steps) per time block of the fused scan: blocks stay cache-resident.
FUSED_BLOCK_ELEMENTS = 2**19


class _FusedScan(torch.autograd.Function):
    """y (B, D, L) = selective scan of u, delta (B, D, L), A (D, N), B, C (B, G, N, L), no skip/gate.

    Works time-major ((L, B, D) and (L, B, D, N): one time step is one contiguous block) in time blocks of K
    steps, so the (K, B, D, N) decays and states of a block fit in cache and the full (L, B, D, N) state is
    never stored. The forward keeps only the state entering each block; the backward walks the blocks from
    the end, recomputes each block's states from its entering state, and runs the adjoint recurrence.
    """

    @staticmethod
    def _block(dl: Tensor, du: Tensor, A: Tensor, Bt: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        """Decays a_t = exp(delta_t A) and states h_t of one block (K, B, D, N), from entering state h0."""
        k, b, d = dl.shape
        g, n = Bt.shape[2], Bt.shape[3]
        dA = torch.mul(dl.unsqueeze(-1), A).exp_()
        h = (du.view(k, b, g, d // g, 1) * Bt.unsqueeze(3)).view(k, b, d, n)
        h[0].addcmul_(dA[0], h0)
        return dA, _recurrence_(dA, h)

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> Tensor:
        b, d, L = u.shape
        g, n = B.shape[1], A.shape[1]
        dl = delta.permute(2, 0, 1).contiguous()  # (L, B, D)
        du = (dl * u.permute(2, 0, 1)).contiguous()
        Bt, Ct = B.permute(3, 0, 1, 2).contiguous(), C.permute(3, 0, 1, 2).contiguous()  # (L, B, G, N)
        K = min(L, max(1, FUSED_BLOCK_ELEMENTS // (b * d * n)))
        starts = range(0, L, K)
        h_in = u.new_empty(len(starts), b, d, n)  # state entering each block
        y = u.new_empty(L, b, d)
        carry = u.new_zeros(b, d, n)
        for j, s in enumerate(starts):
            e = min(L, s + K)
            h_in[j] = carry
            _, h = _FusedScan._block(dl[s:e], du[s:e], A, Bt[s:e], carry)
            m = (e - s) * b * g
            torch.linalg.vecdot(h.view(m, d // g, n), Ct[s:e].view(m, 1, n), out=y[s:e].view(m, d // g))
            carry = h[-1]
        ctx.save_for_backward(u, dl, du, A, Bt, Ct, h_in)
        ctx.K = K
        return y.permute(1, 2, 0)

    @staticmethod
    def backward(ctx, gy: Tensor):
        u, dl, du, A, Bt, Ct, h_in = ctx.saved_tensors
        b, d, L = u.shape
        g, n, K = Bt.shape[2], A.shape[1], ctx.K
        gy = gy.permute(2, 0, 1).contiguous()  # (L, B, D)
        g_du, g_dlA = torch.empty_like(dl), torch.empty_like(dl)
        gB, gC = torch.empty_like(Bt), torch.empty_like(Ct)
        gA = torch.zeros_like(A)
        carry = dl.new_zeros(b, d, n)  # a_e * gh_e flowing into the last state of the previous block
        for j in reversed(range(len(h_in))):
            s = j * K
            e = min(L, s + K)
            m = (e - s) * b * g
            dA, h = _FusedScan._block(dl[s:e], du[s:e], A, Bt[s:e], h_in[j])
            gyv = gy[s:e].view(m, 1, d // g)
            torch.bmm(gyv, h.view(m, d // g, n), out=gC[s:e].view(m, 1, n))
            gh = (gyv.view(m, d // g, 1) * Ct[s:e].view(m, 1, n)).view(e - s, b, d, n)  # dy_t/dh_t
            gh[-1] += carry
            _recurrence_(dA, gh, reverse=True)  # adjoint: gh_t += a_{t+1} gh_{t+1}
            carry = dA[0] * gh[0]
            # through the input b_t = delta_t u_t B_t
            ghv = gh.view(m, d // g, n)
            torch.linalg.vecdot(ghv, Bt[s:e].view(m, 1, n), out=g_du[s:e].view(m, d // g))
            torch.bmm(du[s:e].view(m, 1, d // g), ghv, out=gB[s:e].view(m, 1, n))
            # through the decay a_t = exp(delta_t A): q_t = gh_t * a_t * h_{t-1}
            q = gh.mul_(dA)
            q[1:].mul_(h[:-1])
            q[0].mul_(h_in[j])
            torch.sum(torch.mul(q, A, out=dA), -1, out=g_dlA[s:e])
            gA += q.mul_(dl[s:e].unsqueeze(-1)).view(-1, d, n).sum(0)
        g_delta = g_du * u.permute(2, 0, 1) + g_dlA
        g_u = g_du * dl
        return (
            g_u.permute(1, 2, 0), g_delta.permute(1, 2, 0), gA,
            gB.permute(1, 2, 3, 0), gC.permute(1, 2, 3, 0),
        )


# ---------------------------------------------------------------------------------------------------------


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    impl: str = "fused",
) -> Tensor:
    """Selective scan with mamba-ssm's `selective_scan_fn` signature -> y (B, D, L). See the module doc."""
    if _use_cuda_kernels(u) and (fn := _cuda_selective_scan()) is not None:
        return fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    if B.dim() == 3:
        B, C = B.unsqueeze(1), C.unsqueeze(1)
    if impl == "fused":  # one dtype for its out= buffers: a common float type (float32 under bf16 autocast)
        dt = torch.promote_types(torch.promote_types(u.dtype, A.dtype), torch.float32)
        args = (t.to(dt).contiguous() for t in (u, delta, A, B, C))
        y = _FusedScan.apply(*args).to(u.dtype)
    elif impl in SCAN_IMPLS:
        fn = {"naive": _scan_naive, "unbind": _scan_unbind, "logstep": _scan_logstep, "chunked": _scan_chunked}
        y = fn[impl](u, delta, A, _expand_groups(B, u.shape[1]), _expand_groups(C, u.shape[1]))
    else:
        raise ValueError(f"unknown scan impl {impl!r}; choose from {SCAN_IMPLS}")
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


class MambaMixer(nn.Module):
    """Mamba (S6) mixer, bidirectional by default: (B, L, d_model) -> (B, L, d_model).

    in_proj -> (x, z); causal depthwise conv1d + SiLU on x; input-dependent dt, B, C from x; selective scan
    with skip D; gate silu(z); out_proj. With `bidirectional`, a second (reverse) direction sees x flipped
    along L and its output is flipped back and added (BiMamba). Each direction has its own conv, dt/B/C
    projections, A and D. With `tie=True` (Caduceus' weight tying) the in/out projections are shared; since
    they act per position, both directions then reuse one projection and one gate:
    out = out_proj((y_fwd + flip(y_rev)) * silu(z)). The directions run as one scan over k*d_inner channels in
    k groups (one B/C group per direction), which is also what mamba-ssm's kernel accepts.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        bidirectional: bool = True,
        tie: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        scan_impl: str = "fused",
    ) -> None:
        super().__init__()
        if scan_impl not in SCAN_IMPLS:
            raise ValueError(f"unknown scan_impl {scan_impl!r}; choose from {SCAN_IMPLS}")
        self.d_inner, self.d_state, self.scan_impl = expand * d_model, d_state, scan_impl
        self.k = 2 if bidirectional else 1  # number of directions
        self.tie = tie or not bidirectional
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        di, k, n_proj = self.d_inner, self.k, 1 if self.tie else self.k
        self.in_proj = nn.Linear(d_model, n_proj * 2 * di, bias=False)  # per projection: x, z
        self.conv = nn.Conv1d(k * di, k * di, d_conv, groups=k * di, padding=d_conv - 1)  # fwd | rev channels
        # per-direction x_proj (di -> dt_rank + 2N) and dt_proj (dt_rank -> di), batched over directions
        self.x_proj = nn.Parameter(torch.empty(k, di, self.dt_rank + 2 * d_state))
        self.dt_proj = nn.Parameter(torch.empty(k, self.dt_rank, di))
        nn.init.uniform_(self.x_proj, -(di**-0.5), di**-0.5)
        nn.init.uniform_(self.dt_proj, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        # dt bias so that softplus(bias) is log-uniform in [dt_min, dt_max] (Mamba's init)
        dt = torch.exp(torch.rand(k * di) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(k * di, 1))
        self.D = nn.Parameter(torch.ones(k * di))
        # no weight decay on the SSM's decay rates and skip (mamba-ssm's Mamba and Caduceus flag the same two)
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(n_proj * di, d_model, bias=False)

    def conv_silu(self, x: Tensor) -> Tensor:
        """silu(causal depthwise conv(x)), x (B, C, L) -> (B, C, L). On CUDA with causal-conv1d installed, its
        fused kernel, called as the reference Mamba block (mamba_ssm/modules/mamba_simple.py) calls it;
        elsewhere nn.Conv1d (left-padded, right end trimmed)."""
        L, width = x.shape[-1], self.conv.kernel_size[0]
        if _use_cuda_kernels(x) and 2 <= width <= 4 and (fn := _cuda_causal_conv1d()) is not None:
            return fn(x.contiguous(), self.conv.weight.squeeze(1), self.conv.bias, activation="silu")
        return F.silu(self.conv(x)[..., :L])

    def forward(self, h: Tensor) -> Tensor:
        Bsz, L, _ = h.shape
        di, N, R, k = self.d_inner, self.d_state, self.dt_rank, self.k
        xz = self.in_proj(h)  # (B, L, n_proj*2*di)
        if self.tie:
            x, z = xz.chunk(2, dim=-1)
            if k == 2:
                x = torch.cat([x, x.flip(1)], dim=-1)  # (B, L, 2di): reverse direction reads flipped input
        else:
            xf, zf, xr, zr = xz.chunk(4, dim=-1)
            x, z = torch.cat([xf, xr.flip(1)], dim=-1), torch.cat([zf, zr], dim=-1)
        x = self.conv_silu(x.transpose(1, 2))  # causal depthwise conv + SiLU, (B, k*di, L)
        dbc = torch.einsum("bkdl,kdr->bklr", x.view(Bsz, k, di, L), self.x_proj)  # (B, k, L, R + 2N)
        dt, Bm, Cm = dbc.split([R, N, N], dim=-1)
        delta = torch.einsum("bklr,krd->bkdl", dt, self.dt_proj).reshape(Bsz, k * di, L)
        y = selective_scan(
            x, delta, -torch.exp(self.A_log.float()), Bm.transpose(-1, -2), Cm.transpose(-1, -2),
            self.D.float(), delta_bias=self.dt_bias.float(), delta_softplus=True, impl=self.scan_impl,
        )  # (B, k*di, L); channel block i uses B/C group i
        y = y.transpose(1, 2)  # (B, L, k*di)
        if k == 1:
            return self.out_proj(y * F.silu(z))
        yf, yr = y[..., :di], y[..., di:].flip(1)  # reverse direction back to the forward frame
        if self.tie:
            return self.out_proj((yf + yr) * F.silu(z))
        return self.out_proj(torch.cat([yf, yr], dim=-1) * F.silu(z))
