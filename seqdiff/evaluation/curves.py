"""Learning curves from any logger's output: `logger=csv` (metrics.csv), `logger=tensorboard` (event files) or
`logger=wandb` (offline run file), read into one long table and plotted the same way.

    curves = read_curves("outputs/demo")           # finds whichever logger output the run directory holds
    plot_curves(curves, "learning_curve.png")       # train/bpb and val/bpb against the optimizer step

All three record the step as Lightning's `trainer.global_step`, so the same run gives the same curve.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pandas as pd

from seqdiff.io import savefig

COLUMNS = ["step", "metric", "value"]
DEFAULT_METRICS = ("train/bpb", "val/bpb")


def read_curves(path: str | Path) -> pd.DataFrame:
    """Long table (step, metric, value) from a run directory or one logger file; sorted by metric, step."""
    path = Path(path)
    if path.is_dir():
        path = _find_log(path)
    if path.suffix == ".csv":
        df = _read_csv(path)
    elif path.name.startswith("events.out.tfevents"):
        df = _read_tensorboard(path)
    elif path.suffix == ".wandb":
        df = _read_wandb(path)
    else:
        raise ValueError(f"{path}: not a metrics.csv, TensorBoard event file or W&B .wandb run file")
    df = df.dropna(subset=["value"])
    if df.empty:
        raise ValueError(f"{path}: no metrics logged")
    return df.sort_values(["metric", "step"], kind="stable").reset_index(drop=True)


def _find_log(run_dir: Path) -> Path:
    """The newest logger output under a run directory (CSV, then TensorBoard, then W&B, if several)."""
    for pattern in ("**/metrics.csv", "**/events.out.tfevents*", "**/run-*.wandb"):
        found = sorted(run_dir.glob(pattern), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    raise FileNotFoundError(f"{run_dir}: no logger output (metrics.csv, events.out.tfevents*, run-*.wandb)")


def _read_csv(path: Path) -> pd.DataFrame:
    wide = pd.read_csv(path)
    if "step" not in wide.columns:
        raise ValueError(f"{path}: no 'step' column (not a Lightning CSVLogger metrics.csv)")
    long = wide.drop(columns=[c for c in ("epoch",) if c in wide.columns]).melt(id_vars="step", var_name="metric")
    return long[COLUMNS].astype({"step": int, "value": float})


def _read_tensorboard(path: Path) -> pd.DataFrame:
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={SCALARS: 0})  # 0: keep every point
    acc.Reload()
    rows = [(e.step, tag, e.value) for tag in acc.Tags()["scalars"] if tag != "epoch" for e in acc.Scalars(tag)]
    return pd.DataFrame(rows, columns=COLUMNS)


# W&B writes an offline run as one `run-<id>.wandb` file: a LevelDB-style log (32 KiB blocks of records with a
# 7-byte header: crc32, length, type) of protobuf `Record`s, after a 7-byte file header ":W&B", 0xBEE1, version.
# wandb >= 0.19 no longer ships a Python reader, so this is the minimal one; `history` records hold the logged
# rows as JSON values, with Lightning's step under "trainer/global_step".
_WANDB_IDENT, _BLOCK, _FULL, _FIRST, _MIDDLE, _LAST = b":W&B", 32768, 1, 2, 3, 4


def _wandb_records(data: bytes) -> list[bytes]:
    if not data.startswith(_WANDB_IDENT):
        raise ValueError("not a W&B run file (bad header)")
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer: zero padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # padding to the end of the block (or of a file still being written)
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == _FULL:
            records.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(pending + chunk)
            pending = b""
    return records


def _read_wandb(path: Path) -> pd.DataFrame:
    import json

    from wandb.proto import wandb_internal_pb2 as pb

    try:
        raw = _wandb_records(path.read_bytes())
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    rows = []
    for data in raw:
        record = pb.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") != "history":
            continue
        values = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        step = values.pop("trainer/global_step", None)
        if step is None:
            continue
        rows += [(int(step), k, float(v)) for k, v in values.items()
                 if not k.startswith("_") and k != "epoch" and isinstance(v, (int, float))]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_curves(curves: pd.DataFrame, out: str | Path, metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
                title: str | None = None) -> Path:
    """One panel, one line per metric (markers for sparse ones such as validation); written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = [m for m in metrics if m not in set(curves["metric"])]
    if missing:
        raise ValueError(f"metrics {missing} not logged; logged: {sorted(set(curves['metric']))}")
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for m in metrics:
        c = curves[curves["metric"] == m]
        sparse = len(c) < 30
        ax.plot(c["step"], c["value"], marker="o" if sparse else None, ms=3, lw=1.2, label=m)
    values = curves[curves["metric"].isin(metrics)]["value"]
    if len(values) and values.min() > 0 and values.max() / values.min() > 10 ** 0.5 and not math.isinf(values.max()):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("bits per base" if all("bpb" in m for m in metrics) else "value")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    savefig(fig, out, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)
    return out

