"""Reading images and building datasets."""
