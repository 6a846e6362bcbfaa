"""Helpers the tests share; fixtures live in conftest.py, and tests import helpers from here:
`client` (HTTP against the service), `tokens` (signed tokens and callers), `service` (settings
of a service under test, what it leaves on disk), `samples` (small media of each kind), `s3`
(a SeaweedFS server), `media` (uploads and the pipeline), `process` (`mediasvc serve` as a
subprocess), `early` (early answers), `vips`, `database` (an embedded database of its own),
`tus` (tus requests), `proxy` (a TCP proxy that slows, counts and cuts connections),
`upload_cli` (`mediasvc upload` as a subprocess)."""
