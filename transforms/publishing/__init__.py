"""Publishing: how every stage's outputs reach readers (docs/publishing.md).

files (names, atomic writes), tfrecord (framing, the Example codec), writers (streamed
pieces), readers (published days), latest (LATEST, withdrawal), protocol (manifests,
_SUCCESS, PublishFileSets). Imports transforms.common and schemas only; never a stage.
"""
