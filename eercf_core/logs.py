"""The one logging setup of every entry point (`eercf` and its commands, `python -m bench`).

`setup_logging(level)`: one stderr handler, `time LEVEL logger: message`.
- level 0 (default): eercf's INFO lines, other libraries' warnings only (faiss's loader,
  open_clip and Beam log INFO lines that would bury a job's own);
- 1 (-v): eercf DEBUG, others INFO; 2+ (-vv): everything DEBUG;
- -1 (-q): warnings and errors only.
Beam's import-time notices about optional Google Cloud libraries are dropped below ERROR at
every level. Calling it again changes the levels and keeps the one handler.
"""
from __future__ import annotations

import logging

# eercf's own loggers (every other logger is a third-party library's)
OWN_LOGGERS = ("eercf_core", "pipelines", "bench", "__main__")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: int = 0) -> None:
    """Configure the root handler and the levels of eercf's and other loggers (module doc)."""
    own = logging.DEBUG if level >= 1 else logging.INFO if level == 0 else logging.WARNING
    other = logging.DEBUG if level >= 2 else logging.INFO if level == 1 else logging.WARNING
    root = logging.getLogger()
    root.setLevel(other)
    handler = next((h for h in root.handlers if getattr(h, "_eercf", False)), None)
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(_drop_beam_gcp_notices)
        handler._eercf = True  # type: ignore[attr-defined]  # found again on a second call
        root.addHandler(handler)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)


def _drop_beam_gcp_notices(record: logging.LogRecord) -> bool:
    """Beam's import-time notices about optional Google Cloud libraries (apitools, BigQuery)
    that eercf never uses; they would bury the job's own output."""
    return record.levelno >= logging.ERROR or "/apache_beam/io/gcp/" not in record.pathname
