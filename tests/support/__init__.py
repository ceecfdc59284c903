"""Helpers of the test suite: real PostgreSQL, the real demo stack, an OIDC login client."""
