"""The gateway tests' tenants and their bearer tokens (COMFYFARM_API_TOKENS)."""

TOKENS = {"acme": "acme-token-0123456789abcdef", "globex": "globex-token-0123456789abcdef"}
