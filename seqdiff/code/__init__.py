"""Source code: tokenizer (byte-level BPE), data (the CPython stdlib corpus, FIM training windows), fim
(fill-in-the-middle with a diffusion or an AR model), metrics (hole tasks, exact match, parse rate), and the
commands infill and evaluate_code."""
