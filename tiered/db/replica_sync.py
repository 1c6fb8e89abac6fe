"""``python -m tiered.db.replica_sync PATH SYNC_URL``: the process that syncs an embedded replica.

libsql-experimental holds the GIL for the whole of ``sync()`` (a round trip to the primary and
its new frames, during which the event loop would stop), so the Store runs it
here, in a process of its own, and reads the file with ``sqlite3``. Only the answers go to
stdout (libSQL's log is moved to stderr). The auth token comes in the
environment (``TIERED_REPLICA_TOKEN``, never the command line, which other users can list).

Protocol (one line each way): the parent writes ``sync``; this answers ``ok SECONDS`` or
``error TYPE``. It answers ``ready`` once the replica is open, and exits when its stdin closes
(the parent closed the Store, or died).
"""

from __future__ import annotations

import importlib
import os
import sys
import time


def main(argv: list[str]) -> int:
    # the answers get stdout to themselves: libSQL's own log (Rust's tracing writes to fd 1)
    # goes to stderr, errors only (it logs each sync's handshake at INFO)
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = answers
    os.environ["RUST_LOG"] = "error"
    path, url = argv
    token = os.environ.pop("TIERED_REPLICA_TOKEN", None)
    try:
        lib = importlib.import_module("libsql_experimental")
        conn = lib.connect(path, sync_url=url, **({"auth_token": token} if token else {}))
    except Exception as e:
        print(f"error {type(e).__name__}", flush=True)
        return 1
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "sync":
            continue
        t0 = time.perf_counter()
        try:
            conn.sync()
        except Exception as e:
            print(f"error {type(e).__name__}", flush=True)
        else:
            print(f"ok {time.perf_counter() - t0:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
