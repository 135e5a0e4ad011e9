"""Small pure policies with injected time: retry backoff, the token bucket, the circuit
breaker."""
