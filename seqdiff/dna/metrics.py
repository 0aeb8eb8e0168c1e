"""Scoring designed (or sampled) DNA against real DNA. Sequences are plain strings throughout.

- `kmer_js`: Jensen-Shannon divergence (bits, in [0, 1]) between k-mer spectra, k = 1..6.
- `gc_content`: per-sequence GC fraction.
- `satisfaction_rate`: fraction of sequences meeting every constraint of a `CompiledDesign`.
- `motif_hits`: Biopython PSSM hits on both strands, counted only where the design left the bases free.
- `nearest_neighbour_identity`: best ungapped identity of each sequence to a reference (training DNA), seeded
  by shared k-mers and streamed over the reference, so a whole chromosome fits (a memorisation check).
- `dinucleotide_shuffle` / `shuffled_baseline`: the classic null that keeps every dinucleotide count.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from seqdiff.dna.tokenizer import ACGT_CODE_LUT


def encode(seq: str | np.ndarray) -> np.ndarray:
    """str or uint8 ASCII array (e.g. `GenomeDataModule.split_arrays`) -> int64 codes, A C G T = 0..3, else -1."""
    arr = np.frombuffer(seq.encode("ascii"), dtype=np.uint8) if isinstance(seq, str) else np.asarray(seq, np.uint8)
    return ACGT_CODE_LUT[arr]


def _kmer_codes(codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rolling base-4 codes of every k-mer of codes (int64[N]) and whether it is free of N: ([N-k+1], [N-k+1])."""
    n = len(codes) - k + 1
    if n <= 0:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    out = np.zeros(n, dtype=np.int64)
    valid = np.ones(n, dtype=bool)
    for j in range(k):
        c = codes[j : j + n]
        valid &= c >= 0
        out = out * 4 + np.maximum(c, 0)
    return out, valid


def kmer_spectrum(seqs: Iterable[str], k: int) -> np.ndarray:
    """Frequencies float64[4**k] of the k-mers (read on the given strand, N-containing k-mers skipped)."""
    counts = np.zeros(4**k, dtype=np.float64)
    for s in seqs:
        codes, valid = _kmer_codes(encode(s), k)
        counts += np.bincount(codes[valid], minlength=4**k)
    total = counts.sum()
    return counts / total if total else counts


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint supports)."""
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def kmer_js(seqs: Sequence[str], reference: Sequence[str], ks: Iterable[int] = range(1, 7)) -> dict[int, float]:
    """{k: JS divergence between the k-mer spectra of seqs and reference}. Finite samples give JS > 0
    even for two sets of real DNA, so compare against a real-vs-real value of the same size."""
    return {k: js_divergence(kmer_spectrum(seqs, k), kmer_spectrum(reference, k)) for k in ks}


def gc_content(seqs: Iterable[str]) -> np.ndarray:
    """float64[n]: fraction of G or C among each sequence's A C G T bases (N ignored)."""
    out = []
    for s in seqs:
        c = encode(s)
        acgt = c >= 0
        out.append(float(np.isin(c, (1, 2)).sum() / max(acgt.sum(), 1)))
    return np.array(out)


def satisfaction_rate(seqs: Sequence[str], compiled: Any) -> float:
    """Fraction of seqs satisfying every constraint of a `seqdiff.dna.spec.CompiledDesign`."""
    return float(np.mean([compiled.satisfied(s) for s in seqs])) if len(seqs) else float("nan")


def motif_hits(seqs: Sequence[str], motif: Any, exclude: np.ndarray | None = None, rel_score: float = 0.85,
               pseudocount: float = 0.5) -> np.ndarray:
    """Hits per sequence of a Bio.motifs motif (e.g. from `load_jaspar_motif`) on both strands.

    A hit is a window whose log-odds score is at least `rel_score` of the way from the PSSM's minimum to its
    maximum (JASPAR's relative score). exclude: bool[L], positions fixed by the design; a hit overlapping any
    of them is not counted, so a placed motif is not rediscovered. Returns int64[n].
    """
    from Bio.Seq import Seq

    pssm = motif.counts.normalize(pseudocounts=pseudocount).log_odds()
    threshold = pssm.min + rel_score * (pssm.max - pssm.min)
    w = motif.length
    out = []
    for s in seqs:
        n = 0
        for pos, _score in pssm.search(Seq(s), threshold=threshold, both=True):
            start = pos if pos >= 0 else len(s) + pos  # Biopython: negative positions are - strand hits
            if exclude is not None and exclude[start : start + w].any():
                continue
            n += 1
        out.append(n)
    return np.array(out, dtype=np.int64)


def nearest_neighbour_identity(queries: Sequence[str], reference: Iterable[str | np.ndarray], k: int = 12,
                               max_hits_per_kmer: int = 64, top_diagonals: int = 4,
                               chunk: int = 4_000_000) -> np.ndarray:
    """Best ungapped identity (matches / query length) of each query, on either strand, to any stretch of
    the reference sequences (e.g. the training regions). float64[n]; NaN when the query shares no k-mer with
    the reference (then no stretch of it is an exact copy of k or more bases).

    The queries' k-mers are indexed and the reference is streamed in chunks, so a whole chromosome is fine.
    Candidate alignments are the `top_diagonals` offsets with the most shared k-mers; k-mers hitting the
    reference more than `max_hits_per_kmer` times (repeats) do not vote.
    """
    if k > 31:
        raise ValueError("k must be <= 31 (2 bits per base in an int64)")
    qs = [encode(q) for q in queries]
    rc = [np.where(c >= 0, 3 - c, -1)[::-1].copy() for c in qs]
    strands = qs + rc  # index i < n: + strand of query i; i >= n: - strand of query i - n
    codes, owner, offset = [], [], []
    for i, c in enumerate(strands):
        kc, valid = _kmer_codes(c, k)
        pos = np.flatnonzero(valid)
        codes.append(kc[pos]), owner.append(np.full(len(pos), i)), offset.append(pos)
    codes, owner, offset = np.concatenate(codes), np.concatenate(owner), np.concatenate(offset)
    order = np.argsort(codes, kind="stable")
    codes, owner, offset = codes[order], owner[order], offset[order]

    ucodes = np.unique(codes)  # repeated k-mers (poly-A, low complexity) are searched once
    u_lo, u_hi = np.searchsorted(codes, ucodes, "left"), np.searchsorted(codes, ucodes, "right")
    refs: list[str | np.ndarray] = []  # kept raw (str or uint8 ASCII); encoded chunk by chunk to save memory
    hits: list[tuple[np.ndarray, np.ndarray]] = []  # (reference position, unique query k-mer)
    n_hits = np.zeros(len(ucodes), dtype=np.int64)  # reference hits of each unique query k-mer so far
    for r, seq in enumerate(reference):
        refs.append(seq)
        for a in range(0, max(len(seq) - k + 1, 0), chunk):
            kc, valid = _kmer_codes(encode(seq[a : a + chunk + k - 1]), k)
            pos = np.flatnonzero(valid & np.isin(kc, ucodes))
            u = np.searchsorted(ucodes, kc[pos])
            n_hits += np.bincount(u, minlength=len(ucodes))
            keep = n_hits[u] <= max_hits_per_kmer  # repeats stop being collected: memory stays bounded
            hits.append((pos[keep] + a + r * (1 << 40), u[keep]))  # reference id packed in the high bits
    best = np.full(len(qs), np.nan)
    rpos = np.concatenate([h[0] for h in hits]) if hits else np.zeros(0, np.int64)
    u = np.concatenate([h[1] for h in hits]) if hits else np.zeros(0, np.int64)
    keep = n_hits[u] <= max_hits_per_kmer
    rpos, u = rpos[keep], u[keep]
    reps = u_hi[u] - u_lo[u]  # expand each hit to every query position holding that k-mer
    qidx = np.repeat(u_lo[u], reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
    if not len(qidx):
        return best
    pairs = np.stack([owner[qidx], np.repeat(rpos, reps) - offset[qidx]], axis=1)  # (query strand, diagonal)
    cand, votes = np.unique(pairs, axis=0, return_counts=True)
    order = np.lexsort((-votes, cand[:, 0]))  # by query strand, most votes first
    cand = cand[order]
    first = np.searchsorted(cand[:, 0], cand[:, 0], "left")
    for o, d in cand[np.arange(len(cand)) - first < top_diagonals].tolist():
        q = strands[o]
        r = (d + (1 << 39)) >> 40  # unpack the reference id; the diagonal may start before it (< 0)
        ref, start = refs[r], d - (r << 40)
        lo, hi = max(start, 0), min(start + len(q), len(ref))
        seg = encode(ref[lo:hi])
        qseg = q[lo - start : hi - start]
        ident = float(((seg == qseg) & (seg >= 0)).sum()) / len(q)
        i = o % len(qs)
        best[i] = ident if np.isnan(best[i]) else max(best[i], ident)
    return best


def real_windows(arrays: Sequence[str | np.ndarray], length: int, n: int, rng: np.random.Generator,
                 max_tries: int = 100) -> list[str]:
    """n random N-free windows of `length` bases from real sequences (str or uint8 ASCII arrays, e.g. a
    held-out split), each region picked in proportion to its length."""
    arrays = [a if isinstance(a, str) else np.asarray(a, np.uint8).tobytes().decode("ascii") for a in arrays]
    arrays = [a for a in arrays if len(a) >= length]
    if not arrays:
        raise ValueError(f"no real sequence is {length} bases long")
    weights = np.array([len(a) - length + 1 for a in arrays], dtype=np.float64)
    out: list[str] = []
    for _ in range(n * max_tries):
        a = arrays[int(rng.choice(len(arrays), p=weights / weights.sum()))]
        i = int(rng.integers(0, len(a) - length + 1))
        w = a[i : i + length].upper()
        if "N" not in w:
            out.append(w)
            if len(out) == n:
                return out
    raise ValueError(f"found only {len(out)} N-free windows of {length} bases in {max_tries * n} tries")


# ---- dinucleotide-shuffled baseline ------------------------------------------------------------------------
def dinucleotide_shuffle(seq: str, rng: np.random.Generator) -> str:
    """A uniformly random sequence with exactly the same dinucleotide counts (and first and last letter) as
    seq: Altschul & Erickson (1985), a random Eulerian walk whose last exit from each letter forms a tree."""
    if len(seq) <= 2:
        return seq
    edges: dict[str, list[str]] = defaultdict(list)
    for a, b in zip(seq, seq[1:], strict=False):
        edges[a].append(b)
    last = seq[-1]
    while True:  # random last-exit edges until they form an arborescence rooted at `last`
        exit_ = {v: int(rng.integers(len(e))) for v, e in edges.items() if v != last}
        if all(_reaches(v, last, edges, exit_) for v in exit_):
            break
    order: dict[str, list[str]] = {}
    for v, e in edges.items():
        e = list(e)
        tail = [e.pop(exit_[v])] if v in exit_ else []
        rng.shuffle(e)
        order[v] = e + tail
    out, used, cur = [seq[0]], defaultdict(int), seq[0]
    for _ in range(len(seq) - 1):
        nxt = order[cur][used[cur]]
        used[cur] += 1
        out.append(nxt)
        cur = nxt
    return "".join(out)


def _reaches(v: str, root: str, edges: dict[str, list[str]], exit_: dict[str, int]) -> bool:
    seen = set()
    while v != root:
        if v in seen:
            return False
        seen.add(v)
        v = edges[v][exit_[v]]
    return True


def shuffled_baseline(real: Sequence[str], rng: np.random.Generator, compiled: Any = None) -> list[str]:
    """Dinucleotide-shuffle each real sequence; with a CompiledDesign, then impose its constraints (fixed bases
    written in, restricted positions redrawn uniformly from their allowed bases) so the null is a design too."""
    out = [dinucleotide_shuffle(s, rng) for s in real]
    if compiled is None:
        return out
    allowed = compiled.allowed_bases()  # (L, 4)
    designed = []
    for s in out:
        if len(s) != compiled.length:
            raise ValueError(f"baseline sequence length {len(s)} != design length {compiled.length}")
        chars = list(s)
        for i in np.flatnonzero(compiled.constrained):
            if chars[i] not in "ACGT" or not allowed[i, "ACGT".index(chars[i])]:
                chars[i] = "ACGT"[int(rng.choice(np.flatnonzero(allowed[i])))]
        designed.append("".join(chars))
    return designed


def summarize(seqs: Sequence[str], reference: Sequence[str], compiled: Any = None,
              motifs: Sequence[Any] = (), train: Iterable[str | np.ndarray] | None = None,
              ks: Iterable[int] = range(1, 7)) -> dict[str, float]:
    """One flat dict of every design metric (for TSV/JSON): js_k*, gc mean/sd, satisfaction, motif hits per kb
    of free sequence, nearest-neighbour identity to `train` (max, mean over seeded, fraction >= 0.9)."""
    out: dict[str, float] = {"n": float(len(seqs))}
    out.update({f"js_k{k}": v for k, v in kmer_js(seqs, reference, ks).items()})
    gc = gc_content(seqs)
    out.update({"gc_mean": float(gc.mean()), "gc_sd": float(gc.std()),
                "gc_reference": float(gc_content(["".join(reference)])[0])})
    exclude = None
    if compiled is not None:
        out["satisfied"] = satisfaction_rate(seqs, compiled)
        exclude = compiled.constrained
    free_kb = sum(len(s) for s in seqs) / 1000 - (0 if exclude is None else exclude.sum() * len(seqs) / 1000)
    for m in motifs:
        out[f"hits_per_kb_{m.matrix_id}"] = float(motif_hits(seqs, m, exclude).sum() / max(free_kb, 1e-9))
        out[f"hits_per_kb_{m.matrix_id}_reference"] = float(motif_hits(reference, m).sum()
                                                            / (sum(len(s) for s in reference) / 1000))
    if train is not None:
        nn = nearest_neighbour_identity(seqs, train)
        out.update({"nn_identity_max": float(np.nanmax(nn)) if np.isfinite(nn).any() else float("nan"),
                    "nn_identity_mean": float(np.nanmean(nn)) if np.isfinite(nn).any() else float("nan"),
                    "nn_identity_ge_0.9": float(np.mean(np.nan_to_num(nn) >= 0.9))})
    return out
