"""Paths the tests use: the checkout's root and the tests' fixed salt file."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(ROOT, "tests")
SALT_FILE = os.path.join(TESTS, "data", "user_id_salt")
