"""Dataflow Flex Templates of the suite: the image (Dockerfile), one folder per job
with its metadata.json, and the generator of those files (generate.py)."""
