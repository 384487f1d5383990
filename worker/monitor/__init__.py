"""The top floor of operations: the cluster snapshot read from Redis (:mod:`.cluster`) and the
Prometheus endpoints that serve it with the per-process metrics (:mod:`.serve`). Everything
below imports the leaf modules of :mod:`vidgo_stems.observe`, never this package."""
