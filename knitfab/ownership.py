"""Who may read a Data's files: everyone who runs on it.

Data is written by users other than the server: uploads keep their modes (a ``0600`` file stays
``0600``) and a Kubernetes worker writes as whatever user its image runs as (root, or not, with
its own umask). The scheme (docs/kubernetes.md, "File ownership"):

* the server may read and delete whatever a worker wrote: on Kubernetes it runs as root with only
  ``CHOWN``, ``DAC_OVERRIDE`` and ``FOWNER`` (as Knitfab's knitd runs as root);
* outputs are made writable by any user before a run (``runner.empty_outputs(mode=0o777)``);
* once a Data is complete (``Layout.publish``), every directory becomes ``a+rx`` and every file
  ``a+r``, so the next run may read it whatever user its image runs as. Symbolic links are left
  alone: the mode of a link's target is not the Data's to change.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

READ_DIR = stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
READ_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


def open_to_readers(root: Path) -> None:
    """Make the tree at ``root`` readable by every user (see the module docstring)."""
    for folder, _, files in os.walk(root):
        _add(Path(folder), READ_DIR)
        for name in files:
            _add(Path(folder) / name, READ_FILE)


def _add(path: Path, bits: int) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        return  # links, fifos, devices: not ours to open up
    if stat.S_IMODE(st.st_mode) & bits != bits:
        os.chmod(path, stat.S_IMODE(st.st_mode) | bits)  # not a link (lstat): its writer has ended
