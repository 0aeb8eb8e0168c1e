"""Tables: tokenizer round trips, strict parsing / bad input, imputation invariants, metric sanity."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqdiff.tables import metrics as T
from seqdiff.tables.data import TableDataModule, read_table
from seqdiff.tables.sampling import impute_frame, impute_tokens, sample_rows
from seqdiff.tables.tokenizer import TableTokenizer
from seqdiff.tokenizers.base import Tokenizer

from helpers import tiny_transformer

FIXTURES = Path(__file__).parent / "fixtures"
ADULT_TRAIN, ADULT_TEST = FIXTURES / "adult_train_600.csv", FIXTURES / "adult_test_200.csv"


@pytest.fixture(scope="module")
def adult():
    frame, kinds = read_table(ADULT_TRAIN)
    return frame, kinds, TableTokenizer(num_bins=16, min_count=3).fit(frame, kinds)


# ---- tokenizer --------------------------------------------------------------------------------------------
def test_adult_schema_inferred_and_protocol(adult):
    frame, kinds, tok = adult
    assert kinds["age"] == kinds["fnlwgt"] == kinds["capital-gain"] == "integer"
    assert kinds["workclass"] == kinds["income"] == "categorical"
    assert frame["workclass"].isna().sum() > 0  # '?' read as missing
    assert isinstance(tok, Tokenizer) and tok.vocab_size == int(tok.column_of.numel())
    assert len({tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id, tok.unk_id}) == 5
    line = ("39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, "
            "40, United-States, <=50K")
    ids = tok.encode(line)
    assert len(ids) == 15 and tok.decode(ids).split(",")[1] == "State-gov"


def test_config_rebuilds_identical_tokenizer(adult):
    frame, _, tok = adult
    tok2 = instantiate(tok.config())
    assert tok2.config() == tok.config() and tok2.vocab_size == tok.vocab_size
    np.testing.assert_array_equal(tok2.encode_frame(frame), tok.encode_frame(frame))
    assert instantiate(TableTokenizer().config()).fitted is False


def test_column_allowed_blocks(adult):
    frame, _, tok = adult
    allowed = tok.column_allowed()
    assert allowed.shape == (15, tok.vocab_size)
    x = torch.from_numpy(tok.encode_frame(frame))
    assert allowed.gather(1, x.T).all()  # every real cell is in its column's alphabet
    assert (allowed[:, 5:].sum(0) == 1).all()  # column blocks are disjoint
    assert not allowed[:, tok.mask_id].any() and not allowed[:, tok.pad_id].any()
    assert not tok.column_allowed(missing=False)[torch.arange(15), tok.missing_ids()].any()


def test_adult_round_trip(adult):
    frame, kinds, tok = adult
    dec = tok.decode_frame(tok.encode_frame(frame), rng=np.random.default_rng(0))
    for c, k in kinds.items():
        assert (dec[c].isna().to_numpy() == frame[c].isna().to_numpy()).all(), c
        if k == "categorical":
            keep = frame[c].isin(tok.columns[tok.names.index(c)]["categories"]).to_numpy()
            assert (dec[c].to_numpy()[keep] == frame[c].to_numpy()[keep]).all(), c
    # education-num has 16 distinct values <= num_bins: each is its own token, exact round trip
    assert (dec["education-num"].astype(float).to_numpy() == frame["education-num"].to_numpy()).all()


cells = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "rare1", "rare2"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(5, 60), data=st.data(), num_bins=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_round_trip_property(n, data, num_bins, seed):
    rng = np.random.default_rng(seed)
    real = rng.lognormal(size=n) * rng.choice([1, 0], size=n, p=[0.7, 0.3])  # with a point mass at 0
    ints = rng.integers(-5, 1000, size=n).astype(float)
    real[rng.random(n) < 0.2] = np.nan
    cat = data.draw(st.lists(cells, min_size=n, max_size=n))
    if all(c is None for c in cat):
        cat[0] = "a"
    if np.isnan(real).all():
        real[0] = 1.5
    df = pd.DataFrame({"x": real, "i": ints, "c": pd.Series(cat, dtype=object)})
    tok = TableTokenizer(num_bins=num_bins, min_count=2).fit(df, {"x": "numeric", "i": "integer", "c": "categorical"})
    ids = tok.encode_frame(df)
    for rng_dec in (None, np.random.default_rng(seed)):
        dec = tok.decode_frame(ids, rng=rng_dec)
        for j, c in enumerate(["x", "i"]):
            orig, got = df[c].to_numpy(float), dec[c].astype(float).to_numpy()
            assert (np.isnan(orig) == np.isnan(got)).all()
            for k in np.flatnonzero(~np.isnan(orig)):
                lo, hi = tok.bin_bounds(j if c == "x" else 1, int(ids[k, j]))
                assert lo <= orig[k] <= hi and lo <= got[k] <= hi  # value and its decoding share the bin
        assert (dec["i"].astype(float) == dec["i"].astype(float).round()).all()  # integers stay integral
        counts = df["c"].value_counts()
        for k, v in enumerate(cat):
            if v is None:
                assert pd.isna(dec["c"][k])
            elif counts[v] >= 2:
                assert dec["c"][k] == v
            else:  # rare -> [UNK] -> the column's most common rare category
                assert ids[k, 2] == tok.unk_id and dec["c"][k] in set(counts[counts < 2].index)


# ---- bad input --------------------------------------------------------------------------------------------
def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_ragged_row_names_line(tmp_path):
    p = write(tmp_path, "a,b,c\n1,x,2\n3,y\n4,z,5\n")
    with pytest.raises(ValueError, match=r"line 3: expected 3 fields \(a, b, c\), got 2"):
        read_table(p)


def test_text_in_numeric_column_names_line_and_column(tmp_path):
    p = write(tmp_path, "a,b\n1,x\n2,y\nthree,z\n")
    assert read_table(p)[1]["a"] == "categorical"  # inferred: text makes it categorical
    with pytest.raises(ValueError, match=r"line 4, column 'a': cannot parse 'three'"):
        read_table(p, {"a": "integer"})
    with pytest.raises(ValueError, match=r"line 3, column 'a': '2.5' is not an integer"):
        read_table(write(tmp_path, "a,b\n1,x\n2.5,y\n", "u.csv"), {"a": "integer"})


def test_text_in_numeric_test_split_and_encode(tmp_path, adult):
    train = write(tmp_path, "a,b\n1,x\n2,y\n3,z\n", "train.csv")
    test = write(tmp_path, "a,b\n1,x\nabc,y\n", "test.csv")
    with pytest.raises(ValueError, match=r"test.csv line 3, column 'a': cannot parse 'abc'"):
        TableDataModule(str(train), TableTokenizer(), test_path=str(test))
    frame, _, tok = adult
    bad = frame.iloc[:3].astype(object).copy()
    bad.loc[bad.index[1], "age"] = "forty"
    with pytest.raises(ValueError, match=r"line 3, column 'age': cannot parse 'forty'"):
        tok.encode_frame(bad)


def test_all_missing_column_is_a_clear_error(tmp_path):
    p = write(tmp_path, "a,b\n1,?\n2,\n3,NA\n4,?\n5,?\n")
    with pytest.raises(ValueError, match=r"column 'b' is entirely missing.*data.drop=\[b\]"):
        TableDataModule(str(p), TableTokenizer(), test_fraction=0.2, valid_fraction=0.2)
    dm = TableDataModule(str(p), TableTokenizer(), drop=["b"], test_fraction=0.2, valid_fraction=0.2)
    assert dm.window == 1


def test_unseen_category_falls_back_to_unk(adult, caplog):
    frame, _, tok = adult
    new = frame.iloc[:2].copy()
    new.loc[new.index[0], "workclass"] = "Astronaut"
    with caplog.at_level(logging.WARNING):
        ids = tok.encode_frame(new)
    assert ids[0, 1] == tok.unk_id and "unseen" in caplog.text
    assert tok.decode_frame(ids)["workclass"][0] == "[UNK]"  # workclass has no rare categories here


def test_datamodule_fits_on_train_only():
    tok = TableTokenizer()
    dm = TableDataModule(str(ADULT_TRAIN), tok, target="income", test_path=str(ADULT_TEST), batch_size=32)
    assert dm.window == 15 and dm.batch_size == 32 and tok.fitted
    batch = next(iter(dm.train_dataloader()))
    assert batch["x0"].shape == (32, 15) and batch["x0"].dtype == torch.long
    assert len(dm.train_frame) + len(dm.valid_frame) == 600 and len(dm.test_frame) == 200
    ages = dm.train_frame["age"]
    assert tok.columns[0]["knots"][0][0] >= ages.min()  # bins come from the training rows only
    with pytest.raises(ValueError, match="target column 'salary'"):
        TableDataModule(str(ADULT_TRAIN), TableTokenizer(), target="salary")


def test_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    frame, kinds = read_table(ADULT_TRAIN)
    p = tmp_path / "t.parquet"
    frame.reset_index(drop=True).to_parquet(p)
    again, kinds2 = read_table(p, kinds)
    assert kinds2 == kinds and again["workclass"].isna().sum() == frame["workclass"].isna().sum()


# ---- imputation invariants --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(adult):
    torch.manual_seed(0)
    _, _, tok = adult
    return tiny_transformer(tok.vocab_size, tok.n_columns, abs_positions=True).eval()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), rate=st.floats(0.0, 1.0), rows=st.integers(1, 40))
def test_imputation_never_changes_given_cells(adult, tiny_model, seed, rate, rows):
    frame, _, tok = adult
    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(tok.encode_frame(frame.iloc[:rows]))
    hide = torch.rand(x.shape, generator=g) < rate
    # columns being imputed may not also keep given missing cells: hide those too
    hide |= hide.any(0, keepdim=True) & (x == tok.missing_ids())
    xm = torch.where(hide, tok.mask_id, x)
    out = impute_tokens(tiny_model, tok, xm, steps=8, generator=g)
    assert torch.equal(out[~hide], x[~hide])
    assert not (out == tok.mask_id).any()
    assert tok.column_allowed(missing=False).gather(1, out.T).T[hide].all()  # own alphabet, never 'missing'


def test_impute_frame_keeps_given_values_exactly(adult, tiny_model):
    frame, _, tok = adult
    masked = T.mask_cells(frame.iloc[:50], 0.3, seed=1)
    masked["workclass"] = masked["workclass"].astype(object)
    masked.loc[masked["workclass"].notna().idxmax(), "workclass"] = "Astronaut"  # unseen: given as [UNK]
    out = impute_frame(tiny_model, tok, masked, steps=8, num_draws=3)
    given = masked.notna().to_numpy()
    for j, c in enumerate(frame.columns):
        assert (out[c].to_numpy()[given[:, j]] == masked[c].to_numpy()[given[:, j]]).all(), c
    assert out.notna().all().all()
    only = impute_frame(tiny_model, tok, masked, columns=["age"], steps=8)
    assert only["age"].notna().all() and only["workclass"].isna().sum() == masked["workclass"].isna().sum()


def test_sample_rows_stay_in_column_alphabets(adult, tiny_model):
    _, _, tok = adult
    x = sample_rows(tiny_model, tok, 64, steps=16, generator=torch.Generator().manual_seed(0))
    assert tok.column_allowed().gather(1, x.T).all()
    assert tok.decode_frame(x).shape == (64, 15)


# ---- metrics ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def correlated():
    rng = np.random.default_rng(0)
    n = 1500
    z = rng.normal(size=n)
    df = pd.DataFrame({"u": z, "v": 2 * z + 0.3 * rng.normal(size=n),
                       "k": np.where(z > 0, "hi", "lo").astype(object),
                       "m": np.round(np.abs(z) * 10)})
    return df, {"u": "numeric", "v": "numeric", "k": "categorical", "m": "integer"}


def test_identical_tables_score_perfectly(correlated):
    df, kinds = correlated
    assert all(v == 1.0 for v in T.column_shapes(df, df, kinds).values())
    assert all(v == pytest.approx(1.0) for v in T.pair_trends(df, df, kinds).values())
    assert abs(T.detection_auc(df, df.copy(), kinds) - 0.5) < 0.05
    # a flexible detector scores exact copies *below* 0.5 (each held-out row's twin in the training fold
    # carries the other label): documented, and itself a sign of copying
    assert T.detection_auc(df, df.copy(), kinds, model="gbm") < 0.55
    dcr = T.distance_to_closest_record(df, df, kinds)
    assert dcr["exact_copies"] == 1.0 and dcr["median"] == 0.0


def test_shuffled_columns_break_trends_not_shapes(correlated):
    df, kinds = correlated
    rng = np.random.default_rng(1)
    shuffled = pd.DataFrame({c: df[c].to_numpy()[rng.permutation(len(df))] for c in df.columns})
    assert min(T.column_shapes(df, shuffled, kinds).values()) == pytest.approx(1.0)
    trends = T.pair_trends(df, shuffled, kinds)
    assert trends["u|v"] < 0.6 and trends["u|k"] < 0.7  # correlation ~0.99 -> ~0; contingency TV ~0.5
    assert T.detection_auc(df, shuffled, kinds, model="gbm") > 0.75  # interactions: only a non-linear detector
    assert T.detection_auc(df, df.assign(u=df["u"] + 1.0), kinds) > 0.75  # a shifted marginal: even a linear one
    indep = T.independent_columns(df, len(df))
    assert T.pair_trends(df, indep, kinds)["u|v"] < 0.6


def test_ml_efficacy_and_imputation_known_answers(correlated):
    df, kinds = correlated
    train, test = df.iloc[:1000], df.iloc[1000:]
    assert T.ml_efficacy(train, test, kinds, "k")["accuracy"] > 0.97  # k is a function of u
    noise = train.assign(k=np.random.default_rng(0).permutation(train["k"].to_numpy()))
    assert T.ml_efficacy(noise, test, kinds, "k")["accuracy"] < 0.7
    masked = T.mask_cells(test, 0.3, seed=0)
    perfect = T.imputation_scores(test, masked, test, kinds, train)
    assert perfect["accuracy"] == 1.0 and perfect["nrmse"] == 0.0
    simple = T.imputation_scores(test, masked, T.simple_impute(train, masked, kinds), kinds, train)
    knn = T.imputation_scores(test, masked, T.knn_impute(train, masked, kinds), kinds, train)
    assert knn["nrmse"] < 0.5 * simple["nrmse"] and knn["accuracy"] > simple["accuracy"]
    assert masked.isna().to_numpy().mean() == pytest.approx(0.3, abs=0.03)
