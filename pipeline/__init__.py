"""Processing of uploaded media: durable jobs in MongoDB, run by a pool of worker processes.

Installed as ``mediasvc.pipeline``; always import it by that name.
"""
