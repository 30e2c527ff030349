"""``python -m dicomweb_gw.settings``: print the README's settings table from the registry."""

from dicomweb_gw.settings.registry import markdown_table

print(markdown_table(), end="")
