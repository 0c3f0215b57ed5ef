"""Ingestion: reading a day (BigQuery or the export layout), row checks and the
quarantine, de-duplication, TFDV validation of the day and its gate, the description of
the input a run read, and the readers of validated days that later stages use.

May import transforms.common, transforms.publishing and schemas.
"""
