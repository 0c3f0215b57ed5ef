"""Composite PTransforms and the plain functions they call, one concern a module."""
