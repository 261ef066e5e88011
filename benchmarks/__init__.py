"""Data, training protocol, metrics and runner of the Scale-VAE reproduction suite."""
