"""Built-in processors: ``thru`` (the latency baseline) and ``markov`` (a bigram model)."""
