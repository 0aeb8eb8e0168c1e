import math

import torch
from torch import nn

from seqdiff.diffusion import ar_nll, mdlm_nelbo, subs_log_probs
from seqdiff.noise import LogLinearSchedule, sample_t

from helpers import tiny_transformer

MASK = 6


class UniformACGT(nn.Module):
    """A denoiser that always predicts the uniform distribution over A, C, G, T (ids 0..3)."""

    time_conditioning = False

    def forward(self, x, t=None):
        logits = torch.full(x.shape + (10,), -1e9)
        logits[..., :4] = 0.0
        return logits


def test_subs_zero_mask_probability_and_carry_over():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 7, 10, generator=g)
    xt = torch.tensor([[0, 6, 2, 6, 3, 6, 1], [6, 6, 6, 6, 6, 6, 6]])
    lp = subs_log_probs(logits, xt, MASK)
    assert torch.all(lp[..., MASK] == -torch.inf)
    torch.testing.assert_close(lp.exp().sum(-1), torch.ones(2, 7))
    unmasked = xt != MASK
    assert torch.all(lp[unmasked].argmax(-1) == xt[unmasked])
    assert torch.all(lp[unmasked].max(-1).values == 0.0)


def test_nelbo_of_uniform_model_is_log4():
    """E_t[w(t) * (1 - alpha_t)] * log 4 = (alpha(0) - alpha(1)) log 4: checks the continuous-time weight."""
    s = LogLinearSchedule(eps=1e-3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 4, (512, 64), generator=g)
    vals = []
    for _ in range(20):
        t = sample_t(512, generator=g, eps=s.eps)
        vals.append(mdlm_nelbo(UniformACGT(), x0, s, t, MASK, generator=g).mean())
    est = torch.stack(vals).mean().item()
    assert abs(est - (1 - 1e-3) * math.log(4)) < 0.02, est


def test_nelbo_ignores_padding():
    s = LogLinearSchedule()
    x0 = torch.randint(0, 4, (4, 16))
    x0[:, 8:] = 5
    nats = mdlm_nelbo(UniformACGT(), x0, s, torch.full((4,), 0.9), MASK, loss_mask=x0 != 5)
    assert torch.all(nats[:, 8:] == 0) and torch.all(torch.isfinite(nats))


def test_ar_nll_matches_chain_rule_by_hand():
    torch.manual_seed(0)
    m = tiny_transformer(10, 8, causal=True)
    x0 = torch.tensor([[0, 1, 2, 3, 1]])
    got = ar_nll(m, x0, bos_id=7)
    hand = []
    for i in range(5):
        prefix = torch.cat([torch.tensor([[7]]), x0[:, :i]], 1)
        logp = m(prefix)[0, -1].log_softmax(-1)
        hand.append(-logp[x0[0, i]])
    torch.testing.assert_close(got[0], torch.stack(hand), rtol=1e-5, atol=1e-5)


def test_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    m = tiny_transformer(10, 32, n_layers=2, causal=True).eval()
    x = torch.randint(0, 4, (3, 20))
    caches = m.new_kv_caches()
    step = torch.cat([m(x[:, :5], kv_caches=caches)] + [m(x[:, i : i + 1], kv_caches=caches) for i in range(5, 20)], 1)
    torch.testing.assert_close(step, m(x), rtol=1e-4, atol=1e-5)


def test_time_conditioning_changes_output_only_when_enabled():
    torch.manual_seed(0)
    x = torch.randint(0, 4, (2, 16))
    for tc in (False, True):
        m = tiny_transformer(10, 16, time_conditioning=tc)
        nn.init.normal_(m.blocks[0].ada.weight, std=0.5)  # adaLN starts at zero; perturb to see t
        a, b = m(x, torch.full((2,), 0.1)), m(x, torch.full((2,), 0.9))
        assert torch.allclose(a, b) != tc


def test_train_t_power_skews_training_timesteps_only(monkeypatch):
    """objective.train_t_power=p draws training timesteps as u ** p (more lightly masked inputs for p > 1);
    validation and evaluation keep the NELBO's uniform t, so reported bits/base stay an unbiased bound."""
    import pytest

    import seqdiff.diffusion.lightning as lightning
    from seqdiff.dna.tokenizer import NucleotideTokenizer

    seen = []

    def spy(backbone, x0, schedule, t, *args, **kwargs):
        seen.append(t.clone())
        return torch.zeros_like(x0, dtype=torch.float)

    monkeypatch.setattr(lightning, "mdlm_nelbo", spy)
    tok = NucleotideTokenizer()
    model = lightning.DiffusionLM(tiny_transformer(tok.vocab_size, 32), tok, train_t_power=3.0, ema_decay=0)
    x0 = torch.randint(0, 4, (64, 32))
    torch.manual_seed(0)
    model.train()
    model.token_nats(model.backbone, x0)
    torch.manual_seed(0)
    model.eval()
    model.token_nats(model.backbone, x0)
    trained, evaluated = seen
    torch.testing.assert_close(trained, evaluated.pow(3.0).clamp_min(model.schedule.eps))
    assert trained.mean() < 0.3 < evaluated.mean()  # E[u^3] = 1/4, E[u] = 1/2
    with pytest.raises(ValueError, match="train_t_power"):
        lightning.DiffusionLM(tiny_transformer(tok.vocab_size, 32), tok, train_t_power=0.0)
