"""Outside the layers, bench: benchmarks side by side with the peers, each printing
numbers whose raw output is committed beside it (results-*.json). May import every
layer."""
