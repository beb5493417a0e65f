"""gunicorn settings measured by bench/ingest.py (README "Performance"); also the recommended production ones.

    gunicorn nexabilling.wsgi -c bench/gunicorn.conf.py -b 127.0.0.1:8000 -w 2
"""
import gc

worker_class = "sync"  # CPU-bound requests on 2 cores shared with PostgreSQL: threads only add contention
timeout = 120
keepalive = 5  # used by gthread workers only; sync workers close each connection


def post_worker_init(worker) -> None:
    """Import every view, then move the ~200,000 objects alive after start-up out of the GC's sight.

    A 1,000-event batch allocates ~10,000 container objects, which triggers full collections that
    walk every long-lived Django object: measured at ~4 ms of a ~13 ms request (35%) before this.
    Frozen objects are never scanned (or freed, which start-up objects never are anyway).

    The batch's own ~8,000 containers live until it answers and die by reference counting, yet at
    the default young-generation threshold (700) each is walked by several collections first:
    ~0.8 ms of CPU per 1,000-event batch, measured in-process (README "Performance"). At 10,000 a
    batch sees about one young collection; cyclic garbage is still collected, a little later.
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and every view module now)
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
