"""Training examples: the composite, one module of plain functions per kind (skipgram,
sequences, ranking), the Example/SequenceExample wire encoding without TensorFlow, and
seeded keyed draws.

May import transforms.common, transforms.publishing, schemas, and from other stages only
transforms.graph's sessions and index store and transforms.ingest's readers.
"""
