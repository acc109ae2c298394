"""distribute: render press releases into email and social posts, schedule and send them."""

__version__ = "0.1.0"
