"""Data contracts: the events table, the TFDV schema and the names every stage shares."""
