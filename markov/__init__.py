"""The markov processor: a bigram Markov melody model (the seed's simplest language model)."""
