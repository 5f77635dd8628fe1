"""What every console script (kmlm-preprocess, kmlm-export, kmlm-eval) does around its command: logging, errors."""
import errno
import logging
from pathlib import Path

from preprocess.core.errors import DISK_FULL, UserFacingError

LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


def configure_logging(verbose=False):
    """Our log format at INFO (DEBUG with ``verbose``). Importing ``fairseq.tasks`` already calls
    ``logging.basicConfig`` with fairseq's format, so existing root handlers get our formatter instead."""
    root = logging.getLogger()
    if root.handlers:
        for handler in root.handlers:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
    else:
        logging.basicConfig(format=LOG_FORMAT)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


# What the system answers when an output cannot be made where it was asked for (read-only, /proc, a file in the way).
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EEXIST, errno.EISDIR)


def check_output_directory(output):
    """A clear error when ``--output`` cannot be a directory: it, or the nearest existing directory above it, is a
    file. (Nothing is created here: a stage that fails on its inputs leaves no output directory behind.)"""
    if output is None:
        return
    path = Path(output)
    if path.exists() and not path.is_dir():
        raise UserFacingError(f"output {path} exists and is not a directory: choose a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserFacingError(f"cannot make the output directory {path}: {parent} is a file")
            return


def is_inside(filename, directory):
    if filename is None or directory is None:
        return False
    filename, directory = Path(str(filename)).absolute(), Path(directory).absolute()
    return filename == directory or directory in filename.parents


def run_command(run, args, name, verbose=False):
    """What every console script does with its parsed ``args``: configure logging and return ``run(args)``;
    a UserFacingError, a full disk or an output that cannot be written is one logged line (no traceback; the
    traceback is logged at debug level, -v) and exit status 2."""
    configure_logging(verbose)
    log = logging.getLogger(name)
    output = getattr(args, "output", None)
    try:
        check_output_directory(output)
        return run(args) or 0
    except UserFacingError as err:
        log.error("%s", err)
        return 2
    except OSError as err:
        if err.errno in DISK_FULL:
            # outputs are written through atomic_path / atomic_directory, so nothing that looks complete was left
            log.error("disk full or quota exceeded while writing %s (%s); no partial output was kept: free space or "
                      "choose another output directory", err.filename or output or "the outputs", err)
        elif err.errno in UNWRITABLE and is_inside(err.filename, output):
            log.error("cannot write %s (%s): choose another output directory", err.filename, err.strerror)
        else:
            raise
        log.debug("the error's traceback:", exc_info=True)
        return 2
