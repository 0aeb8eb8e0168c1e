"""Genome cache, splits, windowed datasets and the datamodule, on a real 300 kb slice of GRCh37 chr20."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from seqdiff.dna.datamodule import GenomeDataModule
from seqdiff.dna.fetch import GenomeNotFoundError, genome_files
from seqdiff.dna.genome import Genome, Region, bed_splits, fraction_splits
from seqdiff.dna.tokenizer import KmerTokenizer, NucleotideTokenizer
from seqdiff.dna.windows import fasta_windows

FIXTURES = Path(__file__).parent / "fixtures"
CONFIGS = Path(__file__).parents[1] / "configs"
CHAR, KMER = NucleotideTokenizer(), KmerTokenizer(3)


@pytest.fixture
def fasta(tmp_path) -> Path:
    p = tmp_path / "chr20_300kb.fa"
    shutil.copy(FIXTURES / "chr20_300kb.fa", p)
    return p


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def fixture_seq(name: str) -> str:
    text = (FIXTURES / "chr20_300kb.fa").read_text()
    rec = text.split(f">{name}\n")[1].split(">")[0]
    return rec.replace("\n", "")


def test_genome_cache_matches_fasta_and_is_reused(fasta):
    g = Genome(fasta, progress=False)
    assert g.lengths == {"chr20a": 180_000, "chr20b": 120_000}
    assert g["chr20b"][:].tobytes().decode() == fixture_seq("chr20b")
    mtime = (fasta.parent / "cache" / "chr20a.u8").stat().st_mtime_ns
    assert Genome(fasta, progress=False).lengths == g.lengths
    assert (fasta.parent / "cache" / "chr20a.u8").stat().st_mtime_ns == mtime  # not rebuilt


def test_cache_normalises_case_iupac_and_crlf(tmp_path):
    g = Genome(write(tmp_path / "x.fa", ">s1 desc\r\nacgtRY\r\nNNa\r\n>s2\nG\n"), progress=False)
    assert g["s1"][:].tobytes() == b"ACGTNNNNA" and g["s2"][:].tobytes() == b"G"


@pytest.mark.parametrize(
    "text,match",
    [
        (">s1\nACGT\nAC*T\n", r"x\.fa:3: invalid character '\*' at column 3"),
        ("", "empty FASTA"),
        (">s1\n>s2\nACGT\n", r"x\.fa:1: header >s1 has no sequence"),
        ("ACGT\n", r"x\.fa:1: sequence before the first"),
        (">s1\nAC\n>s1\nGT\n", r"x\.fa:3: duplicate"),
    ],
)
def test_bad_fasta_errors_name_file_and_line(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        Genome(write(tmp_path / "x.fa", text), progress=False)
    assert not (tmp_path / "cache" / "index.json").exists()


def test_fraction_splits_are_disjoint_with_gaps():
    s = fraction_splits({"a": 1_000_000, "b": 500_000}, valid_frac=0.1, test_frac=0.05, gap=1000)
    assert s["train"][0] == Region("a", 0, 1_000_000 - 100_000 - 50_000 - 2000)
    for chrom in "ab":
        tr, va, te = (next(r for r in s[k] if r.chrom == chrom) for k in ("train", "valid", "test"))
        assert va.start - tr.end == 1000 and te.start - va.end == 1000
    with pytest.raises(ValueError, match="too short"):
        fraction_splits({"a": 150_000})


@pytest.mark.parametrize(
    "line,match",
    [
        ("chr20a\t500\t100\ttrain", "2: need 0 <= start < end"),
        ("chr20b\t0\t120001\ttest", "2: end 120001 is beyond the end of chr20b"),
        ("chr9\t0\t100\ttrain", "2: unknown chromosome 'chr9'"),
        ("chr20a\t0\t100\tholdout", "2: unknown split"),
        ("chr20a\t0\tx\ttrain", "2: start/end are not integers"),
    ],
)
def test_bad_bed_rows_name_file_and_line(tmp_path, line, match):
    bed = write(tmp_path / "s.bed", f"chr20a\t0\t1000\ttrain\n{line}\n")
    with pytest.raises(ValueError, match=rf"s\.bed:{match}"):
        bed_splits(bed, {"chr20a": 180_000, "chr20b": 120_000})


def test_bed_splits_fixture():
    s = bed_splits(FIXTURES / "chr20_300kb_splits.bed", {"chr20a": 180_000, "chr20b": 120_000})
    assert [len(s[k]) for k in ("train", "valid", "test")] == [2, 1, 1]


def make_dm(fasta, tokenizer=CHAR, **kw):
    args = dict(
        genome=None,
        fasta=fasta,
        window=600,
        batch_size=4,
        gap=5_000,
        train_windows_per_epoch=32,
        max_eval_windows=20,
        seed=1,
    )
    return GenomeDataModule(tokenizer, **(args | kw))


@pytest.mark.parametrize("tok", [CHAR, KMER], ids=["char", "kmer"])
def test_datamodule_batches(fasta, tok):
    dm = make_dm(fasta, tok)
    assert dm.window == 600 // tok.bases_per_token
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x0"].shape == (4, dm.window) and batch["x0"].dtype == torch.long
    assert int(batch["x0"].max()) < tok.vocab_size
    val = list(dm.val_dataloader())
    assert sum(b["x0"].shape[0] for b in val) == 20
    assert next(iter(dm.test_dataloader()))["x0"].shape[1] == dm.window


def test_train_windows_deterministic_per_epoch_and_inside_train(fasta):
    dm = make_dm(fasta, rc_augment=False)
    dm.setup("fit")
    ds, train = dm.datasets["train"], dm.splits["train"]
    pos = [ds.position(i)[0] for i in range(32)]
    again = make_dm(fasta, rc_augment=False)
    again.setup("fit")
    assert pos == [again.datasets["train"].position(i)[0] for i in range(32)]
    for r in pos:
        assert any(t.chrom == r.chrom and t.start <= r.start and r.end <= t.end for t in train)
    loader = dm.train_dataloader()
    e0 = torch.cat([b["x0"] for b in loader])
    loader.sampler.set_epoch(1)
    e1 = torch.cat([b["x0"] for b in loader])
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat([b["x0"] for b in loader]), e0) and not torch.equal(e0, e1)
    # windows are the genome bytes
    g = Genome(fasta, progress=False)
    assert CHAR.decode(ds[0]["x0"]) == g.fetch(pos[0]).tobytes().decode()


def test_rc_augment_uses_tokenizer(fasta):
    dm = make_dm(fasta, KMER, rc_augment=True)
    dm.setup("fit")
    ds = dm.datasets["train"]
    flips = [ds.position(i)[1] for i in range(32)]
    assert 0 < sum(flips) < 32
    i = flips.index(True)
    plain = torch.from_numpy(KMER.encode_bytes(np.asarray(ds.genome.fetch(ds.position(i)[0]))))
    assert torch.equal(ds[i]["x0"], KMER.reverse_complement(plain))


def test_all_n_region_is_skipped_no_nan(tmp_path):
    seq = fixture_seq("chr20a")[:60_000]
    text = ">c\n" + seq[:20_000] + "N" * 20_000 + seq[20_000:40_000] + "\n"
    dm = make_dm(
        write(tmp_path / "n.fa", text),
        valid_frac=0.0,
        test_frac=0.0,
        gap=0,
        max_n_frac=0.5,
        train_windows_per_epoch=64,
        window=1000,
    )
    dm.setup("fit")
    x = torch.stack([dm.datasets["train"][i]["x0"] for i in range(64)])
    assert ((x == CHAR.vocab["N"]).float().mean(1) <= 0.5).all()
    # an all-N split yields no eval windows (warned), never a NaN-producing batch
    bed = write(tmp_path / "n.bed", "c\t0\t20000\ttrain\nc\t20000\t40000\tvalid\nc\t40000\t60000\ttest\n")
    dm = make_dm(tmp_path / "n.fa", bed=bed, window=1000)
    with pytest.warns(UserWarning, match="more than 50% N"):
        dm.setup("validate")
    assert len(dm.datasets["valid"]) == 0


def test_window_longer_than_every_region(fasta):
    dm = make_dm(fasta, window=300_000)
    with pytest.raises(ValueError, match="longer than every region"):
        dm.setup("fit")


def test_bed_split_datamodule_and_split_arrays(fasta):
    dm = make_dm(fasta, bed=FIXTURES / "chr20_300kb_splits.bed", max_eval_windows=None)
    arrays = dm.split_arrays("train")
    assert [a.size for a in arrays] == [131072, 40000] and arrays[0].dtype == np.uint8
    assert arrays[1].tobytes().decode() == fixture_seq("chr20b")[:40000]
    codes = dm.split_codes("train")  # what count models are fitted on: A C G T N -> 0..4
    assert [c.size for c in codes] == [131072, 40000] and int(codes[1].max()) <= 4
    assert "".join("ACGTN"[int(c)] for c in codes[1][:500]) == fixture_seq("chr20b")[:500].upper()
    dm.setup("validate")
    assert len(dm.datasets["valid"]) == 40000 // 600


def test_fasta_windows_keep_last_tile_unpadded(tmp_path):
    path = write(tmp_path / "any.fa", ">a\n" + "ACGT" * 25 + "\n>b\nNNNNNNNNNN\n>c\nacg\n")
    ds = fasta_windows(path, KMER, window=60)
    assert len(ds) == 3  # a: 60 + 40; b skipped (all N); c: 3 bases
    x = ds[1]["x0"]  # 40 bases = 13 full 3-mers + a 1-base tail token, no padding
    assert x.shape == (14,) and KMER.decode(x) == ("ACGT" * 25)[60:] and int(KMER.token_bases[x].sum()) == 40
    assert KMER.decode(ds[2]["x0"]) == "ACG"
    assert ds.token_lengths() == [20, 14, 1] == [len(ds[i]["x0"]) for i in range(3)]


def test_missing_genome_names_fetch_command(tmp_path):
    with pytest.raises(GenomeNotFoundError, match=r"python scripts/fetch_genome.py sacCer_chrI"):
        genome_files("sacCer_chrI", tmp_path)
    with pytest.raises(FileNotFoundError, match="fetch_genome.py grch37_chr20"):
        GenomeDataModule(CHAR, genome="grch37_chr20", root=tmp_path).setup("fit")


@pytest.mark.parametrize("name", ["grch37_chr20", "hg38", "sacCer_chrI"])
@pytest.mark.parametrize("tok_cfg", ["char", "kmer"])
def test_configs_instantiate(name, tok_cfg, fasta):
    tok = instantiate(OmegaConf.load(CONFIGS / "tokenizer" / f"{tok_cfg}.yaml"))
    cfg = OmegaConf.load(CONFIGS / "data" / f"{name}.yaml")
    dm = instantiate(cfg, tokenizer=tok)
    assert dm.window == cfg.window // tok.bases_per_token and dm.genome_name == name
