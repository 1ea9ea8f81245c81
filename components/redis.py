"""The gateway's Redis: router state shared by LiteLLM workers, password-protected and append-only."""

from .litellm_config import REDIS_PASSWORD_ENV

# Facts about the redis image: it ignores REDIS_PASSWORD, so the password goes to --requirepass.
IMAGE = "redis:8.10.2"
PORT = 6379
DATA_PATH = "/data"
HEALTH_START_PERIOD = "30s"
# A shell expands the password from the env so it never appears in the container's command.
COMMAND = ["sh", "-c", f'exec redis-server --requirepass "${REDIS_PASSWORD_ENV}" --appendonly yes --dir {DATA_PATH}']
HEALTH_TEST = ["CMD-SHELL", f'redis-cli -a "${REDIS_PASSWORD_ENV}" --no-auth-warning ping | grep -q PONG']
