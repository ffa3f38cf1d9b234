"""The garbage collector, tuned for a server that streams.

Why: with CPython's defaults, a full collection walks every object alive (the
imports, URL resolvers, templates and the model client's types: ~155,000 objects
once the first answer has run) and pauses the event loop, and every stream with
it, for 80-450 ms; young collections run every 700 allocations and mostly walk
survivors, because every token keeps a few objects alive until its answer ends.
Measured with the levels of bench/run.py: at 100 answers of 500 tokens young
collections took 2.6 s of CPU in a minute of streaming, against 0.45 s tuned, and
full collections (40-55 ms pauses) no longer came at all.

What would let it go: a CPython whose collector is incremental and cheap on
long-lived objects (3.14's incremental collector is a candidate: measure first).
"""

import gc

_tuned = False


def tune_once_warm() -> None:
    """Called after an answer ends; acts once per process, when the objects that
    live for the whole process exist.

    - collects once, then moves everything alive into the permanent generation: a
      full collection no longer walks it. Frozen objects are still freed by
      reference counting; only cycles among them are never collected, so garbage
      already in cycles goes first (one full pass, once per process). A request
      in flight at that moment is alive, not garbage: requests leave no cycles
      (chat/serving/middleware.py, chat/serving/handler.py), so it is freed when
      it ends.
    - collects the young generation every 10,000 allocations instead of 700."""
    global _tuned
    if not _tuned:
        _tuned = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 10, 10)
