"""Tables: one token per cell. tokenizer (per-column vocabularies), data (CSV/Parquet reading, the
datamodule), adult (the Adult census data), sampling (synthetic rows, imputation), metrics (fidelity, ML
efficacy, privacy, imputation scores), and the commands tables (sample / impute) and evaluate_table."""
