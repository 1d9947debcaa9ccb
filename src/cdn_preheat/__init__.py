"""cdn-preheat: preheat HLS video into CDNs before viewers arrive."""

__version__ = "0.1.0"
