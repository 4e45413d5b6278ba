"""HTTP protocols: the seed /predict API, KServe V1 and Open Inference Protocol V2."""
