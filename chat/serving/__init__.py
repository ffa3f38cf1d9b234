"""How the app is served: tuning at the level of the ASGI server and Django's
request handling, kept apart from what the product does.

Each module saves CPU or connections that the benchmark measures (docs/benchmarks.md),
says why it exists, and says what would let it be deleted. None of them changes
settings at run time or reaches into a private attribute; the ones that depend on
how Django behaves are pinned to the Django series they were verified on
(tests/test_served_app.py fails loudly when that changes).

- `db_threads`: a fixed set of threads (and connections) for the ORM;
- `middleware`: Django's own middleware, with the hooks that need no thread run on
  the event loop;
- `sessions`: one process's sessions read from its memory on the event loop;
- `login`: the login check of async views on the event loop;
- `collector`: the garbage collector tuned for a server that streams.
"""
