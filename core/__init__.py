"""Layer 0, core: what every layer shares and nothing else (the one error type, chat
format rules, adapter folders on disk, the GGUF conversion, hardware probes). Imports
no other package of tunechat."""
