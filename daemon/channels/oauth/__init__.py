"""OAuth 2.0 client credentials (RFC 6749 §4.4) for the HTTP-speaking channels and
jobs: the settings (``settings``), the grant as pure functions (``grant``) and one
access token per client kept fresh (``tokens``, which needs aiohttp)."""
