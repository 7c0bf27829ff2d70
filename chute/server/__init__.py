"""chute's HTTP side: the ASGI app, its API, the UI and the code-review webhooks."""
