"""Table generation: unconditional rows and imputation of any subset of cells (no Lightning import).

Both run `seqdiff.sampling.denoise` from a partially masked row batch x (B, C): cells to generate hold the
mask token, given cells hold their own tokens. Given cells differ from row to row, so they enter through x
(SUBS carries unmasked tokens over and the sampler only ever writes masked positions) rather than through
`Constraints.fixed`, which is one pattern for the whole batch; `Constraints.allowed` restricts every column
to its own alphabet. After denoising, given cells are checked to be unchanged (an AssertionError would be a
bug in the sampler, never silently wrong output).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from seqdiff.checkpoint import LoadedModel, load
from seqdiff.device import make_generator
from seqdiff.noise import LogLinearSchedule, Schedule
from seqdiff.sampling.constraints import Constraints
from seqdiff.sampling.loop import denoise
from seqdiff.sampling.samplers import AncestralSampler
from seqdiff.tables.tokenizer import TableTokenizer


def load_table_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """`seqdiff.load` plus a check that the checkpoint is a masked-diffusion model over table rows."""
    model = load(path, device=device)
    if not isinstance(model.tokenizer, TableTokenizer) or model.objective != "mdlm":
        raise ValueError(f"{path} is not a masked-diffusion table model (tokenizer "
                         f"{type(model.tokenizer).__name__}, objective {model.objective})")
    return model


def column_constraints(tokenizer: TableTokenizer, missing: bool | Sequence[bool] = True) -> Constraints:
    """Constraints with no fixed cell and each column restricted to its alphabet. missing: whether the
    missing-value token may be generated, for all columns or per column (False for columns being imputed)."""
    allowed = tokenizer.column_allowed(missing=True)
    flags = [missing] * tokenizer.n_columns if isinstance(missing, bool) else list(missing)
    for j, keep in enumerate(flags):
        if not keep:
            allowed[j, tokenizer.missing_ids()[j]] = False
    return Constraints(torch.full((tokenizer.n_columns,), -1, dtype=torch.long), allowed)


@torch.no_grad()
def fill_masked(backbone: nn.Module, x: Tensor, mask_id: int, constraints: Constraints, steps: int | None = None,
                schedule: Schedule | None = None, batch_size: int = 1024, generator: torch.Generator | None = None,
                progress: bool = False) -> Tensor:
    """Denoise every mask token of x (N, C) in batches; tokens that are not masked never change.

    steps=None: one step per column, i.e. about one cell unmasked per row and step. In a large batch nearly
    every step unmasks some cell somewhere, so the network is called about `steps` times per batch."""
    device = next(backbone.parameters()).device
    sampler = AncestralSampler(schedule or LogLinearSchedule(), num_steps=steps or x.shape[1])
    constraints = constraints.to(device)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device)
        tokens = denoise(backbone, sampler, xb, mask_id, constraints, generator, cache=True,
                         progress=progress).tokens
        given = xb != mask_id
        assert torch.equal(tokens[given], xb[given]), "sampler changed a given cell"
        out.append(tokens.cpu())
    return torch.cat(out) if out else x.clone()


def sample_rows(backbone: nn.Module, tokenizer: TableTokenizer, num_rows: int, steps: int | None = None,
                schedule: Schedule | None = None, batch_size: int = 1024, generator: torch.Generator | None = None,
                missing: bool = True, progress: bool = False) -> Tensor:
    """LongTensor[num_rows, C] of unconditional synthetic rows (missing values generated like real ones
    unless missing=False)."""
    x = torch.full((num_rows, tokenizer.n_columns), tokenizer.mask_id, dtype=torch.long)
    return fill_masked(backbone, x, tokenizer.mask_id, column_constraints(tokenizer, missing), steps, schedule,
                       batch_size, generator, progress)


def impute_tokens(backbone: nn.Module, tokenizer: TableTokenizer, x: Tensor, steps: int | None = None,
                  schedule: Schedule | None = None, batch_size: int = 1024,
                  generator: torch.Generator | None = None, progress: bool = False) -> Tensor:
    """x: LongTensor[N, C] with mask_id in the cells to impute. Imputed cells never receive the missing
    token in columns that have any cell to impute; all other cells are returned unchanged."""
    imputed_cols = (x == tokenizer.mask_id).any(0).tolist()
    constraints = column_constraints(tokenizer, [not m for m in imputed_cols])
    # a given cell may be [UNK] (a category unseen at fit time) in a column whose alphabet lacks it
    constraints.allowed[:, tokenizer.unk_id] |= (x == tokenizer.unk_id).any(0)
    given_missing = (x == tokenizer.missing_ids()) & torch.tensor(imputed_cols)
    if given_missing.any():  # a column is imputed in some rows but explicitly missing in others
        raise ValueError("a column cannot both be imputed and keep given missing cells; mask those cells too")
    return fill_masked(backbone, x, tokenizer.mask_id, constraints, steps, schedule, batch_size, generator,
                       progress)


def _as_missing_mask(frame: pd.DataFrame, columns: Sequence[str] | None) -> np.ndarray:
    miss = frame.isna().to_numpy()
    if columns is not None:
        absent = [c for c in columns if c not in frame.columns]
        if absent:
            raise ValueError(f"columns to impute {absent} are not in the table; it has {list(frame.columns)}")
        miss &= np.isin(frame.columns, list(columns))[None, :]
    return miss


def impute_frame(backbone: nn.Module, tokenizer: TableTokenizer, frame: pd.DataFrame,
                 columns: Sequence[str] | None = None, num_draws: int = 1, steps: int | None = None,
                 schedule: Schedule | None = None, batch_size: int = 1024, seed: int = 0,
                 progress: bool = False) -> pd.DataFrame:
    """Fill the missing cells of `frame` (only in `columns` if given); every other cell is returned exactly
    as given (the original value, not its decoded bin).

    num_draws > 1: multiple imputation; each cell gets the most frequent draw (categorical) or the median
    draw (numeric), a point estimate with lower error than a single posterior sample.
    """
    frame = frame[tokenizer.names]
    miss = _as_missing_mask(frame, columns)
    x = torch.from_numpy(tokenizer.encode_frame(frame))
    x[torch.from_numpy(miss)] = tokenizer.mask_id
    gen = make_generator(seed, next(backbone.parameters()).device)
    rng = np.random.default_rng(seed)
    draws = [tokenizer.decode_frame(impute_tokens(backbone, tokenizer, x, steps, schedule, batch_size, gen, progress),
                                    rng=rng) for _ in range(max(num_draws, 1))]
    out = frame.copy()
    for j, name in enumerate(tokenizer.names):
        rows = np.flatnonzero(miss[:, j])
        if not rows.size:
            continue
        vals = pd.concat([d[name].iloc[rows].reset_index(drop=True) for d in draws], axis=1, ignore_index=True)
        if tokenizer.kinds[name] == "categorical":
            fill = vals.mode(axis=1)[0] if num_draws > 1 else vals[0]
        else:
            fill = vals.astype(float).median(axis=1)
            if tokenizer.kinds[name] == "integer":
                fill = fill.round()  # median of an even number of integers may be x.5
        col = out[name].astype(object) if tokenizer.kinds[name] == "categorical" else out[name].astype(float)
        col.iloc[rows] = fill.to_numpy()
        out[name] = col
    return out


def sample_frame(backbone: nn.Module, tokenizer: TableTokenizer, num_rows: int, steps: int | None = None,
                 schedule: Schedule | None = None, batch_size: int = 1024, seed: int = 0,
                 missing: bool = True, progress: bool = False) -> pd.DataFrame:
    """DataFrame of `num_rows` synthetic rows; numeric bins are decoded to a random value within the bin."""
    gen = make_generator(seed, next(backbone.parameters()).device)
    tokens = sample_rows(backbone, tokenizer, num_rows, steps, schedule, batch_size, gen, missing, progress)
    return tokenizer.decode_frame(tokens, rng=np.random.default_rng(seed))
