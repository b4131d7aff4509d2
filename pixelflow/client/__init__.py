"""A small HTTP client of the PixelFlow API, used by ``pixelflow submit``."""
