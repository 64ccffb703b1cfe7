"""A wheel of mkbench carries the folders that ship beside its code (tasks/, mnn/, models/, ndk/)
inside the package, as mkbench/shipped/, so a regular install (the appliance image's) finds them
the way a checkout does (settings.shipped_root). Everything else is in pyproject.toml.

An editable install reads them from the checkout itself, so nothing is copied for one.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED_FOLDERS = ("tasks", "mnn", "models", "ndk")
# Not the project's files: a user's imported tasks, an unzipped NDK put beside its pin for an image build.
LEFT_OUT = shutil.ignore_patterns("__pycache__", "*.pyc", "imported", "android-ndk*")


class BuildWithShipped(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "mkbench" / "shipped"
        shutil.rmtree(target, ignore_errors=True)
        for folder in SHIPPED_FOLDERS:
            shutil.copytree(HERE / folder, target / folder, ignore=LEFT_OUT)


setup(cmdclass={"build_py": BuildWithShipped})
