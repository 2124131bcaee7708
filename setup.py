"""The metadata are in setup.cfg; this only adds ``knit/COMMIT`` to a build, so that an installed
``knit version`` prints the commit it was built from without running git (knit/buildinfo.py)."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithCommit(build_py):
    def run(self):
        super().run()
        spec = importlib.util.spec_from_file_location("buildinfo", ROOT / "knit" / "buildinfo.py")
        buildinfo = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(buildinfo)
        commit = buildinfo.git_head(str(ROOT))
        if commit and not getattr(self, "editable_mode", False):  # an editable install reads the checkout's HEAD
            (Path(self.build_lib) / "knit" / "COMMIT").write_text(commit + "\n")


setup(cmdclass={"build_py": BuildWithCommit})
