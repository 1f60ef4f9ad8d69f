"""Errors that end a command with one clear line instead of a traceback."""


class UserError(Exception):
    """A bad input, option or environment that the user can fix; shown as one line."""


class ImageError(UserError):
    """An input image that cannot be used (corrupt, not an image, too many pixels)."""
