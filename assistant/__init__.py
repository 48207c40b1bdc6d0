"""Layer 2, assistant: the live model in the app's process. bases.py finds and loads a
base; engine.py streams replies and hot-swaps adapters on PyTorch; llama_engine.py
decodes the chat's replies with llama.cpp where it is installed. Imports core only."""
