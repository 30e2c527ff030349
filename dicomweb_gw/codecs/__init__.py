"""codecs layer."""
