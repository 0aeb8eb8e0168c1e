"""End to end on a tiny model trained on real DNA (tests/fixtures/chr20_300kb.fa): the design CLI (FASTA + TSV,
atomic, errors before sampling) and the design notebook executed headless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch
from Bio import SeqIO
from nbclient import NotebookClient

from seqdiff.dna.design import design
from seqdiff.dna.spec import Design

from helpers import CHR20, CHR20_BED, ROOT, TINY_MODEL_OVERRIDES, compose, subprocess_env

WINDOW = 64  # tokens; designs longer than this are generated semi-autoregressively


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """The tiny transformer trained for a few dozen steps on the chr20 fixture through `seqdiff.train`."""
    from seqdiff.train import train

    run = tmp_path_factory.mktemp("tiny_model")
    overrides = [
        "data.genome=null", f"data.fasta={CHR20}", f"data.bed={CHR20_BED}",
        f"++data.cache_dir={run / 'cache'}", f"data.window={WINDOW}", "data.batch_size=16",
        "data.train_windows_per_epoch=512", "data.max_eval_windows=8",
        *TINY_MODEL_OVERRIDES,
        "trainer.max_steps=30", "trainer.val_check_interval=30", "trainer.limit_val_batches=1",
        "++trainer.enable_progress_bar=false", "callbacks.checkpoint.every_n_train_steps=30", "~logger",
        "run_test=false",
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine
    try:
        train(compose("train", overrides, run_dir=run))
    finally:
        torch.set_num_threads(threads)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    return ckpt


def _design_cfg(ckpt: Path, out: Path, *overrides: str):
    return compose("design", [f"checkpoint={ckpt}", f"out={out}", "sampler.num_steps=12", "nelbo_samples=2",
                              "num_samples=3", *overrides])


@pytest.mark.parametrize("sampler", ["ancestral", "remasking"])
def test_design_writes_fasta_and_tsv_meeting_every_constraint(tiny_checkpoint, tmp_path, sampler):
    out = tmp_path / "designs.fasta"
    left, right = "ACGTTGCA", "TTTTGGGGCC"
    cfg = _design_cfg(tiny_checkpoint, out, f"sampler={sampler}", "length=150", f"left_flank={left}",
                      f"right_flank={right}", "motif=MA0108.2", "motif_position=60", "motif_strand=-",
                      "motif_mode=sample", "fixed={100:CAT}")
    summary = design(cfg)
    assert summary["satisfied"] == 1.0 and summary["num_samples"] == 3
    records = list(SeqIO.parse(out, "fasta"))
    assert len(records) == 3
    motifs = set()
    for r in records:
        s = str(r.seq)
        assert len(s) == 150 and set(s) <= set("ACGT")
        assert s.startswith(left) and s.endswith(right) and s[100:103] == "CAT"
        assert "constraints=ok" in r.description and "bits_per_base=" in r.description
        bpb = float(r.description.split("bits_per_base=")[1].split()[0])
        assert 0.5 < bpb < 4.0  # a barely trained model: near 2 bits/base, finite and positive
        motifs.add(r.description.split("motif=")[1])
    lines = (tmp_path / "designs.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["id", "length", "bits_per_base", "constraints", "gc", "motif"]
    assert len(lines) == 4 and all(line.split("\t")[3] == "ok" for line in lines[1:])


def test_template_design_and_reverse_strand_consensus(tiny_checkpoint, tmp_path):
    out = tmp_path / "t.fasta"
    template = "ACGT" + "N" * 30 + "RRYY" + "N" * 30 + "TTGACA"
    design(_design_cfg(tiny_checkpoint, out, f"template={template}", "num_samples=2", "batch_size=2"))
    compiled = Design.from_template(template).compile()
    for r in SeqIO.parse(out, "fasta"):
        assert compiled.satisfied(str(r.seq))


def test_contradiction_fails_before_sampling_and_writes_nothing(tiny_checkpoint, tmp_path):
    out = tmp_path / "bad.fasta"
    cfg = _design_cfg(tiny_checkpoint, out, "length=100", "left_flank=AAAA", "fixed={2:CC}")
    with pytest.raises(ValueError, match="contradictory constraints at position 2"):
        design(cfg)
    # contradiction is found even with a missing checkpoint: constraints are compiled first
    cfg = _design_cfg(tmp_path / "missing.ckpt", out, "length=30", "motif=MA0108.2", "motif_position=20")
    with pytest.raises(ValueError, match="outside the design"):
        design(cfg)
    assert list(tmp_path.iterdir()) == []


def test_cli_exit_code_and_existing_outputs_untouched(tiny_checkpoint, tmp_path):
    out = tmp_path / "designs.fasta"
    out.write_text(">old\nACGT\n")
    (tmp_path / "designs.tsv").write_text("old\n")
    cmd = [sys.executable, str(ROOT / "scripts" / "design.py"), f"checkpoint={tiny_checkpoint}", f"out={out}",
           "template=NNNNXNNNN"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=subprocess_env())
    assert res.returncode == 2, res.stderr
    assert "error: unknown IUPAC letter 'X' at position 4" in res.stderr
    assert out.read_text() == ">old\nACGT\n" and (tmp_path / "designs.tsv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["designs.fasta", "designs.tsv"]  # no temp files left


def test_notebook_runs_headless(tiny_checkpoint, tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "constrained_design.ipynb", as_version=4)
    env = {"SEQDIFF_CHECKPOINT": str(tiny_checkpoint), "SEQDIFF_DESIGN_LENGTH": "150", "SEQDIFF_NUM_SAMPLES": "3",
           "SEQDIFF_STEPS": "8", "OMP_NUM_THREADS": "1", "PYTHONPATH": subprocess_env()["PYTHONPATH"]}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
        client.execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "constrained, ancestral" in text and "js_k6" in text
    figures = [c.source for c in nb.cells if c.cell_type == "code"
               if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert len(figures) >= 2, "the figures were not rendered"
    assert any("logomaker.Logo" in src for src in figures), "the sequence logos were not rendered"
