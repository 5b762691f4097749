"""Trial lists, cosine scoring and verification metrics (EER, minDCF)."""
