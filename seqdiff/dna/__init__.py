"""DNA: everything specific to nucleotide sequences.

tokenizer (char + k-mer, complement map), genome / fetch / windows / datamodule (genomes to training windows),
markov (baseline), spec (IUPAC templates, JASPAR motifs, flanks -> Constraints), metrics (k-mer JS, GC,
motif hits, memorisation), and the commands design, fetch_genome, results_dna; downstream/ holds labelled-DNA
classification (tasks, fine-tuning, baselines).
"""
