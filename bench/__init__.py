"""Benchmark of the streaming path: what the server adds to a streamed answer, and
how many answers it carries. Run `python -m bench.run` (see bench/run.py)."""
