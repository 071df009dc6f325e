"""The heavy import stack of the mount and compare benchmarks; prints the
seconds spent in the import statements (the process wall time is measured
outside)."""
import time

t0 = time.perf_counter()
import numpy, pandas, scipy.stats, django, sqlalchemy, matplotlib.pyplot
import requests, cryptography, pydantic, boto3, lxml.etree, PIL.Image, yaml, flask

print(f"{time.perf_counter() - t0:.6f}")
