"""Benchmarks for avatarsite; `make bench` runs `python -m bench.chat_sse`."""
