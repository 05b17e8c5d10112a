"""The embedded PostgreSQL's one error: its message says what to fix, or to set TAXI_POSTGRES_URL."""


class EmbeddedPostgresError(RuntimeError):
    pass
