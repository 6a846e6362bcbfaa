"""Webhooks (Standard Webhooks): events recorded with the changes that cause them, turned into
deliveries by a relay in every process, sent signed with leases and retries.

* ``events``: the event types and the outbox entries a media document carries;
* ``records``: endpoints, deliveries and the events of removed media, as stored;
* ``store``: their collections and queries;
* ``removals``: events of media that disappear (deleted, expired), written around the removal;
* ``relay``: pending events into one delivery per subscribed endpoint;
* ``sender``: deliveries claimed with a lease and sent, retried with backoff;
* ``client``: the HTTP request of one attempt: public addresses only, signed, bounded.
"""
