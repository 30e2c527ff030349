"""``python -m dicomweb_gw``."""

from dicomweb_gw.cli import main

raise SystemExit(main())
