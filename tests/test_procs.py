"""A process's state, group and start time as /proc tells them (runners/procs.py)."""

import builtins
import io
import os
import subprocess

from knitfab.runners.procs import pgid_of, proc_stat, start_time


def test_a_process_state_group_and_start_time():
    state, pgid, started = proc_stat(os.getpid())
    assert state in "RS" and pgid == os.getpgid(0) and started == start_time(os.getpid()) > 0


def test_a_command_name_with_parentheses_and_spaces_does_not_shift_the_fields(tmp_path):
    odd = tmp_path / "a) b (c"  # the name is between the first "(" and the last ")"
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "5"], start_new_session=True)
    try:
        assert pgid_of(child.pid) == child.pid
    finally:
        child.kill()
        child.wait()


def test_a_gone_process_has_no_state():
    child = subprocess.Popen(["true"])
    child.wait()
    assert proc_stat(child.pid) is None


def test_reading_it_makes_no_file_object(monkeypatch):
    # A text file object costs four system calls more (fstat, ioctl, lseek, a second read): each
    # a turn of the GIL given away, for every run's start, gate and end.
    opened = []
    real_open = io.open
    monkeypatch.setattr(io, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    monkeypatch.setattr(builtins, "open", io.open)
    assert proc_stat(os.getpid()) is not None
    monkeypatch.undo()
    assert opened == []
