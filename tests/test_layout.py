"""Conventions of the layout, checked on the source tree (docs/ARCHITECTURE.md, "Conventions"):

- imports flow one way: the domain-free core never imports a domain package (dna, tables, code) or
  benchmarks; a domain never imports another domain or benchmarks; sampling, backbones, noise and
  tokenizers never import Lightning;
- every scripts/X.py is the same thin Hydra wrapper around the function X of a package module named X.py;
- every file write goes through seqdiff/io.py;
- no code comment cites an issue number; source files stay under 400 lines; ruff is clean.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

PACKAGE = ROOT / "seqdiff"
DOMAINS = ("dna", "tables", "code")
NO_LIGHTNING = ("sampling", "backbones", "noise", "tokenizers")


def _sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    """The first-level part of seqdiff a file belongs to: 'dna', 'sampling', ... or 'seqdiff' (top-level)."""
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else "seqdiff"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, including imports inside functions."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)]
            if node.module == "seqdiff":  # `from seqdiff import dna` imports the package seqdiff.dna
                out += [(node.lineno, f"seqdiff.{a.name}") for a in node.names]
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "seqdiff" and len(parts) > 1 else None


def test_imports_flow_one_way():
    bad = []
    for path in _sources(PACKAGE):
        here = _top(path)
        for line, module in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            layer = _layer(module)
            if here not in (*DOMAINS, "benchmarks") and layer in (*DOMAINS, "benchmarks"):
                bad.append(f"{where} (the core never imports a domain or benchmarks)")
            if here in DOMAINS and layer in (*DOMAINS, "benchmarks") and layer != here:
                bad.append(f"{where} (a domain imports only the core and itself)")
            if here in NO_LIGHTNING and module.split(".")[0] in ("lightning", "pytorch_lightning"):
                bad.append(f"{where} ({here} must work without Lightning)")
    assert not bad, "\n".join(bad)


def test_layering_check_sees_violations(tmp_path):
    """The checks above parse what they should: a late import inside a function counts."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from seqdiff.dna.tokenizer import NucleotideTokenizer\n    import lightning\n")
    assert _imports(f) == [(2, "seqdiff.dna.tokenizer"), (3, "lightning")]
    assert _layer("seqdiff.dna.tokenizer") == "dna" and _layer("torch") is None


# ---- scripts ------------------------------------------------------------------------------------------------
SCRIPTS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py"))
WRAPPER = '''
import hydra
from omegaconf import DictConfig

from seqdiff.cli import run_cli, run_hydra
from {module} import {name}


@hydra.main(config_path="../configs", config_name="{name}", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_cli({name}, cfg)


if __name__ == "__main__":
    {call}
'''


def _shape(body: list[ast.stmt]) -> tuple[list[str], list[str]]:
    """(imports in any order, the other statements in order) as AST dumps."""
    imports = sorted(ast.dump(n) for n in body if isinstance(n, ast.Import | ast.ImportFrom))
    return imports, [ast.dump(n) for n in body if not isinstance(n, ast.Import | ast.ImportFrom)]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_is_a_thin_wrapper(name):
    """scripts/X.py = docstring + the wrapper above, calling X from a module seqdiff/.../X.py defining X(cfg),
    with configs/X.yaml."""
    tree = ast.parse((ROOT / "scripts" / f"{name}.py").read_text())
    doc, *body = tree.body
    assert isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and "python scripts/" in doc.value.value
    imported = [n for n in body if isinstance(n, ast.ImportFrom) and n.module not in ("seqdiff.cli", "omegaconf")]
    assert len(imported) == 1, f"scripts/{name}.py imports exactly one function"
    module = imported[0].module
    call = body[-1].body[0].value  # run_hydra(main[, positional=...]) under `if __name__ == "__main__":`
    assert ast.unparse(call).startswith("run_hydra(main")
    expected = ast.parse(WRAPPER.format(module=module, name=name, call=ast.unparse(call)))
    assert _shape(body) == _shape(expected.body), f"scripts/{name}.py is not the standard wrapper"
    assert module.rsplit(".", 1)[1] == name, f"the function of scripts/{name}.py lives in a module named {name}.py"
    assert callable(getattr(importlib.import_module(module), name))
    assert (ROOT / "configs" / f"{name}.yaml").is_file()


# ---- file writes --------------------------------------------------------------------------------------------
WRITE_METHODS = {"write_text", "write_bytes", "to_csv", "to_parquet", "to_json", "savefig", "tofile", "touch"}
WRITE_FUNCTIONS = {"np.save", "np.savez", "np.savez_compressed", "numpy.save", "torch.save", "json.dump",
                   "pickle.dump", "shutil.copy", "shutil.copyfile", "shutil.copy2"}


def _writes(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        method = isinstance(node.func, ast.Attribute) and name.split(".")[0] != "io"  # not seqdiff.io's own
        attr = node.func.attr if method else name
        mode = next((a for a in node.args[1:2]), None) if attr == "open" else None
        mode = next((k.value for k in node.keywords if k.arg == "mode"), mode)
        writes_mode = isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax+")
        if (method and attr in WRITE_METHODS) or name in WRITE_FUNCTIONS or (attr == "open" and writes_mode):
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_every_file_write_goes_through_io():
    writes = [w for p in _sources(PACKAGE) + _sources(ROOT / "scripts") if p.name != "io.py" or _top(p) != "seqdiff"
              for w in _writes(p)]
    assert not writes, "write through seqdiff.io (atomic_write, write_text, write_csv, ...):\n" + "\n".join(writes)


def test_write_check_sees_writes(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("p.write_text('a')\nopen(p, 'w')\nopen(p)\ngzip.open(p, mode='wb')\ndf.to_csv(p)\ntorch.save(x, p)\n"
                 "write_text(p, 'a')\nio.write_csv(df, p)\n")  # the last two are seqdiff.io's helpers: allowed
    assert [w.split(": ", 1)[1] for w in _writes(f, tmp_path)] == ["p.write_text('a')", "open(p, 'w')",
                                                               "gzip.open(p, mode='wb')", "df.to_csv(p)",
                                                               "torch.save(x, p)"]


# ---- comments -----------------------------------------------------------------------------------------------
def test_no_issue_numbers_in_code():
    """Comments say why, not which tracker entry: a reader of the code cannot look an issue number up."""
    pattern = re.compile(r"\bissues? #?\d+", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}:{i}" for d in ("seqdiff", "scripts", "tests", "configs")
            for p in sorted((ROOT / d).rglob("*")) if p.suffix in (".py", ".yaml")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_files_stay_small():
    """A file past ~400 lines is two ideas (docs/ARCHITECTURE.md)."""
    big = [f"{p.relative_to(ROOT)}: {n} lines" for p in _sources(PACKAGE) + _sources(ROOT / "scripts")
           if (n := len(p.read_text().splitlines())) > 400]
    assert not big, big


def test_ruff_clean():
    """`make lint`: pyproject's rules, including the 120-character line length."""
    pytest.importorskip("ruff")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "seqdiff", "scripts", "tests"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]

