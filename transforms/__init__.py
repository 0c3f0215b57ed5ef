"""The suite's stages as composite PTransforms and the plain functions they call, one
package per stage (docs/README.md lists the pages).

Data flows one way: beam_jobs -> ingest, graph, examples, features -> publishing, common
-> schemas. Between stages, examples and features may use graph's index store and
sessions and ingest's readers, and nothing else; a test walks every import and fails on
a cycle.
"""
