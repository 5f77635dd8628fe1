"""The error a user can fix: the console scripts print its message alone and exit with status 2."""
import errno


class UserFacingError(Exception):
    """Bad input or settings: the CLI prints the message alone (no traceback) and exits with status 2."""


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
