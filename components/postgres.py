"""The gateway's PostgreSQL: keys, teams and spend, on a retained volume."""

import pulumi


# Facts about the postgres image; `latest` is 18 with a new data path, so the major version is pinned.
IMAGE = "postgres:17"
PORT = 5432
DATA_PATH = "/var/lib/postgresql/data"
USER = "litellm"
DATABASE = "litellm"
HEALTH_START_PERIOD = "60s"


def health_test(user: str = USER, database: str = DATABASE) -> list[str]:
    """`pg_isready` over TCP, so it passes only once the server accepts connections."""
    return ["CMD", "pg_isready", "-U", user, "-d", database, "-h", "127.0.0.1"]


def database_url(host: str, password: pulumi.Input[str]) -> pulumi.Output[str]:
    """The DATABASE_URL LiteLLM connects with (secret)."""
    return pulumi.Output.secret(
        pulumi.Output.concat("postgresql://", USER, ":", password, "@", host, ":", str(PORT), "/", DATABASE)
    )
