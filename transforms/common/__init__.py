"""What every stage shares: the run's day and its UTC span, stable hashing and shard
counts, pseudonyms and the user split, the suite's version fields, the statistics page.

Imports schemas only (and third-party libraries); nothing else of the suite.
"""
