"""The errors a user can fix, and the one place the `zoo` command turns them into a short message.

`ZooError` is the base of every error whose cause is outside the code: weights that can't be had
(`WeightsError`), input data, files or arguments that can't be used as given (`InputError`, a
`ValueError`; `detection.data.DatasetError` is one). Their messages name the file, field or value at
fault and the fix. The CLI prints them as one line and exits with status 2 (`--debug` or `ZOO_DEBUG=1`
shows the traceback); any other exception is a bug and keeps its traceback.
"""

__all__ = ['ZooError', 'InputError', 'WeightsError', 'is_user_error', 'describe_user_error']


class ZooError(Exception):
    """An error the user can fix; the message says what is wrong and what to do."""


class InputError(ZooError, ValueError):
    """Input data, a file or an argument that cannot be used as given (names the file, field or value)."""


class WeightsError(ZooError, RuntimeError):
    """Pretrained weights could not be found or used; the message says why (`reason`) and what to do (`fix`).

    The fix is in the caller's terms: the Python API's arguments by default; a CLI verb swaps in its own
    flags with `with_fix` (e.g. `--checkpoint FILE`)."""

    def __init__(self, reason: str, fix: str = ''):
        super().__init__(f'{reason} {fix}'.strip())
        self.reason, self.fix = reason, fix

    def with_fix(self, fix: str) -> 'WeightsError':
        error = WeightsError(self.reason, fix)
        error.__cause__ = self.__cause__
        return error


# OS errors about a path the user gave (a missing input file, an output folder that is a file, ...)
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError)


def is_user_error(error: BaseException) -> bool:
    """True for errors the CLI reports as a one-line message (exit 2) rather than as a bug."""
    if isinstance(error, ZooError):
        return True
    if isinstance(error, _PATH_ERRORS):
        return True
    try:  # an image file the user gave that is not an image
        from PIL import UnidentifiedImageError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, UnidentifiedImageError)


def describe_user_error(error: BaseException) -> str:
    """The one-line message for a user error: its text, or for a path error, what is wrong with which path."""
    if isinstance(error, _PATH_ERRORS) and error.filename is not None:
        what = {FileNotFoundError: 'no such file or folder', IsADirectoryError: 'is a folder, expected a file',
                NotADirectoryError: 'is not a folder', PermissionError: 'permission denied',
                FileExistsError: 'already exists'}.get(type(error), error.strerror)
        return f'{error.filename}: {what}'
    return str(error) or type(error).__name__
