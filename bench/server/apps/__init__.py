"""Small apps the benchmark serves: the HTTP floor and KServe's model class."""
