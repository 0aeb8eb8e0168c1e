"""Shareable safe checkpoints: save_pretrained/load round trip, export CLI, refusal of code in files."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import seqdiff
from seqdiff.checkpoint import SAFE_GLOBALS, CheckpointError, UnsafeCheckpointError

from helpers import ROOT, TINY_TRAIN_OVERRIDES, compose, run_script


class WriteFile:
    """A pickled payload: unpickling it calls Path.write_text, i.e. runs code chosen by the file's author."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def _logits(model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 4, (2, model.window), generator=g)
    with torch.no_grad():
        return model.backbone(x, torch.rand(2, generator=g))


def _malicious_checkpoint(tiny_checkpoint: Path, path: Path, target: Path) -> Path:
    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    ckpt["callbacks"]["Evil"] = WriteFile(target)  # anywhere in the file: the whole pickle is read
    torch.save(ckpt, path)
    return path


def test_round_trip_gives_identical_logits_and_safe_files(tiny_checkpoint, tmp_path):
    model = seqdiff.load(tiny_checkpoint)
    out = seqdiff.save_pretrained(model, tmp_path / "shared")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["objective"] == "mdlm" and config["tokenizer"] == model.tokenizer.config()
    with safe_open(str(out / "model.safetensors"), "pt") as f:  # raw tensors only, backbone.* keys
        assert f.keys() and all(k.startswith("backbone.") for k in f.keys())
    again = seqdiff.load(out, device="cpu")
    assert again.tokenizer.config() == model.tokenizer.config()
    assert again.schedule.config() == model.schedule.config() and again.window == model.window
    # Same weights, same module code, same inputs, same machine and op order: logits are bit-identical.
    assert torch.equal(_logits(model), _logits(again))
    # Saving again over the folder replaces it (atomic swap), and the copy of a copy is still identical.
    seqdiff.save_pretrained(again, out)
    assert torch.equal(_logits(seqdiff.load(out)), _logits(model))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_export_cli_writes_a_folder_the_other_clis_load(tiny_checkpoint, tmp_path):
    out = tmp_path / "pretrained"
    r = run_script("export.py", f"checkpoint={tiny_checkpoint}", f"out={out}")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["files"] == ["README.md", "config.json", "model.safetensors"] and summary["parameters"] > 0
    r = run_script("sample.py", f"checkpoint={out}", "num_samples=1", "length=64", "steps=4",
                   f"out={tmp_path / 's.fa'}", "progress=false")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.fa").read_text().startswith(">")


def test_trained_checkpoint_needs_no_globals_beyond_the_allow_list(tiny_checkpoint):
    # If this fails, something non-plain (a module, a dataclass, a numpy scalar) got into the checkpoint: every
    # shared checkpoint would then be refused. Store plain data instead, or allow-list that exact type.
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(tiny_checkpoint))
    allowed = {f"{t.__module__}.{t.__qualname__}" for t in SAFE_GLOBALS}
    assert set(unsafe) <= allowed


def test_pickled_payload_is_refused_and_never_runs(tiny_checkpoint, tmp_path):
    target = tmp_path / "pwned.txt"
    bad = _malicious_checkpoint(tiny_checkpoint, tmp_path / "shared.ckpt", target)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*pickled Python objects"):
        seqdiff.load(bad)
    assert not target.exists()
    r = run_script("evaluate.py", f"checkpoint={bad}", f"out={tmp_path / 'e.json'}")
    assert r.returncode == 2 and not target.exists()
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "trust_checkpoint=true" in errors[0], r.stderr
    # The payload is real: an explicitly trusted load runs it (which is why trust is off by default).
    seqdiff.load(bad, trust_checkpoint=True)
    assert target.read_text() == "pwned"


def test_resume_from_a_malicious_last_ckpt_is_refused(tiny_checkpoint, tmp_path):
    from seqdiff.train import train

    target = tmp_path / "pwned.txt"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    _malicious_checkpoint(tiny_checkpoint, tmp_path / "run" / "checkpoints" / "last.ckpt", target)
    with pytest.raises(UnsafeCheckpointError):
        train(compose("train", TINY_TRAIN_OVERRIDES, run_dir=tmp_path / "run"))
    assert not target.exists()


@pytest.mark.parametrize("part,key", [("tokenizer", "tokenizer"), ("model", "model"), ("schedule", "schedule")])
def test_foreign_target_in_a_shared_config_is_refused(tiny_checkpoint, tmp_path, part, key):
    # JSON cannot run code, but hydra.utils.instantiate calls whatever `_target_` names.
    target = tmp_path / "pwned.txt"
    out = seqdiff.save_pretrained(seqdiff.load(tiny_checkpoint), tmp_path / "shared")
    config = json.loads((out / "config.json").read_text())
    evil = {"_target_": "pathlib.Path.write_text", "self": str(target), "data": "pwned"}
    config[key] = {**config[key], "_target_": "seqdiff.io.atomic_write"} if part == "model" else evil
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsafeCheckpointError, match=f"its {part} config names _target_"):
        seqdiff.load(out)
    assert not target.exists()


def test_not_a_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        seqdiff.load(tmp_path)


# A new CLI must either take trust_checkpoint or be listed here.
NEVER_LOADS_A_MODEL = {"plot_curves", "fetch_genome", "build_genome_task", "benchmark_caduceus", "profile_step"}


def test_every_cli_that_loads_checkpoints_has_trust_checkpoint_off_by_default():
    scripts = [p for p in (ROOT / "scripts").glob("*.py") if "seqdiff.cli import run_cli" in p.read_text()]
    names = {p.read_text().split('config_name="')[1].split('"')[0] for p in scripts} - NEVER_LOADS_A_MODEL
    assert {"train", "sample", "evaluate", "export", "design", "finetune", "tables", "table_peers"} <= names
    for name in sorted(names):
        assert compose(name).trust_checkpoint is False, name
