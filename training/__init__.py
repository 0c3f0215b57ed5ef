"""The trainers' side: tf.data readers of published days (training/reader.py) and a
tiny item2vec model (training/item2vec.py)."""
