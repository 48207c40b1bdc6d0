"""Layer 1, storage: the SQLite database of a data home (conversations, examples, facts,
runs, votes, settings, migrations) and the rules of which example goes where
(placement.py). Every query the app runs is here. Imports core only."""
