"""Fill-in-the-middle: context never changes (property), samplers, line holes and bad input."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdiff.code.fim import (
    ConfidenceSampler,
    fit_context,
    infill_autoregressive,
    infill_diffusion,
    infill_lines,
    parse_line_range,
    split_lines,
)
from seqdiff.code.tokenizer import CodeBPETokenizer

from helpers import ROOT, subprocess_env, tiny_transformer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCE = (STDLIB / "bisect.py").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tok() -> CodeBPETokenizer:
    return CodeBPETokenizer(vocab_size=400).fit([(STDLIB / f).read_text(encoding="utf-8")
                                                 for f in ("bisect.py", "heapq.py", "colorsys.py")])


@pytest.fixture(scope="module")
def models(tok):
    torch.manual_seed(0)
    return tiny_transformer(tok.vocab_size, 128).eval(), tiny_transformer(tok.vocab_size, 128, causal=True).eval()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_diffusion_never_changes_context(tok, models, data):
    ids = tok.encode(SOURCE)
    a = data.draw(st.integers(0, len(ids) - 1), label="hole start")
    hole_len = data.draw(st.integers(1, 40), label="hole length")
    mode = data.draw(st.sampled_from(["oracle", "budget"]))
    prefix, suffix = ids[:a], ids[a + hole_len :]
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    r = infill_diffusion(models[0], tok, prefix, suffix, hole_len, mode, generator=g)
    start, stop = r.hole
    left, right = fit_context([tok.bos_id, *prefix], [*suffix, tok.eos_id], 128 - hole_len)
    assert r.window[:start].tolist() == left and r.window[stop:].tolist() == right
    assert (r.window != tok.mask_id).all()
    specials = set(range(6)) - ({tok.eom_id} if mode == "budget" else set())
    assert not specials & set(r.window[start:stop].tolist())
    assert tok.eom_id not in r.middle_ids and len(r.middle_ids) <= hole_len
    if mode == "oracle":
        assert len(r.middle_ids) == hole_len


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.integers(1, 40), n=st.integers(1, 3), mode=st.sampled_from(["oracle", "budget"]),
       ar=st.booleans())
def test_text_infill_keeps_prefix_and_suffix(tok, models, first, n, mode, ar):
    hole = split_lines(SOURCE, first, first + n - 1)
    out = infill_lines(models[1] if ar else models[0], tok, "ar" if ar else "mdlm", hole, mode, budget_per_line=8)
    assert out.text.startswith(hole.prefix) and out.text.endswith(hole.suffix)
    assert out.text == hole.prefix + out.middle + hole.suffix
    assert out.middle.endswith("\n")  # the hole was whole lines: the lines after it stay lines


def test_autoregressive_stops_at_newlines_and_uses_cache(tok, models):
    ar = models[1]
    prefix = tok.encode(SOURCE[:300])
    r = infill_autoregressive(ar, tok, prefix, max_new_tokens=30, stop_newlines=1)
    newlines = sum(int(tok.newline_count[i]) for i in r.middle_ids)
    assert len(r.middle_ids) == 30 or (newlines == 1 and tok.newline_count[r.middle_ids[-1]] == 1)
    assert r.nfe == len(r.middle_ids)
    # KV-cached greedy decoding equals recomputing the whole sequence each step
    x = r.window[None, : r.hole[0]]
    for t in r.middle_ids[:5]:
        logits = ar(x)[0, -1]
        logits[:6] = -torch.inf
        assert int(logits.argmax()) == t
        x = torch.cat([x, torch.tensor([[t]])], 1)
    with pytest.raises(ValueError, match="causal"):
        infill_autoregressive(models[0], tok, prefix, 5)


def test_confidence_sampler_one_token_per_step():
    s = ConfidenceSampler(num_steps=4)
    ts = s.timesteps().tolist()
    x = torch.full((1, 4), 9)
    logits = torch.randn(1, 4, 12, generator=torch.Generator().manual_seed(0))
    logits[..., 9] = -torch.inf  # as subs_log_probs gives the sampler: the mask is never predicted
    logp = torch.log_softmax(logits, -1)
    for i in range(4):
        new = s.step(logp, x, ts[i], ts[i + 1], mask_id=9)
        assert int((new != 9).sum() - (x != 9).sum()) == 1
        x = new
    assert (x == logp.argmax(-1)).all()


def test_fit_context_balances_sides():
    assert fit_context(list(range(10)), list(range(10)), 6) == ([7, 8, 9], [0, 1, 2])
    assert fit_context([1], list(range(10)), 6) == ([1], [0, 1, 2, 3, 4])
    assert fit_context(list(range(10)), [5], 6) == ([5, 6, 7, 8, 9], [5])


def test_line_holes_and_bad_ranges():
    h = split_lines("a\nb\nc", 2, 3)
    assert (h.prefix, h.middle, h.suffix, h.n_lines) == ("a\n", "b\nc", "", 2)
    assert split_lines("a\r\nb\x0cc\n", 2, 2).middle == "b\x0cc\n"  # only \n ends a line
    with pytest.raises(ValueError, match="empty hole"):
        split_lines("a\nb\n", 2, 1)
    with pytest.raises(ValueError, match="outside the file"):
        split_lines("a\nb\n", 2, 3)
    with pytest.raises(ValueError, match="outside the file"):
        split_lines("a\nb\n", 0, 1)
    with pytest.raises(ValueError, match="empty"):
        split_lines("", 1, 1)
    assert parse_line_range("3-5") == (3, 5) and parse_line_range(7) == (7, 7)
    with pytest.raises(ValueError, match="A-B"):
        parse_line_range("3:5")


def test_infill_script_bad_input(tmp_path):
    from omegaconf import OmegaConf

    bad = tmp_path / "latin1.py"
    bad.write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    good = tmp_path / "ok.py"
    good.write_text("x = 1\ny = 2\n")
    from seqdiff.code.infill import infill_file

    cases = [(good, "2-1", "empty hole"), (good, "2-9", "outside the file"), (good, "a-b", "A-B"),
             (tmp_path / "none.py", "1-1", "No such file")]
    for path, lines, message in cases:
        cfg = OmegaConf.create({"checkpoint": "missing.ckpt", "file": str(path), "lines": lines})
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            infill_file(cfg)


@pytest.mark.slow  # a fresh interpreter importing torch + Lightning: slow on a loaded machine
def test_infill_script_exit_code(tmp_path):
    bad = tmp_path / "latin1.py"
    bad.write_bytes("s = 'caf\xe9'\n".encode("latin-1"))
    # through the command line: one clear line on stderr, exit code 2
    p = subprocess.run([sys.executable, str(ROOT / "scripts/infill.py"), "checkpoint=missing.ckpt", f"file={bad}",
                        "lines=1-1"], capture_output=True, text=True, cwd=ROOT, env=subprocess_env())
    assert p.returncode == 2 and "error:" in p.stderr and "not valid UTF-8" in p.stderr, p.stderr
