"""Reliability, strict inputs: a table of malformed FASTA / BED / checkpoint / config inputs fed to the real entry
points. Each case either works (CRLF, lowercase, IUPAC codes) or exits with code 2 and one `error:` line that
names the file (and line, where there is one); never a traceback, never a partial output file.

`test_inputs_in_process` runs the whole table through the same wrappers the scripts use (run_hydra + run_cli)
inside pytest (fast); `test_inputs_cli` runs it as real subprocesses of scripts/train.py / scripts/evaluate.py
(slow: one interpreter start per case). Summary table: docs/reliability.md.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from seqdiff.cli import run_cli, run_hydra

from helpers import CHR20, CHR20_BED, ROOT, compose, subprocess_env
from helpers.reliability import tiny_overrides


@dataclass
class Case:
    name: str
    script: str  # "train" or "evaluate"
    args: list[str]  # overrides beyond the tiny base config; {dir} = the case's input directory
    ok: bool = False  # True: must work; False: exit 2 with one error line
    expect: str = ""  # regex the error line must match (file and line)
    fasta_valid: bool = True  # False: the FASTA itself is malformed, so no genome cache may be left behind


def fasta_lines() -> list[str]:
    return CHR20.read_text().splitlines()


def write_inputs(d: Path) -> None:
    """Malformed variants of the real chr20 fixture (same records, so the fixture BED still fits)."""
    lines = fasta_lines()
    (d / "crlf.fa").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    (d / "lower.fa").write_text("\n".join(ln if ln.startswith(">") else ln.lower() for ln in lines) + "\n")
    iupac = [ln if ln.startswith(">") or i % 7 else ln[:10] + "RYKMSWBDHVN" + ln[21:] for i, ln in enumerate(lines)]
    (d / "iupac.fa").write_text("\n".join(iupac) + "\n")
    (d / "no_header.fa").write_text("\n".join(ln for ln in lines if not ln.startswith(">")) + "\n")
    (d / "empty_record.fa").write_text(">chr20a\n>chr20b\n" + "\n".join(lines[1:]) + "\n")
    bad = list(lines)
    bad[99] = bad[99][:6] + "X" + bad[99][7:]  # line 100, column 7
    (d / "non_iupac.fa").write_text("\n".join(bad) + "\n")
    binary = list(lines)
    binary[1999] = binary[1999][:30] + "\u00e9" + binary[1999][31:]  # a UTF-8 byte pair at line 2000, column 31
    (d / "non_ascii.fa").write_bytes(("\n".join(binary) + "\n").encode())
    gz = gzip.compress(CHR20.read_bytes())
    (d / "truncated.fa.gz").write_bytes(gz[: len(gz) // 2])
    all_n = [ln if ln.startswith(">") else "N" * len(ln) for ln in lines]
    (d / "all_n.fa").write_text("\n".join(all_n) + "\n")
    bed = CHR20_BED.read_text().splitlines()
    (d / "out_of_range.bed").write_text("\n".join([*bed[:2], "chr20a\t140000\t999999\tvalid", *bed[3:]]) + "\n")
    (d / "start_after_end.bed").write_text("\n".join([bed[0], "chr20b\t40000\t0\ttrain", *bed[2:]]) + "\n")


def fa(name: str) -> list[str]:
    return [f"++data.fasta={{dir}}/{name}"]


CASES = [
    Case("fasta_crlf", "train", fa("crlf.fa"), ok=True),
    Case("fasta_lowercase", "train", fa("lower.fa"), ok=True),
    Case("fasta_iupac", "train", fa("iupac.fa"), ok=True),
    Case("fasta_no_header", "train", fa("no_header.fa"), expect=r"no_header\.fa:1: sequence before the first '>'",
         fasta_valid=False),
    Case("fasta_header_without_sequence", "train", fa("empty_record.fa"),
         expect=r"empty_record\.fa:1: header >chr20a has no sequence", fasta_valid=False),
    Case("fasta_non_iupac_byte", "train", fa("non_iupac.fa"),
         expect=r"non_iupac\.fa:100: invalid character 'X' at column 7", fasta_valid=False),
    Case("fasta_non_ascii_byte", "train", fa("non_ascii.fa"),
         expect=r"non_ascii\.fa:2000: invalid character .* column 31", fasta_valid=False),
    Case("fasta_truncated_gzip", "train", fa("truncated.fa.gz"),
         expect=r"truncated\.fa\.gz.*(truncated|ended|corrupt)", fasta_valid=False),
    Case("bed_end_out_of_range", "train", ["++data.bed={dir}/out_of_range.bed"],
         expect=r"out_of_range\.bed:3: end 999999 is beyond the end of chr20a"),
    Case("bed_start_after_end", "train", ["++data.bed={dir}/start_after_end.bed"],
         expect=r"start_after_end\.bed:2: need 0 <= start < end"),
    Case("all_n_windows", "train", fa("all_n.fa"), expect=r"all_n\.fa: train split: no 64 bp window has at most 50% N"),
    Case("unknown_config_key", "train", ["trainer.max_stepz=5"],
         expect=r"Could not override 'trainer\.max_stepz'.*\+trainer\.max_stepz=5"),
    Case("wrong_type_int", "train", ["trainer.max_steps=abc"], expect=r"trainer\.max_steps='abc': expected int"),
    Case("wrong_type_data", "train", ["data.batch_size=1.5"], expect=r"data\.batch_size=1\.5: expected int"),
    Case("unknown_group_option", "train", ["model=transformerr"], expect=r"Could not find 'model/transformerr'"),
    Case("bad_value_in_constructor", "train", ["tokenizer=kmer", "data.window=2"],
         expect=r"window 2 bp is shorter than one token \(3 bp\)"),
    Case("eval_fasta_lowercase", "evaluate", ["fasta={dir}/lower.fa"], ok=True),
    Case("eval_fasta_non_iupac_byte", "evaluate", ["fasta={dir}/non_iupac.fa"], expect=r"non_iupac\.fa:100"),
    Case("eval_fasta_no_header", "evaluate", ["fasta={dir}/no_header.fa"], expect=r"no_header\.fa:1"),
    Case("eval_truncated_checkpoint", "evaluate", ["checkpoint={dir}/truncated.ckpt"], expect=r"truncated\.ckpt"),
    Case("eval_missing_checkpoint", "evaluate", ["checkpoint={dir}/nope.ckpt"], expect=r"nope\.ckpt"),
    Case("eval_checkpoint_not_given", "evaluate", ["checkpoint=???"], expect=r"checkpoint"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Bad inputs, plus a real checkpoint (trained for 2 steps on the fixture) for the evaluate cases."""
    from seqdiff.train import train

    d = tmp_path_factory.mktemp("inputs")
    write_inputs(d)
    run = d / "good_run"
    train(compose("train", tiny_overrides(run, d / "cache_good", 2, 2)))
    shutil.copy(run / "checkpoints" / "last.ckpt", d / "model.ckpt")
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    (d / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    return d


def case_overrides(case: Case, d: Path, out: Path) -> list[str]:
    args = [a.replace("{dir}", str(d)) for a in case.args]
    if case.script == "train":
        base = tiny_overrides(out / "run", out / "cache", 2, 2)
        return [b for b in base if b.split("=")[0] not in {a.split("=")[0] for a in args}] + args
    base = [f"checkpoint={d / 'model.ckpt'}", f"out={out / 'eval.json'}", "max_windows=4", "timestep_samples=1"]
    return [b for b in base if b.split("=")[0] not in {a.split("=")[0] for a in args}] + args


def check(case: Case, code: int, stderr: str, out: Path) -> str:
    assert "Traceback" not in stderr and "Error executing job" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    if case.ok:
        assert code == 0, stderr[-3000:]
        assert not errors
        produced = out / ("run/metrics.json" if case.script == "train" else "eval.json")
        assert json.loads(produced.read_text())
        return "works"
    assert code == 2, stderr[-3000:]
    assert len(errors) == 1, stderr[-3000:]
    assert re.search(case.expect, errors[0]), errors[0]
    # No partial output: no metrics, no checkpoint, no evaluation JSON, no valid-looking genome cache index.
    assert not (out / "run" / "metrics.json").exists() and not (out / "eval.json").exists()
    assert not list((out / "run").glob("checkpoints/*.ckpt")) if (out / "run").exists() else True
    if not case.fasta_valid:  # a rejected FASTA never leaves a valid-looking cache or temp files
        assert not (out / "cache" / "index.json").exists() and not list((out / "cache").glob("*.tmp"))
    return errors[0]


def run_in_process(case: Case, d: Path, out: Path, capsys) -> tuple[int, str]:
    from seqdiff.evaluate import evaluate
    from seqdiff.train import train

    fn = train if case.script == "train" else evaluate
    capsys.readouterr()
    try:
        run_hydra(lambda: run_cli(fn, compose(case.script, case_overrides(case, d, out))))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_inputs_in_process(case, inputs, tmp_path, capsys):
    code, err = run_in_process(case, inputs, tmp_path, capsys)
    check(case, code, err, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_inputs_cli(case, inputs, tmp_path):
    over = case_overrides(case, inputs, tmp_path)
    if case.script == "train":
        over = [o for o in over if not o.startswith("run_dir=")] + [f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{case.script}.py"), *over], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    answer = check(case, proc.returncode, proc.stderr, tmp_path)
    print(f"\n{case.name}: exit {proc.returncode}: {answer}")
