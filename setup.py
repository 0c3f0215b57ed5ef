"""Packaging for the preprocessing suite.

Versions live in requirements.lock (the one source of versions); setup.py names
what the code imports, and the Makefile, CI and the worker image install the lock.
"""

import setuptools

SHIPPED = ("beam_jobs", "transforms", "schemas", "datagen", "training", "flex_templates")

setuptools.setup(
    name="marketplace-preprocessing",
    version="0.1.0",
    description="Apache Beam preprocessing suite: validated events, co-occurrence graphs, "
                "training examples for the marketplace ML team",
    python_requires=">=3.11,<3.12",
    # Every package and subpackage of the shipped folders (a test builds the distribution
    # and checks that each package folder is in it).
    packages=setuptools.find_packages(include=[f"{top}{sub}" for top in SHIPPED
                                               for sub in ("", ".*")]),
    package_data={"schemas": ["*.json", "*.pbtxt"]},
    # What the code of beam_jobs, transforms, schemas and datagen imports (a test
    # checks it against their imports); the versions are requirements.lock's.
    install_requires=[
        "apache-beam[gcp,tfrecord]",
        "dill",
        "google-api-core",
        "google-cloud-bigquery",
        "google-cloud-secret-manager",
        "google-cloud-storage",
        "google-crc32c",
        "matplotlib",
        "numpy",
        "protobuf",
        "tensorflow",
        "pyarrow",
        "tensorflow-data-validation",
        "tensorflow-metadata",
        "tensorflow-transform",
        "tfx-bsl",
    ],
)
