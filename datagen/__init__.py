"""Seeded generator of sample event days in the BigQuery export layout."""
