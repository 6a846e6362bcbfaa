"""Services: the logic behind the handlers, free of HTTP."""
