"""Operations: Prometheus metrics, structured logs, and optional tracing."""
