"""The co-occurrence graph: sessions and window pairs, article-keyed pair counts,
weightings and top-K, the graph composite, and the stable article index with its
versioned store (article_index/v=NNNNNN, CURRENT).

May import transforms.common, transforms.publishing, transforms.ingest (its readers)
and schemas.
"""
