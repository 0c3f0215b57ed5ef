"""One module per Dataflow job: options, build(pipeline, options), run(argv=None)."""

import warnings

# google-api-core warns on every import about Python versions it will drop in 2027;
# it is not about this suite and hides the jobs' own messages.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
