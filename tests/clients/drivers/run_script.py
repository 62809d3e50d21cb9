"""Runs a user's script file as they would (`python script.py`), in directory ARGV[2]."""

import os
import runpy
import sys

os.chdir(sys.argv[2])
runpy.run_path(sys.argv[1], run_name="__main__")
