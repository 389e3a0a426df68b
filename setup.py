"""Build hook: everything else is declared in setup.cfg.

The weights/ folder is the package ``vggvox_weights`` because the models and
their cards are its package data. Beside them live four maintainer's tools,
``export.py`` (needs PyTorch), ``quantize.py`` and ``calibrate.py`` (need the
development speech) and ``segmask.py`` (quantize.py's graph rewrite), which run
from a checkout and are never imported at run time; setup.cfg cannot leave single
modules out of a package, so this does.
"""

from __future__ import annotations

from setuptools import setup
from setuptools.command.build_py import build_py

MAINTAINER_TOOLS = {("vggvox_weights", "export"), ("vggvox_weights", "calibrate"),
                    ("vggvox_weights", "quantize"), ("vggvox_weights", "segmask")}


class BuildPyWithoutTools(build_py):
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if (m[0], m[1]) not in MAINTAINER_TOOLS]


setup(cmdclass={"build_py": BuildPyWithoutTools})
