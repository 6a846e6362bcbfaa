"""Every body the API reads or writes, declared once as msgspec Structs (one module per
concern: base, media, uploads, ops, webhooks).

Decoding validates a request against its model (mediasvc/wire.py), encoding shapes an answer
from its model, and the OpenAPI document is generated from the same models (mediasvc/openapi.py).
So a field list, a limit or a pattern is written here and nowhere else:

* constraints that never change are msgspec ``Meta`` constraints;
* limits that are settings are marked ``limited_by("maxLength", "max_title_length")``: the
  decoder checks them against the running settings and the document shows the running value;
* ``says(...)`` words a field's problems as the API has always told them (``title must be a
  string``); struct docstrings and ``description`` are what the document tells a client.
"""
