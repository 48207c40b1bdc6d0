"""Layer 2, files: the files people bring and take. sources.py reads rows from JSON,
JSONL, CSV, XLSX, Parquet and datasets folders; formats.py turns rows into examples and
examples into records (FORMATS: one entry per format), and imports and exports them
through storage. Imports core and storage."""
