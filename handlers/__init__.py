"""HTTP handlers, thin: parse the request, call a service, write JSON.

Installed as ``mediasvc.handlers``; always import it by that name.
"""
