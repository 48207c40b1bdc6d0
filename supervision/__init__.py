"""Layer 3, supervision: run supervision, in the app: starting trainer processes (and
keeping one ready), watching them, cancelling and resuming runs, recording how each
ended. The recipes that run inside those processes are in trainer/; the run records in
storage/runs.py. Imports core, storage and trainer."""
