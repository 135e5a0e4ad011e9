"""Small pure policies with injected time: backoff (and, later, rate limit and breaker)."""
