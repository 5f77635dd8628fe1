"""What every console script (kmlm-preprocess, kmlm-export, kmlm-eval) does around its command: logging, errors."""
import logging

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


def run_command(run, args, name, verbose=False):
    """What every console script does with its parsed ``args``: configure logging and return ``run(args)``;
    a UserFacingError or a full disk is one logged line (no traceback) and exit status 2."""
    configure_logging(verbose)
    log = logging.getLogger(name)
    try:
        return run(args) or 0
    except UserFacingError as err:
        log.error("%s", err)
        return 2
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        # outputs are written through atomic_path / atomic_directory, so nothing that looks complete was left
        log.error("disk full or quota exceeded while writing %s (%s); no partial output was kept: free space or "
                  "choose another output directory",
                  err.filename or getattr(args, "output", None) or "the outputs", err)
        return 2
