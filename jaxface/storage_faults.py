"""What a failed save means: the storage's own failures (disk full, permission, read-only) in words, so that the
run stops with one clear message, and the noise Orbax and asyncio log on the way there kept quiet. A failure that
is not the storage's (a bug) stays a traceback.
"""

import errno
import logging
import os
import sys




# errno -> what it means for a save, in the order a message should prefer them.
STORAGE_ERRNOS = (
    (errno.ENOSPC, "the disk is full"),
    (errno.EDQUOT, "the disk quota is used up"),
    (errno.EROFS, "the filesystem is read-only"),
    (errno.EACCES, "no permission to write there"),
    (errno.EPERM, "no permission to write there"),
    (errno.EFBIG, "a file outgrew the file-size limit (ulimit -f)"),
    (errno.EIO, "the storage reported an I/O error"),
)


# TensorStore status codes (in the text of the ValueErrors Orbax raises for them) that mean the storage failed.
STORAGE_STATUSES = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "DATA_LOSS")


def exception_chain(error):
  """`error` and the exceptions it was raised from or during, outermost first."""
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def storage_cause(error):
  """What the storage did to a failed save, in words ("the disk is full (No space left on device)"), or None when
  the failure is not the storage's (a bug, which stays a traceback). TensorStore's failures reach Python as
  ValueErrors whose text carries the OS message, so the text is searched as well as the errno."""
  chain = exception_chain(error)
  codes = {e.errno for e in chain if isinstance(e, OSError)}
  text = "\n".join(str(e) for e in chain)
  for code, meaning in STORAGE_ERRNOS:
    if code in codes or os.strerror(code) in text:
      return f"{meaning} ({os.strerror(code)})"
  if any(isinstance(e, OSError) for e in chain) or any(status in text for status in STORAGE_STATUSES):
    return first_line(chain[-1])
  return None


def _raised_in_orbax(error):
  """True when `error`, or one it was raised from, passed through Orbax's code (a read or write task of a save or
  restore, whatever the message says)."""
  for e in exception_chain(error):
    tb = e.__traceback__
    while tb is not None:
      if f"{os.sep}orbax{os.sep}" in tb.tb_frame.f_code.co_filename:
        return True
      tb = tb.tb_next
  return False


def first_line(error, limit=300):
  text = str(error).strip().splitlines()
  return (text[0] if text else type(error).__name__)[:limit]


class _QuietFailedSaves(logging.Filter):
  """A failed save is reported once, by the run, with its path and cause, and a checkpoint that does not restore
  once, with the checkpoint it was. On the way there Orbax logs a traceback per writer thread and asyncio one per
  abandoned read or write task (hundreds of lines, some at exit): Orbax's errors keep their first line, and
  asyncio's records of Orbax tasks that died of a storage failure or of a damaged file are dropped."""

  def filter(self, record):
    if record.name == "asyncio":
      error = record.exc_info[1] if record.exc_info else None
      return not (error is not None and (_raised_in_orbax(error)
                                         or ("orbax" in record.getMessage() and storage_cause(error) is not None)))
    if record.levelno >= logging.ERROR and f"{os.sep}orbax{os.sep}" in record.pathname:
      record.msg, record.args = first_line(record.getMessage()), None
      record.exc_info = record.exc_text = record.stack_info = None
    return True


def _abandoned_orbax_work(unraisable):
  """True for what a failed save or restore leaves behind once the run has reported it: TensorStore's late
  callbacks into the closed event loop ("Event loop is closed") and Orbax's read and write coroutines dropped with
  their error when the first one failed (one traceback each, thousands of lines on a damaged checkpoint)."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
    return True
  code = getattr(unraisable.object, "cr_code", None)
  return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _quiet_unraisable(previous):
  """A sys.unraisablehook that drops `_abandoned_orbax_work` and passes everything else on."""

  def hook(unraisable):
    if not _abandoned_orbax_work(unraisable):
      previous(unraisable)

  hook.quiets_failed_saves = True
  return hook


def quiet_failed_saves():
  """Installs the filters above, once per process. They stay: some of the noise comes at interpreter exit."""
  for name in ("absl", "asyncio"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _QuietFailedSaves) for f in logger.filters):
      logger.addFilter(_QuietFailedSaves())
  if not getattr(sys.unraisablehook, "quiets_failed_saves", False):
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
