"""One thread reaps every local worker (knitfab/runners/reaper.py): it must outlive its own failures."""

import subprocess

from helpers import wait_for

from knitfab.runners.reaper import Reaper


def test_the_reaper_starts_over_when_its_loop_fails(monkeypatch):
    # A dead reaper would leave every later worker unreaped, its run running forever.
    ends = []
    reaper = Reaper(lambda: lambda: ends.append(1))
    failed = []
    real_forget = Reaper._forget

    def forget_failing_once(self, fd):
        if not failed:
            failed.append(fd)
            raise OSError("injected")
        return real_forget(self, fd)

    monkeypatch.setattr(Reaper, "_forget", forget_failing_once)
    first = subprocess.Popen(["true"])
    reaper.watch(first)
    wait_for(lambda: failed)
    second = subprocess.Popen(["true"])
    reaper.watch(second)
    wait_for(lambda: second.returncode is not None and first.returncode is not None)
    assert ends  # on_exit was called
