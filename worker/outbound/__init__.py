"""Requests this service makes to addresses that came from outside: the URL-safety guard that
judges every such address (:mod:`.urlsafety`: webhook receivers, source tracks, stem URLs),
and the signed completion webhooks the worker delivers (:mod:`.webhooks`), with the
verification their receivers use."""
