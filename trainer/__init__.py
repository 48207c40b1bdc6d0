"""Layer 2, trainer: what runs inside a trainer process (`python -m trainer RUN_ID`):
TrainConfig, one recipe file per objective (sft, dpo, kto), the data it trains on, the
exports. Imports core and storage."""
