"""`python -m mediasvc` is the `mediasvc` command."""

from mediasvc.cli import main

raise SystemExit(main())
