"""One module per Dataflow job: options, build(pipeline, options), run(argv=None)."""
