"""The administrator's commands behind ``dicomweb-gw find|prefetch|config check``.

``cli.py`` only parses arguments; each command lives in its own module here and
returns the process exit code, so it can be tested without a subprocess.
"""
