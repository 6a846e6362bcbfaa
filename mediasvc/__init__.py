"""mediasvc: a media management service (uploads, records, derived files)."""

__version__ = "0.1.0"
