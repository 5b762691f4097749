"""Clustering of utterance embeddings into pseudo speaker labels (recipe stage 3).

* :mod:`~sslspk.cluster.kmeans`: faiss k-means, batched nearest-centroid assignment, cluster means.
* :mod:`~sslspk.cluster.ahc`: agglomerative clustering of the k-means centroids.
* :mod:`~sslspk.cluster.evaluate`: purity, inverse purity, NMI, ARI and cluster-size summaries.
* :mod:`~sslspk.cluster.pseudo_labels`: the whole step, writing a Kaldi data dir of pseudo speakers.
"""
