"""REST API under /api/v1 (every mutating call needs a bearer token)."""
