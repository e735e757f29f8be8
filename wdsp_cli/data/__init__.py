"""Data loaders: edit requests (facts JSONL, CounterFact, zsRE) and text corpora for statistics."""
