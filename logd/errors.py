"""Every error logd raises, under one base.

    LogdError
    +-- ConfigError        the operator or caller misused logd (bad flag, DSN)
    +-- StorageError       ClickHouse refused or could not be reached
    +-- DockerError        the Docker Engine API refused or could not be reached

Malformed syslog is not an error here: the peer's bad frames are stored raw
with a parse-error flag and counted, never raised.
"""


class LogdError(Exception):
    """Base of every exception logd raises on purpose."""


class ConfigError(LogdError):
    """A flag, environment variable or argument has a value logd cannot use."""


class StorageError(LogdError):
    """The storage engine failed; raised at the store's one boundary."""


class DockerError(LogdError):
    """The Docker Engine API failed; raised at the enricher's one boundary."""
