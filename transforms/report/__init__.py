"""The morning report: one page per day built from what the day's stages published
(summaries and manifests, read through FileSystems, local or gs://): facts.py gathers the
figures (report.json), charts.py draws them with matplotlib, page.py writes the
self-contained page, publish.py commits it under <output_dir>/report/dt=<day>/.
docs/report.md.

Imports schemas, transforms.common, transforms.publishing, and the readers of the other
stages' published files (transforms.ingest.day_files, transforms.graph.index_store); no
stage imports it (a job passes its publish function where a stage needs it).
"""
