"""tf.Transform features: daily partials, lookback windows, rows per entity, the
module-level preprocessing_fn per entity, and the features gate and transform per entity.

May import transforms.common, transforms.publishing, schemas, and from other stages only
transforms.graph's sessions and index store and transforms.ingest's readers. TensorFlow,
tf.Transform and TFDV are imported inside functions only, so that building another
stage's pipeline never loads them.
"""
