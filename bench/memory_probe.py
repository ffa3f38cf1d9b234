"""The product's ASGI application as shipped, plus a window on its memory, for
bench/stream_memory.py.

    daphne bench.memory_probe:application

GET /__bench__/memory answers JSON: the process's resident memory, the objects
the garbage collector tracks (by type), the answer streams open (waiting for
events) and the stream generators still in memory, glibc's
heap (mallinfo2: what it holds from the system, and how much of that is free)
and CPython's small-object allocator (its arenas, from sys._debugmallocstats).
With ?trim=1 it first runs a full collection and glibc's malloc_trim(0), so a
caller sees what the allocator keeps after the objects are gone. With
BENCH_TRACEMALLOC=1 in the environment it traces allocations from start-up, and
?baseline=1 / the following calls report the largest growth by line since then.
?garbage=1 collects what reference cycles alone keep, and reports it (with
&unfreeze=1, the frozen objects too).
Every other request goes to the product untouched.
"""

import collections
import ctypes
import gc
import json
import os
import re
import sys
import tempfile
import tracemalloc

if os.environ.get("BENCH_TRACEMALLOC") == "1":
    tracemalloc.start(5)

# The product's modules are imported after tracing starts.
from chatproject.asgi import application as product

_libc = ctypes.CDLL("libc.so.6")
_baseline: list[tracemalloc.Snapshot] = []


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return int(re.search(r"^VmRSS:\s+(\d+)", status.read(), re.MULTILINE)[1])


def _glibc_heap() -> dict[str, int]:
    _libc.mallinfo2.restype = _Mallinfo2
    info = _libc.mallinfo2()
    # arena: bytes glibc took with brk (the main heap) and its mmapped arenas of
    # other threads; hblkhd: large blocks mmapped one by one; uordblks: in use;
    # fordblks: free but still held.
    return {
        "held_kb": (info.arena + info.hblkhd) // 1024,
        "in_use_kb": info.uordblks // 1024,
        "free_kb": info.fordblks // 1024,
    }


def _pymalloc() -> dict[str, int]:
    """Arenas of CPython's allocator: sys._debugmallocstats writes to the C stderr."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode()
    fields = {
        "arenas_current": r"# arenas allocated current\s*=\s*([\d,]+)",
        "arenas_highwater": r"# arenas highwater mark\s*=\s*([\d,]+)",
        "used_kb": r"# bytes in allocated blocks\s*=\s*([\d,]+)",
        "free_blocks_kb": r"# bytes in available blocks\s*=\s*([\d,]+)",
        "free_pools_kb": r"unused pools \* \d+ bytes\s*=\s*([\d,]+)",
    }
    found = {}
    for name, pattern in fields.items():
        match = re.search(pattern, text)
        value = int(match[1].replace(",", "")) if match else -1
        found[name] = value // 1024 if name.endswith("_kb") and value >= 0 else value
    return found


def garbage(unfreeze: bool) -> dict:
    """What a full collection finds unreachable (kept by reference cycles only),
    by type, and one path of referrers from a stream generator in it. With
    `unfreeze`, frozen objects are collected too (and stay unfrozen)."""
    if unfreeze:
        gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = list(gc.garbage)
        gc.garbage.clear()
    finally:
        gc.set_debug(0)
    types = collections.Counter(type(o).__name__ for o in found)
    ids = {id(o) for o in found}
    cycle = []
    start = next((o for o in found if type(o).__name__ == "async_generator"), None)
    if start is None:
        start = next((o for o in found if type(o).__name__ == "coroutine"), None)
    seen = set()
    current = start
    while current is not None and id(current) not in seen and len(cycle) < 25:
        seen.add(id(current))
        cycle.append(f"{type(current).__name__}: {repr(current)[:120]}")
        current = next((r for r in gc.get_referents(current) if id(r) in ids and id(r) not in seen), None)
    del found
    return {"garbage": sum(types.values()), "garbage_types": types.most_common(15), "one_path": cycle}


def report(trim: bool, baseline: bool) -> dict:
    from django.conf import settings

    from chat import stream

    if trim:
        gc.collect()
        _libc.malloc_trim(0)
    objects = gc.get_objects()
    types = collections.Counter(type(o).__name__ for o in objects)
    # Stream generators the collector sees (not frozen ones), open or waiting to be collected.
    generators = sum(1 for o in objects if type(o).__name__ == "async_generator" and o.__name__ == "answer_events")
    result = {
        "rss_kb": _rss_kb(),
        "streams_open": len(stream._readers),
        "stream_limit": settings.CHAT_MAX_STREAMS_PER_USER,
        "stream_generators": generators,
        "gc_objects": len(objects),
        # Objects gc.freeze() moved out of the collector's reach (chat/generation.py
        # freezes once, when the process's first answer ends): freed by reference
        # counting only.
        "gc_frozen": gc.get_freeze_count(),
        "top_types": types.most_common(12),
        "glibc": _glibc_heap(),
        "pymalloc": _pymalloc(),
    }
    del objects
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        result["traced_kb"] = {"current": current // 1024, "peak": peak // 1024}
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        if baseline or not _baseline:
            _baseline[:] = [snapshot]
        else:
            growth = snapshot.compare_to(_baseline[0], "lineno")[:12]
            result["growth_since_baseline"] = [
                {"where": str(s.traceback[0]), "kb": s.size_diff // 1024, "blocks": s.count_diff} for s in growth
            ]
    return result


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"] == "/__bench__/memory":
        query = scope.get("query_string", b"").decode()
        if "garbage=1" in query:
            body = json.dumps(garbage(unfreeze="unfreeze=1" in query)).encode()
        else:
            body = json.dumps(report(trim="trim=1" in query, baseline="baseline=1" in query)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})
        return
    await product(scope, receive, send)
