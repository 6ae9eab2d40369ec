"""Near-duplicate images across a whole build, found with faiss (never all pairs), kept one per group.

pHash (`phashes`: imagehash's, taken of every image as it is scored): a binary multi-index hash (faiss
IndexBinaryMultiHash) with d + 1 hash tables over disjoint bit segments: two hashes within Hamming
distance d agree exactly on at least one segment (pigeonhole), so every such pair is found, and each
query looks only at its buckets. Memory: 8 bytes per image plus
the tables. CLIP: normalised image embeddings (stored float16 in the candidate shards) in an inverted
file index (exact search below EXACT_BELOW images); pairs with cosine >= t are near-duplicates.

Groups are the connected components of the near-duplicate pairs; the best-scored image of each group
is kept (ties: the smaller id), so the result depends only on the candidates, not on shards or executors.
"""
from __future__ import annotations

import numpy as np

EXACT_BELOW = 20_000   # CLIP embeddings: exact inner-product search below this many images
QUERY_CHUNK = 4096     # queries per faiss call: bounds the result lists held at once


def phashes(images: np.ndarray) -> list[str]:
    """imagehash's 64-bit perceptual hash of each image, as 16 hex digits."""
    import imagehash
    from PIL import Image

    return [str(imagehash.phash(Image.fromarray(np.ascontiguousarray(im)))) for im in images]


def phash_codes(hex_hashes) -> np.ndarray:
    """16-hex-digit pHashes -> (N, 8) uint8 codes for faiss."""
    return np.frombuffer(b"".join(bytes.fromhex(h) for h in hex_hashes), dtype=np.uint8).reshape(-1, 8)


def phash_pairs(codes: np.ndarray, distance: int) -> np.ndarray:
    """(P, 2) index pairs i < j whose Hamming distance is <= distance."""
    import faiss

    tables = distance + 1
    index = faiss.IndexBinaryMultiHash(64, tables, 64 // tables)
    index.add(codes)
    return _range_pairs(lambda q: index.range_search(q, distance + 1), codes)  # faiss: distance < radius


def embedding_pairs(emb: np.ndarray, min_cosine: float) -> np.ndarray:
    """(P, 2) index pairs i < j whose embeddings' inner product is >= min_cosine (embeddings normalised)."""
    import faiss

    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, dim = emb.shape
    if n < EXACT_BELOW:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        index.train(emb[np.linspace(0, n - 1, min(n, 64 * nlist)).astype(int)])
        index.nprobe = 8
    index.add(emb)
    return _range_pairs(lambda q: index.range_search(q, float(min_cosine)), emb, inner_product=True)


def _range_pairs(search, queries: np.ndarray, inner_product: bool = False) -> np.ndarray:
    chunks = []
    for start in range(0, len(queries), QUERY_CHUNK):
        lims, _, ids = search(queries[start:start + QUERY_CHUNK])
        rows = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims).astype(np.int64))
        keep = ids > rows  # each pair once, and not an image with itself
        chunks.append(np.stack([rows[keep], ids[keep]], axis=1))
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), dtype=np.int64)


def keep_one_per_group(n: int, pairs: np.ndarray, score: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """(bool mask of images kept, number of groups with more than one image)."""
    if not len(pairs):
        return np.ones(n, dtype=bool), 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    order = np.lexsort((ids, -score.astype(np.float64)))  # best first; NaN scores last
    _, first = np.unique(label[order], return_index=True)
    keep = np.zeros(n, dtype=bool)
    keep[order[first]] = True
    sizes = np.bincount(label)
    return keep, int((sizes > 1).sum())
