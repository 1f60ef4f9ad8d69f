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
