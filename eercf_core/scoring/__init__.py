"""Scores between texts and videos (`scores`: S_V, S_Fw, S_Fs, S_Pw, S_Ps and the rerank sum) and
rankings built from them (`ranking`: two-stage, exhaustive, candidate rerank)."""
