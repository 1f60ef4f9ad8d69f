"""Errors that end a command with one clear line instead of a traceback."""


class UserError(Exception):
    """A bad input, option or environment that the user can fix; shown as one line."""


class ImageError(UserError):
    """An input image that cannot be used (corrupt, not an image, too many pixels)."""


class UnreadableInput(UserError):
    """An input the filesystem refuses to read (no permission, a symlink loop, a directory):
    skipped and recorded, like a corrupt image."""


class MissingInput(UnreadableInput):
    """An input URL that names nothing: skipped and recorded, like a corrupt image."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def store_failure(exc: BaseException) -> str | None:
    """One line for an error saying that a store could not be reached or took no credentials
    from this job (S3 through botocore, HTTP through aiohttp), wherever in a command it came
    up: both name the endpoint or the cause. None for any other error, which stays a traceback.
    The libraries are imported only once an error has happened, so `--help` stays light."""
    import aiohttp
    import botocore.exceptions as boto

    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return (
            f"cannot use the storage: {first_line(exc)} (give them as AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or --storage-option key=... --storage-option secret=...)"
        )
    if isinstance(exc, boto.ConnectionError | boto.HTTPClientError | aiohttp.ClientConnectionError):
        return f"cannot reach the storage: {first_line(exc)}"
    return None
