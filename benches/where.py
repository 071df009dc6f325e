"""Sanity check before timing imports: where numpy comes from, and whether
its pyc is there (so no run compiles)."""
import os, sys, numpy, matplotlib.pyplot

print(numpy.__file__)
print("pyc-present" if os.path.exists(numpy.__cached__) else "pyc-MISSING")
print("dont_write_bytecode", sys.flags.dont_write_bytecode)
