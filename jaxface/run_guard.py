"""A training run's hold on its workdir: writable before any work, one run at a time (`WorkdirLock`), and
SIGTERM turned into a flag the loop polls (`Preemption`), so a preempted run saves and stops cleanly.
"""

import fcntl
import json
import os
import signal
import socket
import sys
import tempfile
import threading
import time

import jax

from jaxface.errors import UserError


class Preemption:
  """Turns SIGTERM into a flag the loop polls after each step (the signal may arrive mid-step)."""

  def __init__(self):
    self._flag = threading.Event()
    self._previous = None

  def install(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, lambda *_: self._flag.set())
    return self

  def uninstall(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None

  def reached(self, step):
    """True on every process once any process was told to stop (agreed at a common step when multi-host)."""
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      return multihost_utils.reached_preemption_sync_point(step) or self._flag.is_set()
    return self._flag.is_set()


def first_file_in_the_way(path):
  """The first existing component of `path` that is a file where a folder should be, or None."""
  current = os.sep
  for part in os.path.abspath(path).split(os.sep)[1:]:
    current = os.path.join(current, part)
    if not os.path.isdir(current):
      return current if os.path.exists(current) else None
  return None


def write_failure(path, error):
  """Why `path` could not be created or written, in words, from the OSError that said so."""
  blocker = first_file_in_the_way(path)
  if blocker is not None:
    return f"{blocker} is a file, not a folder"
  return f"cannot create or write {path}: {error.strerror or error}"


def check_writable(workdir):
  """Creates workdir/checkpoints and writes a byte in each folder, so that a workdir that cannot be written (a
  read-only filesystem, a file in the way, no permission, a full disk) is one clear UserError before any expensive
  work, not a traceback from the first save. The probes are anonymous temporary files: nothing is left behind."""
  for directory in (workdir, os.path.join(workdir, "checkpoints")):
    try:
      os.makedirs(directory, exist_ok=True)
      with tempfile.TemporaryFile(dir=directory) as probe:
        probe.write(b"\0")
        probe.flush()
    except OSError as e:
      raise UserError(f"the workdir {workdir} cannot be written ({write_failure(directory, e)}); pick another "
                      f"--workdir or fix the path.") from None


def describe_holder(text):
  """ "pid 123 on host h, started <time>" from the JSON a `WorkdirLock` holder wrote (or what is known of it)."""
  try:
    info = json.loads(text)
    return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
  except (ValueError, KeyError, TypeError):  # the holder is between locking and writing its details
    return "a process that has not written its pid yet"


class WorkdirLock:
  """An exclusive lock on workdir/run.lock for a whole training run.

  Two runs on one workdir destroy each other: Orbax deletes unfinished saves when it starts (the other run's save
  in progress) and the checkpoints and metrics.jsonl rows would interleave. An flock belongs to the open file, so
  the OS drops it when the process dies however it dies: a SIGKILLed run never blocks its own rerun. The file's
  text (pid, host, start time) only feeds the message; the file is never deleted, because a run that unlinked it
  could let the next two runs lock two different files.
  """

  NAME = "run.lock"

  def __init__(self, workdir):
    self.workdir = workdir
    self.path = os.path.join(workdir, self.NAME)
    self._fd = None

  def acquire(self):
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = describe_holder(os.pread(fd, 4096, 0).decode(errors="replace"))
      os.close(fd)
      raise UserError(f"the workdir {self.workdir} is in use by another training run ({holder}); two runs on one "
                      f"workdir would overwrite each other's checkpoints. Wait for it to end, stop it, or pick "
                      f"another --workdir.") from None
    except OSError as e:  # some network filesystems have no locks: run unguarded rather than not at all
      os.close(fd)
      print(f"warning: cannot lock {self.path} ({e.strerror}); a second run on this workdir would not be refused.",
            file=sys.stderr, flush=True)
      return self
    details = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(details).encode(), 0)
    self._fd = fd
    return self

  def release(self):
    if self._fd is not None:
      os.close(self._fd)  # closing the file drops the lock
      self._fd = None
